// One module of test support for every suite (see each file).
export * from './cli.js';
export * from './compile.js';
export * from './env.js';
export * from './gdb.js';
export * from './paths.js';
export * from './process.js';
export * from './procs.js';
export * from './record.js';
export * from './tmp.js';
export * from './traces.js';
