// The one way the suites run the built CLI (`node dist/cli/main.js`), built once by the global
// setup (global_setup.ts).
import { existsSync } from 'node:fs';
import { CLI } from './paths.js';
import { run, type RunOptions, type RunResult } from './process.js';

export function cliBuilt(): boolean {
  return existsSync(CLI);
}

/** Fails with an explanation when dist/cli/main.js is missing (never skips silently). */
export function requireCli(): void {
  if (!cliBuilt()) {
    throw new Error(`the rewind CLI is not built: ${CLI} is missing (run npm run build)`);
  }
}

/** Runs `rewind ARGS...`. */
export function rewind(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts);
}
