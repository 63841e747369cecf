// A debug session's worker process: `node debug_worker.js DIR --stdio [--moment=M] [--pid=N]
// [--exec=NAME]` serves gdb's remote protocol for the trace directory on stdin/stdout until the
// session ends; its messages go to stderr. One process a session, so a crash or a hostile trace
// ends only that session. The server checked the options (they come from a Debug start message).
import { parseArgs } from 'node:util';
import { debugOverStdio } from '../../debugserver/serve.js';
import { parseMoment } from '../../trace/query.js';
import { reportError } from '../../trace/user_error.js';

try {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { stdio: { type: 'boolean' }, moment: { type: 'string' }, pid: { type: 'string' }, exec: { type: 'string' } },
  });
  const at = values.moment !== undefined ? { moment: parseMoment(values.moment) } : undefined;
  const choice = values.pid !== undefined || values.exec !== undefined ? { pid: values.pid === undefined ? undefined : Number(values.pid), exec: values.exec } : undefined;
  await debugOverStdio(positionals[0] ?? '.', { nameById: true, at, process: choice });
} catch (err) {
  process.exitCode = reportError(err);
}
