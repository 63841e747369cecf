// A dump session's worker process: `node dump_worker.js DIR FROM TO` prints events FROM to TO of
// the trace directory on stdout, one JSON object a line. The event stream is untrusted input, so
// it is parsed here, in the replay sandbox, and never in the server's own process.
import { confine } from '../../native/index.js';
import { readEvents } from '../../trace/dump.js';
import { requireEngine } from '../../trace/engine.js';
import { reportError, UserError } from '../../trace/user_error.js';

try {
  const [dir, from, to] = process.argv.slice(2);
  if (!dir || !/^\d+$/.test(from ?? '') || !/^\d+$/.test(to ?? '')) throw new UserError('usage: dump_worker DIR FROM TO', 64);
  requireEngine();
  confine(dir);
  for (const e of readEvents(dir, Number(from), Number(to))) process.stdout.write(`${JSON.stringify(e)}\n`);
} catch (err) {
  process.exitCode = reportError(err);
}
