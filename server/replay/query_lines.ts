import type { QueryAnswer, QueryArgument, QueryRow, QuerySpec } from '../../trace/query.js';

/** A query worker's line is one row; anything longer is not one of ours. */
const MAX_LINE = 64 * 1024;
const MAX_TEXT = 16 * 1024;
const KINDS: ReadonlySet<string> = new Set<QuerySpec['kind']>(['calls', 'writes', 'syscalls']);
const CAUSES: ReadonlySet<string> = new Set(['instruction', 'syscall', 'unexplained']);

export type QueryLine = { progress: { event: number; events: number } } | { head: Omit<QueryAnswer, 'rows'> } | { row: QueryRow };

/**
 * Splits a query worker's stdout into its messages. The worker read an untrusted trace, so each
 * line is checked to be one of them, field by field, before it goes further.
 */
export class QueryLines {
  private partial = '';

  push(chunk: Buffer): QueryLine[] {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop()!;
    if (this.partial.length > MAX_LINE) throw new Error('the query worker wrote an overlong line');
    return lines.filter((l) => l.length > 0).map(parseLine);
  }

  end(): void {
    if (this.partial) throw new Error('the query worker stopped inside a line');
  }
}

function bad(): never {
  throw new Error('the query worker wrote something that is not part of an answer');
}

function obj(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : bad();
}

function count(v: unknown): number {
  return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : bad();
}

function text(v: unknown, optional: true): string | undefined;
function text(v: unknown): string;
function text(v: unknown, optional = false): string | undefined {
  if (v === undefined && optional) return undefined;
  return typeof v === 'string' && v.length <= MAX_TEXT ? v : bad();
}

function hexBytes(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  return typeof v === 'string' && /^(?:[0-9a-f]{2}){0,32}$/.test(v) ? v : bad();
}

function parseLine(line: string): QueryLine {
  const v = obj(JSON.parse(line));
  if ('progress' in v) {
    const p = obj(v.progress);
    return { progress: { event: count(p.event), events: count(p.events) } };
  }
  if ('head' in v) {
    const h = obj(v.head);
    const kind = text(h.kind);
    if (!KINDS.has(kind)) bad();
    return { head: { query: text(h.query), kind: kind as QuerySpec['kind'], subject: text(h.subject), events: count(h.events) } };
  }
  if ('row' in v) return { row: parseRow(obj(v.row)) };
  return bad();
}

function parseRow(r: Record<string, unknown>): QueryRow {
  const row: QueryRow = { moment: text(r.moment), event: count(r.event), thread: count(r.thread) };
  if (r.arguments !== undefined) {
    if (!Array.isArray(r.arguments) || r.arguments.length > 64) bad();
    row.arguments = r.arguments.map((a): QueryArgument => {
      const o = obj(a);
      return { name: text(o.name), type: text(o.type), value: text(o.value) };
    });
  }
  const old = hexBytes(r.old);
  const now = hexBytes(r.new);
  if (old !== undefined) row.old = old;
  if (now !== undefined) row.new = now;
  if (r.cause !== undefined) {
    const cause = text(r.cause);
    if (!CAUSES.has(cause)) bad();
    row.cause = cause as QueryRow['cause'];
  }
  for (const key of ['pc', 'instruction', 'line', 'syscall', 'text'] as const) {
    const s = text(r[key], true);
    if (s !== undefined) row[key] = s;
  }
  return row;
}
