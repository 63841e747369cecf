// A recording job's worker process: `node record_worker.js DIR PROGRAM ARGS...` records the
// program into the empty directory DIR (made if missing) and exits with the program's status;
// a failure is one line on stderr. Its traces are the agent's, never the user's `latest`.
import { mkdirSync } from 'node:fs';
import { requireEngine } from '../trace/engine.js';
import { recordTrace, resolveProgram } from '../trace/record.js';
import { reportError, UserError } from '../trace/user_error.js';

try {
  const [dir, ...command] = process.argv.slice(2);
  if (!dir || !command[0]) throw new UserError('usage: record_worker DIR PROGRAM [ARGS...]', 64);
  const exe = resolveProgram(command[0]);
  const engine = requireEngine();
  mkdirSync(dir, { recursive: true });
  process.exitCode = (await recordTrace(engine, command, exe, dir, { latest: false })).exit.status;
} catch (err) {
  process.exitCode = reportError(err);
}
