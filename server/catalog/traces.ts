// Traces: the catalogue's listing (filters, full-text search) over committed manifests, and the
// blob references each commit and delete counts.
import path from 'node:path';
import Database from 'better-sqlite3';
import { failedPrecondition, invalidArgument, notFound } from '../errors.js';
import { distinctBlobs } from '../../trace/manifest.js';
import { listQueries, listSql, mergePages, searchColumns, searchWords, toTrace, TRACE_COLS, type Page, type RawTrace } from './listing.js';
import type { SqliteReaders } from './sqlite_readers.js';
import type { NewTrace, TraceStore } from './stores.js';
import type { BlobEntry, TraceFilter, TraceRow } from './types.js';

/** The columns a committed trace is listed by, from its manifest. */
export function traceColumns(t: NewTrace): {
  program: string;
  argv0: string;
  startMs: number;
  exitStatus: number;
  signal: string | null;
  size: number;
  blobs: Map<string, number>;
} {
  const m = t.manifest;
  const blobs = distinctBlobs(m);
  let size = 0;
  for (const s of blobs.values()) size += s;
  return {
    program: path.posix.basename(m.exe || m.argv[0] || ''),
    argv0: path.posix.basename(m.argv[0] ?? ''),
    startMs: Date.parse(m.startTime),
    exitStatus: m.exit?.status ?? -1,
    signal: m.exit?.signal ?? null,
    size,
    blobs,
  };
}

/** Throws unless every blob a trace names is stored, at the size it says (`stored`: sha256 → size). */
export function checkBlobs(id: string, blobs: Map<string, number>, stored: Map<string, number>): void {
  const missing: string[] = [];
  for (const [sha, size] of blobs) {
    const have = stored.get(sha);
    if (have === undefined) missing.push(sha);
    else if (have !== size) throw invalidArgument(`blob ${sha} is ${have} bytes, but the manifest says ${size}`);
  }
  if (missing.length > 0) throw failedPrecondition(`cannot commit trace ${id}: ${missing.length} blob(s) not uploaded yet (first: ${missing[0]})`);
}

/** Free text as an FTS5 query: every word must occur (as a prefix). */
function ftsQuery(text: string): string {
  return searchWords(text)
    .map((w) => `"${w.replace(/"/g, '""')}"*`)
    .join(' ');
}

export class SqliteTraces implements TraceStore {
  constructor(
    private readonly db: Database.Database,
    private readonly readers: SqliteReaders,
  ) {}

  async has(id: string): Promise<boolean> {
    return this.exists(id);
  }

  private exists(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM traces WHERE id = ?').get(id) !== undefined;
  }

  async commit(t: NewTrace): Promise<boolean> {
    return this.db.transaction(() => this.insert(t)).immediate();
  }

  async commitMany(ts: NewTrace[]): Promise<number> {
    return this.db.transaction(() => ts.filter((t) => this.insert(t)).length).immediate();
  }

  private insert(t: NewTrace): boolean {
    const m = t.manifest;
    if (this.exists(m.id)) return false;
    const c = traceColumns(t);
    const sizeOf = this.db.prepare('SELECT size FROM blobs WHERE sha256 = ?');
    const stored = new Map<string, number>();
    for (const sha of c.blobs.keys()) {
      const r = sizeOf.get(sha) as { size: number } | undefined;
      if (r) stored.set(sha, r.size);
    }
    checkBlobs(m.id, c.blobs, stored);
    const info = this.db
      .prepare(
        `INSERT INTO traces (id, host, program, argv0, exe, argv, user, cwd, start_ms, duration_ms, exit_status, signal,
           complete, size_bytes, labels, manifest, uploaded_ms, token_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        m.id, m.host.hostname, c.program, c.argv0, m.exe, JSON.stringify(m.argv), m.user, m.cwd, c.startMs,
        m.durationMs, c.exitStatus, c.signal, m.complete ? 1 : 0, c.size, JSON.stringify(t.labels), t.manifestJson, t.uploadedMs ?? Date.now(), t.tokenId,
      );
    const addLabel = this.db.prepare('INSERT INTO trace_labels (trace_id, key, value) VALUES (?, ?, ?)');
    for (const [k, v] of Object.entries(t.labels)) addLabel.run(m.id, k, v);
    const addRef = this.db.prepare('INSERT INTO trace_blobs (trace_id, idx, sha256, size, role, path) VALUES (?, ?, ?, ?, ?, ?)');
    m.blobs.forEach((b, i) => addRef.run(m.id, i, b.sha256, b.size, b.role, b.path ?? ''));
    const inc = this.db.prepare('UPDATE blobs SET refcount = refcount + 1 WHERE sha256 = ?');
    for (const sha of c.blobs.keys()) inc.run(sha);
    this.db
      .prepare('INSERT INTO traces_fts (rowid, argv, exe, host, cwd, user, labels) VALUES (?, ?, ?, ?, ?, ?, ?)')
      .run(info.lastInsertRowid, ...searchColumns({ argv: m.argv, exe: m.exe, host: m.host.hostname, cwd: m.cwd, user: m.user, labels: t.labels }));
    return true;
  }

  async list(f: TraceFilter): Promise<Page> {
    const queries = listQueries(f, 't.rowid IN (SELECT rowid FROM traces_fts WHERE traces_fts MATCH ?)', ftsQuery);
    const parts = await Promise.all(
      queries.map(async (q) => {
        try {
          const r = await this.readers.all<RawTrace>(listSql(q), q.args, f.search ? 'search' : 'other', f.maxBytes);
          return { rows: r.rows.map(toTrace), truncated: r.truncated };
        } catch (err) {
          // FTS5 refuses some texts as a query: the client's to change, not the server's fault.
          if (f.search && err instanceof Database.SqliteError && err.code === 'SQLITE_ERROR') throw invalidArgument(`bad search text: ${err.message}`);
          throw err;
        }
      }),
    );
    return mergePages(parts, queries[0]!.limit);
  }

  async get(id: string): Promise<{ trace: TraceRow; manifest: string; blobs: BlobEntry[] }> {
    const r = this.db.prepare(`SELECT ${TRACE_COLS}, t.manifest FROM traces t WHERE t.id = ?`).get(id) as (RawTrace & { manifest: string }) | undefined;
    if (!r) throw notFound(`no trace ${id}`);
    const blobs = this.db.prepare('SELECT sha256, size, role, path FROM trace_blobs WHERE trace_id = ? ORDER BY idx').all(id) as BlobEntry[];
    return { trace: toTrace(r), manifest: r.manifest, blobs };
  }

  async delete(id: string): Promise<{ sha256: string; size: number }[]> {
    const run = this.db.transaction(() => {
      const r = this.db.prepare('SELECT rowid FROM traces WHERE id = ?').get(id) as { rowid: number } | undefined;
      if (!r) throw notFound(`no trace ${id}`);
      const shas = (this.db.prepare('SELECT DISTINCT sha256 FROM trace_blobs WHERE trace_id = ?').all(id) as { sha256: string }[]).map((x) => x.sha256);
      this.db.prepare('DELETE FROM traces_fts WHERE rowid = ?').run(r.rowid);
      this.db.prepare('DELETE FROM traces WHERE id = ?').run(id);
      const dec = this.db.prepare('UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ? RETURNING size, refcount');
      const del = this.db.prepare('DELETE FROM blobs WHERE sha256 = ?');
      const freed: { sha256: string; size: number }[] = [];
      for (const sha of shas) {
        const b = dec.get(sha) as { size: number; refcount: number } | undefined;
        if (b && b.refcount <= 0) {
          del.run(sha);
          freed.push({ sha256: sha, size: b.size });
        }
      }
      return freed;
    });
    return run.immediate();
  }

  async bytesUploadedBy(tokenId: string): Promise<number> {
    const r = await this.readers.all<{ s: number }>('SELECT COALESCE(SUM(size_bytes), 0) AS s FROM traces WHERE token_id = ?', [tokenId], 'other');
    return r.rows[0]!.s;
  }

  async stats(): Promise<{ traces: number; blobs: number; blobBytes: number }> {
    const r = await this.readers.all<{ t: number; b: number; s: number }>(
      'SELECT (SELECT COUNT(*) FROM traces) AS t, COUNT(*) AS b, COALESCE(SUM(size), 0) AS s FROM blobs',
      [],
      'other',
    );
    const x = r.rows[0]!;
    return { traces: x.t, blobs: x.b, blobBytes: x.s };
  }
}
