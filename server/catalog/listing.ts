// What the SQLite and PostgreSQL catalogues share about listing traces: the filters as SQL (with
// `?` placeholders), the merge of the program filter's two queries, the rows as the services see
// them, and the bounds and word splitting of a search.
import { invalidArgument } from '../errors.js';
import type { TraceFilter, TraceRow } from './types.js';

/** A listing's columns; `"user"` is quoted because PostgreSQL reserves the word. */
export const TRACE_COLS =
  't.id, t.host, t.program, t.exe, t.argv, t."user", t.cwd, t.start_ms, t.duration_ms, t.exit_status, t.signal, t.complete, t.size_bytes, t.labels, t.uploaded_ms';

export interface RawTrace {
  id: string;
  host: string;
  program: string;
  exe: string;
  argv: string;
  user: string;
  cwd: string;
  start_ms: number;
  duration_ms: number;
  exit_status: number;
  signal: string | null;
  complete: number | boolean;
  size_bytes: number;
  labels: string;
  uploaded_ms: number;
}

/** The text a row carries, as counted against a listing's byte budget. */
export function rowBytes(r: RawTrace): number {
  return r.argv.length + r.labels.length + r.exe.length + r.cwd.length + r.host.length + r.user.length + 100;
}

export const newestFirst = (x: TraceRow, y: TraceRow): number => y.startMs - x.startMs || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);

/** JSON the catalogue wrote; a row damaged on disk (or by hand) reads as `fallback`. */
function parsed<T>(json: string, ok: (v: unknown) => boolean, fallback: T): T {
  try {
    const v: unknown = JSON.parse(json);
    return ok(v) ? (v as T) : fallback;
  } catch {
    return fallback;
  }
}

const isStrings = (v: unknown): boolean => Array.isArray(v) && v.every((x) => typeof x === 'string');
const isStringMap = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');

export function toTrace(r: RawTrace): TraceRow {
  return {
    id: r.id,
    host: r.host,
    program: r.program,
    argv: parsed<string[]>(r.argv, isStrings, []),
    exe: r.exe,
    user: r.user,
    cwd: r.cwd,
    startMs: r.start_ms,
    durationMs: r.duration_ms,
    exitStatus: r.exit_status,
    signal: r.signal,
    complete: r.complete === true || r.complete === 1,
    sizeBytes: r.size_bytes,
    labels: parsed<Record<string, string>>(r.labels, isStringMap, {}),
    uploadedMs: r.uploaded_ms,
  };
}

export interface Page {
  rows: TraceRow[];
  truncated: boolean;
}

export function listLimit(f: TraceFilter): number {
  return Math.min(Math.max(f.limit || 50, 1), 10_000);
}

/** One query of a listing: its WHERE terms (with `?`) and their arguments, newest first. */
export interface ListQuery {
  where: string[];
  args: (string | number)[];
  limit: number;
}

/**
 * A filter as one or two queries. A program name without a slash is the executable's name or the
 * name it was run as (python3 vs python3.11): two queries that each walk their (name, start)
 * index (the second a partial one, of the rows whose two names differ), merged by mergePages. `searchTerm` is the backend's full-text condition.
 */
export function listQueries(f: TraceFilter, searchTerm: string, searchArg: (text: string) => string): ListQuery[] {
  const limit = listLimit(f);
  const where: string[] = [];
  const args: (string | number)[] = [];
  if (f.host) {
    where.push('t.host = ?');
    args.push(f.host);
  }
  if (f.exitStatus !== undefined) {
    where.push('t.exit_status = ?');
    args.push(f.exitStatus);
  }
  // A negative status is unknown (a recording cut short): not counted as failed.
  if (f.failed) where.push('(t.exit_status > 0 OR t.signal IS NOT NULL)');
  if (f.signal) {
    where.push('t.signal = ?');
    args.push(f.signal);
  }
  if (f.sinceMs !== undefined) {
    where.push('t.start_ms >= ?');
    args.push(f.sinceMs);
  }
  if (f.untilMs !== undefined) {
    where.push('t.start_ms <= ?');
    args.push(f.untilMs);
  }
  for (const [k, v] of Object.entries(f.labels ?? {})) {
    where.push('EXISTS (SELECT 1 FROM trace_labels l WHERE l.trace_id = t.id AND l.key = ? AND l.value = ?)');
    args.push(k, v);
  }
  if (f.search) {
    where.push(searchTerm);
    args.push(searchArg(f.search));
  }
  if (f.program && !f.program.includes('/')) {
    return [
      { where: ['t.program = ?', ...where], args: [f.program, ...args], limit },
      // `argv0 != program`, not `program != ?`: the same rows, and the words of the partial index
      // traces_argv0_other, which holds only such rows (few), so none of this name is walked.
      { where: ['t.argv0 = ?', 't.argv0 != t.program', ...where], args: [f.program, ...args], limit },
    ];
  }
  if (f.program) return [{ where: ['t.exe = ?', ...where], args: [f.program, ...args], limit }];
  return [{ where, args, limit }];
}

export function listSql(q: ListQuery, extraCols = ''): string {
  return `SELECT ${TRACE_COLS}${extraCols} FROM traces t ${q.where.length ? `WHERE ${q.where.join(' AND ')}` : ''}
    ORDER BY t.start_ms DESC, t.id LIMIT ${q.limit}`;
}

/** The pages of a filter's queries as one, newest first. */
export function mergePages(parts: Page[], limit: number): Page {
  if (parts.length === 1) return parts[0]!;
  let rows = parts.flatMap((p) => p.rows).sort(newestFirst);
  // A query cut short covers only up to its last row: nothing older may fill its gap.
  for (const p of parts) {
    const last = p.rows[p.rows.length - 1];
    if (p.truncated && last) rows = rows.filter((r) => newestFirst(r, last) <= 0);
  }
  return { rows: rows.slice(0, limit), truncated: parts.some((p) => p.truncated) };
}

/** A search's bounds: its work grows with its terms. */
const SEARCH_LIMITS = { chars: 1024, words: 16 } as const;

/** The words of a search, checked: every word must occur (as a prefix) in the trace. */
export function searchWords(text: string): string[] {
  if (text.length > SEARCH_LIMITS.chars) throw invalidArgument(`search text is longer than ${SEARCH_LIMITS.chars} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) throw invalidArgument('search text must not contain control characters');
  const words = text.split(/\s+/).filter(Boolean);
  if (words.length > SEARCH_LIMITS.words) throw invalidArgument(`search has ${words.length} words; at most ${SEARCH_LIMITS.words}`);
  return words;
}

/** The texts a trace is searched by (one FTS5 column each), in order. */
export function searchColumns(t: { argv: string[]; exe: string; host: string; cwd: string; user: string; labels: Record<string, string> }): string[] {
  return [
    t.argv.join(' '),
    t.exe,
    t.host,
    t.cwd,
    t.user,
    Object.entries(t.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(' '),
  ];
}

/**
 * Splits text into search tokens as SQLite's FTS5 (unicode61) does: runs of letters and digits,
 * case-folded, diacritics removed. PostgreSQL's own parser would keep `/usr/bin/gcc` or
 * `file42.c` whole; with these tokens both catalogues find the same traces.
 */
export function searchTokens(text: string): string[] {
  return text.normalize('NFKD').replace(/\p{M}/gu, '').toLowerCase().match(/[\p{L}\p{N}\p{Co}]+/gu) ?? [];
}
