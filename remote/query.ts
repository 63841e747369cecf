import { isServiceError, withClients } from './client.js';
import { resolveConfig, type ClientFlags } from './config.js';
import type { QueryResponse } from '../gen/rewind/replay/v1/replay.js';
import { queryText, type QueryAnswer, type QueryRow, type QuerySpec } from '../trace/query.js';

/** A query about a trace stored on the server (`rewind query ID ...`); `progress` sees the server's replay go. */
export async function remoteQuery(id: string, spec: QuerySpec, flags: ClientFlags, progress: (event: number, events: number) => void): Promise<QueryAnswer> {
  return withClients(resolveConfig(flags), (c) => {
    return new Promise<QueryAnswer>((resolve, reject) => {
      let answer: QueryAnswer | undefined;
      const stream = c.replay.query({ traceId: id, query: queryText(spec) }, c.metadata());
      stream.on('data', (msg: QueryResponse) => {
        if (msg.progress) progress(Number(msg.progress.event), Number(msg.progress.events));
        const a = msg.answer;
        if (!a) return;
        answer ??= { query: a.query, kind: a.kind as QueryAnswer['kind'], subject: a.subject, events: Number(a.events), rows: [] };
        for (const r of a.rows) answer.rows.push(row(a.kind, r));
      });
      stream.on('error', (e: unknown) => reject(isServiceError(e) ? e : new Error(String(e))));
      stream.on('end', () => (answer ? resolve(answer) : reject(new Error('the server ended the query without an answer'))));
    });
  });
}

/** A row as trace/query.ts makes it: only the fields of its kind. */
function row(kind: string, r: NonNullable<QueryResponse['answer']>['rows'][number]): QueryRow {
  const base: QueryRow = { moment: r.moment, event: Number(r.event), thread: r.thread };
  if (kind === 'calls') return { ...base, arguments: r.arguments };
  if (kind === 'syscalls') return { ...base, syscall: r.syscall, text: r.text };
  const out: QueryRow = { ...base, old: Buffer.from(r.oldValue).toString('hex'), new: Buffer.from(r.newValue).toString('hex'), cause: r.cause as QueryRow['cause'] };
  for (const key of ['pc', 'instruction', 'line'] as const) if (r[key]) out[key] = r[key];
  return out;
}
