// The engine suites' helpers, now in test/support: compile C fixtures, run programs natively,
// record and replay them through the real CLI, and compare byte for byte.
export * from '../support/cli.js';
export * from '../support/compile.js';
export * from '../support/paths.js';
export * from '../support/process.js';
export * from '../support/record.js';
export * from '../support/tmp.js';
export * from '../support/traces.js';
export { testEnv as baseEnv } from '../support/env.js';
