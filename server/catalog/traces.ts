// Traces: the catalogue's listing (filters, full-text search) over committed manifests, and the
// blob references each commit and delete counts.
import path from 'node:path';
import Database from 'better-sqlite3';
import { failedPrecondition, invalidArgument, notFound } from '../errors.js';
import { distinctBlobs, type Manifest } from '../../trace/manifest.js';
import type { BlobEntry, TraceFilter, TraceRow } from './types.js';

export interface TraceStore {
  has(id: string): boolean;
  /**
   * Commits a trace in one transaction, only if every blob it names is present.
   * Returns false (and changes nothing) when the trace is already there.
   */
  commit(m: Manifest, manifestJson: string, labels: Record<string, string>, tokenId: string): boolean;
  /**
   * The traces that match, newest first: at most `limit`, and no more rows than fit in
   * `maxBytes` of text (then `truncated`; the rows are read one at a time, so a listing of huge
   * rows never holds more than that in memory).
   */
  list(f: TraceFilter): { rows: TraceRow[]; truncated: boolean };
  get(id: string): { trace: TraceRow; manifest: string; blobs: BlobEntry[] };
  /** Deletes a trace; returns the blobs no trace references any more (their rows are gone). */
  delete(id: string): { sha256: string; size: number }[];
  stats(): { traces: number; blobs: number; blobBytes: number };
  /** The size of every trace committed with this token. */
  bytesUploadedBy(tokenId: string): number;
}

interface RawTrace {
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
  complete: number;
  size_bytes: number;
  labels: string;
  uploaded_ms: number;
}

const TRACE_COLS =
  't.id, t.host, t.program, t.exe, t.argv, t.user, t.cwd, t.start_ms, t.duration_ms, t.exit_status, t.signal, t.complete, t.size_bytes, t.labels, t.uploaded_ms';

const newestFirst = (x: TraceRow, y: TraceRow): number => y.startMs - x.startMs || (x.id < y.id ? -1 : x.id > y.id ? 1 : 0);

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

function toTrace(r: RawTrace): TraceRow {
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
    complete: r.complete !== 0,
    sizeBytes: r.size_bytes,
    labels: parsed<Record<string, string>>(r.labels, isStringMap, {}),
    uploadedMs: r.uploaded_ms,
  };
}

export class SqliteTraces implements TraceStore {
  constructor(private readonly db: Database.Database) {}

  has(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM traces WHERE id = ?').get(id) !== undefined;
  }

  commit(m: Manifest, manifestJson: string, labels: Record<string, string>, tokenId: string): boolean {
    const run = this.db.transaction((): boolean => {
      if (this.has(m.id)) return false;
      const blobs = distinctBlobs(m);
      const missing: string[] = [];
      const sizeOf = this.db.prepare('SELECT size FROM blobs WHERE sha256 = ?');
      for (const [sha, size] of blobs) {
        const r = sizeOf.get(sha) as { size: number } | undefined;
        if (!r) missing.push(sha);
        else if (r.size !== size) throw invalidArgument(`blob ${sha} is ${r.size} bytes, but the manifest says ${size}`);
      }
      if (missing.length > 0) {
        throw failedPrecondition(`cannot commit trace ${m.id}: ${missing.length} blob(s) not uploaded yet (first: ${missing[0]})`);
      }
      let size = 0;
      for (const s of blobs.values()) size += s;
      const program = path.posix.basename(m.exe || m.argv[0] || '');
      const info = this.db
        .prepare(
          `INSERT INTO traces (id, host, program, argv0, exe, argv, user, cwd, start_ms, duration_ms, exit_status, signal,
             complete, size_bytes, labels, manifest, uploaded_ms, token_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          m.id, m.host.hostname, program, path.posix.basename(m.argv[0] ?? ''), m.exe, JSON.stringify(m.argv), m.user, m.cwd, Date.parse(m.startTime),
          m.durationMs, m.exit?.status ?? -1, m.exit?.signal ?? null, m.complete ? 1 : 0, size, JSON.stringify(labels), manifestJson, Date.now(), tokenId,
        );
      const addLabel = this.db.prepare('INSERT INTO trace_labels (trace_id, key, value) VALUES (?, ?, ?)');
      for (const [k, v] of Object.entries(labels)) addLabel.run(m.id, k, v);
      const addRef = this.db.prepare('INSERT INTO trace_blobs (trace_id, idx, sha256, size, role, path) VALUES (?, ?, ?, ?, ?, ?)');
      m.blobs.forEach((b, i) => addRef.run(m.id, i, b.sha256, b.size, b.role, b.path ?? ''));
      const inc = this.db.prepare('UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ?');
      for (const sha of blobs.keys()) inc.run(sha);
      this.db
        .prepare('INSERT INTO traces_fts (rowid, argv, exe, host, cwd, user, labels) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(
          info.lastInsertRowid, m.argv.join(' '), m.exe, m.host.hostname, m.cwd, m.user,
          Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(' '),
        );
      return true;
    });
    return run.immediate();
  }

  list(f: TraceFilter): { rows: TraceRow[]; truncated: boolean } {
    const limit = Math.min(Math.max(f.limit || 50, 1), 10_000);
    if (f.program && !f.program.includes('/')) {
      // The executable's name or the name it was run as (python3 vs python3.11): two queries
      // that each walk their (name, start) index, merged newest first.
      const parts = [this.queryTraces(f, ['t.program = ?'], [f.program], limit), this.queryTraces(f, ['t.argv0 = ?', 't.program != ?'], [f.program, f.program], limit)];
      let rows = parts.flatMap((p) => p.rows).sort(newestFirst);
      // A query cut short covers only up to its last row: nothing older may fill its gap.
      for (const p of parts) {
        const last = p.rows[p.rows.length - 1];
        if (p.truncated && last) rows = rows.filter((r) => newestFirst(r, last) <= 0);
      }
      return { rows: rows.slice(0, limit), truncated: parts.some((p) => p.truncated) };
    }
    return this.queryTraces(f, f.program ? ['t.exe = ?'] : [], f.program ? [f.program] : [], limit);
  }

  private queryTraces(f: TraceFilter, extraWhere: string[], extraArgs: (string | number)[], limit: number): { rows: TraceRow[]; truncated: boolean } {
    const where: string[] = [...extraWhere];
    const args: (string | number)[] = [...extraArgs];
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
      where.push('t.rowid IN (SELECT rowid FROM traces_fts WHERE traces_fts MATCH ?)');
      args.push(ftsQuery(f.search));
    }
    const sql = `SELECT ${TRACE_COLS} FROM traces t ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
      ORDER BY t.start_ms DESC, t.id LIMIT ${limit}`;
    const maxBytes = f.maxBytes ?? Infinity;
    try {
      const rows: TraceRow[] = [];
      let bytes = 0;
      for (const r of this.db.prepare(sql).iterate(...args) as IterableIterator<RawTrace>) {
        bytes += r.argv.length + r.labels.length + r.exe.length + r.cwd.length + r.host.length + r.user.length + 100;
        if (rows.length > 0 && bytes > maxBytes) return { rows, truncated: true };
        rows.push(toTrace(r));
      }
      return { rows, truncated: false };
    } catch (err) {
      // FTS5 refuses some texts as a query: the client's to change, not the server's fault.
      if (f.search && err instanceof Database.SqliteError && err.code === 'SQLITE_ERROR') throw invalidArgument(`bad search text: ${err.message}`);
      throw err;
    }
  }

  get(id: string): { trace: TraceRow; manifest: string; blobs: BlobEntry[] } {
    const r = this.db.prepare(`SELECT ${TRACE_COLS}, t.manifest FROM traces t WHERE t.id = ?`).get(id) as
      | (RawTrace & { manifest: string })
      | undefined;
    if (!r) throw notFound(`no trace ${id}`);
    const blobs = this.db
      .prepare('SELECT sha256, size, role, path FROM trace_blobs WHERE trace_id = ? ORDER BY idx')
      .all(id) as BlobEntry[];
    return { trace: toTrace(r), manifest: r.manifest, blobs };
  }

  delete(id: string): { sha256: string; size: number }[] {
    const run = this.db.transaction(() => {
      const r = this.db.prepare('SELECT rowid FROM traces WHERE id = ?').get(id) as { rowid: number } | undefined;
      if (!r) throw notFound(`no trace ${id}`);
      const shas = (this.db.prepare('SELECT DISTINCT sha256 FROM trace_blobs WHERE trace_id = ?').all(id) as { sha256: string }[]).map(
        (x) => x.sha256,
      );
      this.db.prepare('DELETE FROM traces_fts WHERE rowid = ?').run(r.rowid);
      this.db.prepare('DELETE FROM traces WHERE id = ?').run(id);
      const dec = this.db.prepare('UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ?');
      const get = this.db.prepare('SELECT size, refcount FROM blobs WHERE sha256 = ?');
      const del = this.db.prepare('DELETE FROM blobs WHERE sha256 = ?');
      const freed: { sha256: string; size: number }[] = [];
      for (const sha of shas) {
        dec.run(sha);
        const b = get.get(sha) as { size: number; refcount: number } | undefined;
        if (b && b.refcount <= 0) {
          del.run(sha);
          freed.push({ sha256: sha, size: b.size });
        }
      }
      return freed;
    });
    return run.immediate();
  }

  bytesUploadedBy(tokenId: string): number {
    return (this.db.prepare('SELECT COALESCE(SUM(size_bytes), 0) AS s FROM traces WHERE token_id = ?').get(tokenId) as { s: number }).s;
  }

  stats(): { traces: number; blobs: number; blobBytes: number } {
    const t = this.db.prepare('SELECT COUNT(*) AS n FROM traces').get() as { n: number };
    const b = this.db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS s FROM blobs').get() as { n: number; s: number };
    return { traces: t.n, blobs: b.n, blobBytes: b.s };
  }
}

/** A search's bounds: FTS5 plans and runs a query on the event loop, in time growing with its terms. */
const SEARCH_LIMITS = { chars: 1024, words: 16 } as const;

/** Turns free text into an FTS5 query: every word must occur (as a prefix). */
function ftsQuery(text: string): string {
  if (text.length > SEARCH_LIMITS.chars) throw invalidArgument(`search text is longer than ${SEARCH_LIMITS.chars} characters`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000e-\u001f\u007f]/.test(text)) throw invalidArgument('search text must not contain control characters');
  const words = text.split(/\s+/).filter(Boolean);
  if (words.length > SEARCH_LIMITS.words) throw invalidArgument(`search has ${words.length} words; at most ${SEARCH_LIMITS.words}`);
  return words.map((w) => `"${w.replace(/"/g, '""')}"*`).join(' ');
}
