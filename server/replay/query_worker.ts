// A query session's worker process: `node query_worker.js DIR QUERY...` answers a query about the
// trace directory (trace/query.ts) and prints, one JSON object a line, progress while it replays
// ({"progress": {event, events}}), the answer's head ({"head": {query, kind, subject, events}})
// and then each row ({"row": {...}}). The trace is untrusted input: it is read here, in the
// replay sandbox, and the server checks every line it gets (query_lines.ts).
import { answerQuery, parseQuery } from '../../trace/query.js';
import { requireEngine } from '../../trace/engine.js';
import { reportError, UserError } from '../../trace/user_error.js';

try {
  const [dir, ...words] = process.argv.slice(2);
  if (!dir || words.length === 0) throw new UserError('usage: query_worker DIR QUERY...', 64);
  requireEngine();
  const answer = await answerQuery(dir, parseQuery(words), {
    nameById: true,
    onProgress: (event, events) => process.stdout.write(`${JSON.stringify({ progress: { event, events } })}\n`),
  });
  const { rows, ...head } = answer;
  process.stdout.write(`${JSON.stringify({ head })}\n`);
  for (const row of rows) process.stdout.write(`${JSON.stringify({ row })}\n`);
} catch (err) {
  process.exitCode = reportError(err);
}
