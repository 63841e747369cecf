// A debug session's worker process: `node debug_worker.js DIR --stdio` serves gdb's remote
// protocol for the trace directory on stdin/stdout until the session ends; its messages go to
// stderr. One process a session, so a crash or a hostile trace ends only that session.
import { debugOverStdio } from '../../debugserver/serve.js';
import { reportError } from '../../trace/user_error.js';

try {
  await debugOverStdio(process.argv[2] ?? '.', { nameById: true });
} catch (err) {
  process.exitCode = reportError(err);
}
