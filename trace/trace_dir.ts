// Where rewind keeps its files: under $XDG_DATA_HOME/rewind (default ~/.local/share/rewind).
// Local traces live in $REWIND_TRACE_DIR or DATA/traces, one directory a recording named
// <program>-<n>, and a `latest` link to the newest.
import { existsSync, mkdirSync, readdirSync, readlinkSync, renameSync, symlinkSync } from 'node:fs';
import { homedir } from 'node:os';
import { basename, isAbsolute, join, resolve } from 'node:path';
import { UserError } from './user_error.js';

/** rewind's data directory: traces, the agent's spool, the server's data. */
export function dataHome(): string {
  return join(process.env.XDG_DATA_HOME || join(homedir(), '.local', 'share'), 'rewind');
}

export function tracesRoot(): string {
  return process.env.REWIND_TRACE_DIR || join(dataHome(), 'traces');
}

/** Creates the directory for a new recording of `program`. */
export function newTraceDir(program: string): string {
  const root = tracesRoot();
  mkdirSync(root, { recursive: true });
  const name = basename(program).replace(/[^A-Za-z0-9._-]/g, '_') || 'trace';
  let n = 0;
  for (const entry of readdirSync(root)) {
    const m = new RegExp(`^${name.replace(/[.]/g, '\\.')}-(\\d+)$`).exec(entry);
    if (m?.[1]) n = Math.max(n, Number(m[1]) + 1);
  }
  for (;;) {
    const dir = join(root, `${name}-${n}`);
    try {
      mkdirSync(dir);
      return dir;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      n++;
    }
  }
}

/** Points `latest` at `dir` (which may lie outside the traces directory: `record -o`). */
export function updateLatest(dir: string): void {
  const root = tracesRoot();
  mkdirSync(root, { recursive: true });
  const tmp = join(root, `.latest-${process.pid}`);
  symlinkSync(resolve(dir), tmp);
  renameSync(tmp, join(root, 'latest'));
}

/** The trace a command names: a directory, or the latest recording when none is given. */
export function resolveTraceDir(arg: string | undefined): string {
  if (arg) return resolve(arg);
  const latest = join(tracesRoot(), 'latest');
  if (!existsSync(latest)) {
    throw new UserError(`no trace given and no recording yet in ${tracesRoot()}`);
  }
  const target = readlinkSync(latest);
  return isAbsolute(target) ? target : join(tracesRoot(), target);
}
