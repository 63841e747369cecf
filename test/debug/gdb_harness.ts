// The debug suites' helpers, now in test/support/gdb.ts.
export * from '../support/gdb.js';
export { alive, descendantsOf } from '../support/procs.js';
export type { RunResult } from '../support/process.js';
