// A debug session's worker process: `node debug_worker.js DIR --stdio [--moment M]` serves gdb's remote
// protocol for the trace directory on stdin/stdout until the session ends; its messages go to
// stderr. One process a session, so a crash or a hostile trace ends only that session.
import { debugOverStdio } from '../../debugserver/serve.js';
import { parseMoment } from '../../trace/query.js';
import { reportError } from '../../trace/user_error.js';

try {
  const [dir, , flag, moment] = process.argv.slice(2);
  const at = flag === '--moment' && moment !== undefined ? { moment: parseMoment(moment) } : undefined;
  await debugOverStdio(dir ?? '.', { nameById: true, at });
} catch (err) {
  process.exitCode = reportError(err);
}
