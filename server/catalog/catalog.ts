import Database from 'better-sqlite3';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { failedPrecondition, invalidArgument, notFound } from '../errors.js';
import { distinctBlobs, type Manifest } from '../../trace/manifest.js';

export type RoleName = 'agent' | 'reader' | 'admin';

export interface TokenRow {
  id: string;
  name: string;
  role: RoleName;
  createdMs: number;
  revokedMs: number | null;
}

export interface TraceRow {
  id: string;
  host: string;
  program: string;
  argv: string[];
  exe: string;
  user: string;
  cwd: string;
  startMs: number;
  durationMs: number;
  exitStatus: number;
  signal: string | null;
  complete: boolean;
  sizeBytes: number;
  labels: Record<string, string>;
  uploadedMs: number;
}

export interface TraceFilter {
  host?: string;
  program?: string;
  exitStatus?: number;
  failed?: boolean;
  signal?: string;
  sinceMs?: number;
  untilMs?: number;
  labels?: Record<string, string>;
  search?: string;
  limit?: number;
}

export interface BlobEntry {
  sha256: string;
  size: number;
  role: string;
  path: string;
}

export interface AgentRow {
  id: string;
  hostname: string;
  facts: string;
  registeredMs: number;
  lastHeartbeatMs: number;
}

export type JobState = 'pending' | 'running' | 'done' | 'failed';

export interface JobRow {
  id: string;
  hostname: string;
  argv: string[];
  labels: Record<string, string>;
  state: JobState;
  traceId: string;
  error: string;
  createdMs: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
  created_ms INTEGER NOT NULL, revoked_ms INTEGER);
CREATE TABLE IF NOT EXISTS blobs (
  sha256 TEXT PRIMARY KEY, size INTEGER NOT NULL, refcount INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS traces (
  id TEXT PRIMARY KEY, host TEXT NOT NULL, program TEXT NOT NULL, exe TEXT NOT NULL,
  argv TEXT NOT NULL, user TEXT NOT NULL, cwd TEXT NOT NULL, start_ms INTEGER NOT NULL,
  duration_ms REAL NOT NULL, exit_status INTEGER NOT NULL, signal TEXT, complete INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL, labels TEXT NOT NULL, manifest TEXT NOT NULL,
  uploaded_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS traces_start ON traces (start_ms DESC);
CREATE INDEX IF NOT EXISTS traces_host ON traces (host, start_ms DESC);
CREATE INDEX IF NOT EXISTS traces_program ON traces (program, start_ms DESC);
CREATE INDEX IF NOT EXISTS traces_exe ON traces (exe, start_ms DESC);
CREATE INDEX IF NOT EXISTS traces_exit ON traces (exit_status, start_ms DESC);
CREATE INDEX IF NOT EXISTS traces_signal ON traces (signal, start_ms DESC);
CREATE TABLE IF NOT EXISTS trace_labels (
  trace_id TEXT NOT NULL REFERENCES traces(id) ON DELETE CASCADE, key TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (trace_id, key));
CREATE INDEX IF NOT EXISTS trace_labels_kv ON trace_labels (key, value);
CREATE TABLE IF NOT EXISTS trace_blobs (
  trace_id TEXT NOT NULL REFERENCES traces(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  sha256 TEXT NOT NULL, size INTEGER NOT NULL, role TEXT NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (trace_id, idx));
CREATE INDEX IF NOT EXISTS trace_blobs_sha ON trace_blobs (sha256);
CREATE VIRTUAL TABLE IF NOT EXISTS traces_fts USING fts5(argv, exe, host, cwd, user, labels);
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY, hostname TEXT NOT NULL UNIQUE, facts TEXT NOT NULL,
  registered_ms INTEGER NOT NULL, last_heartbeat_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, hostname TEXT NOT NULL, argv TEXT NOT NULL, labels TEXT NOT NULL,
  state TEXT NOT NULL, trace_id TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS jobs_host_state ON jobs (hostname, state);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, token_id TEXT NOT NULL, started_ms INTEGER NOT NULL,
  ended_ms INTEGER, exit_status INTEGER, error TEXT);
`;

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
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

function toTrace(r: RawTrace): TraceRow {
  return {
    id: r.id,
    host: r.host,
    program: r.program,
    argv: JSON.parse(r.argv) as string[],
    exe: r.exe,
    user: r.user,
    cwd: r.cwd,
    startMs: r.start_ms,
    durationMs: r.duration_ms,
    exitStatus: r.exit_status,
    signal: r.signal,
    complete: r.complete !== 0,
    sizeBytes: r.size_bytes,
    labels: JSON.parse(r.labels) as Record<string, string>,
    uploadedMs: r.uploaded_ms,
  };
}

/** The server's SQLite catalogue: traces, blobs with reference counts, tokens, agents, jobs, sessions. */
export class Catalog {
  readonly db: Database.Database;

  constructor(file: string) {
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // a commit the client saw survives a power cut
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.migrate();
  }

  private migrate(): void {
    const cols = (this.db.prepare('PRAGMA table_info(traces)').all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('argv0')) {
      this.db.exec("ALTER TABLE traces ADD COLUMN argv0 TEXT NOT NULL DEFAULT ''");
    }
    this.db.exec('CREATE INDEX IF NOT EXISTS traces_argv0 ON traces (argv0, start_ms DESC)');
  }

  static inDir(dataDir: string): Catalog {
    return new Catalog(path.join(dataDir, 'catalog.sqlite'));
  }

  close(): void {
    this.db.close();
  }

  // ---- tokens ----

  createToken(role: RoleName, name: string): { token: TokenRow; secret: string } {
    const secret = `rwt_${randomBytes(32).toString('base64url')}`;
    const id = randomBytes(8).toString('hex');
    const createdMs = Date.now();
    const finalName = name || `${role}-${id.slice(0, 6)}`;
    this.db
      .prepare('INSERT INTO tokens (id, name, role, hash, created_ms) VALUES (?, ?, ?, ?, ?)')
      .run(id, finalName, role, hashSecret(secret), createdMs);
    return { token: { id, name: finalName, role, createdMs, revokedMs: null }, secret };
  }

  /** The valid (not revoked) token with this secret. */
  tokenForSecret(secret: string): TokenRow | undefined {
    const r = this.db
      .prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE hash = ? AND revoked_ms IS NULL')
      .get(hashSecret(secret)) as { id: string; name: string; role: RoleName; created_ms: number; revoked_ms: null } | undefined;
    return r && { id: r.id, name: r.name, role: r.role, createdMs: r.created_ms, revokedMs: r.revoked_ms };
  }

  /** Revokes by id, name or secret. */
  revokeToken(ref: string): TokenRow {
    const r = this.db
      .prepare('SELECT id FROM tokens WHERE id = ? OR name = ? OR hash = ?')
      .all(ref, ref, hashSecret(ref)) as { id: string }[];
    if (r.length === 0) throw notFound(`no token ${JSON.stringify(ref)}`);
    if (r.length > 1) throw invalidArgument(`${JSON.stringify(ref)} names several tokens; use the token id`);
    const id = r[0]!.id;
    this.db.prepare('UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ?').run(Date.now(), id);
    return this.listTokens().find((t) => t.id === id)!;
  }

  listTokens(): TokenRow[] {
    const rows = this.db
      .prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens ORDER BY created_ms')
      .all() as { id: string; name: string; role: RoleName; created_ms: number; revoked_ms: number | null }[];
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role, createdMs: r.created_ms, revokedMs: r.revoked_ms }));
  }

  getMeta(key: string): string | undefined {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  // ---- blobs ----

  hasBlob(sha256: string): boolean {
    return this.db.prepare('SELECT 1 FROM blobs WHERE sha256 = ?').get(sha256) !== undefined;
  }

  /** Records a complete, verified blob (unreferenced until a trace naming it is committed). */
  addBlob(sha256: string, size: number): void {
    this.db.prepare('INSERT OR IGNORE INTO blobs (sha256, size, refcount, created_ms) VALUES (?, ?, 0, ?)').run(sha256, size, Date.now());
  }

  /**
   * Forgets blobs no trace references that were stored at or before `cutoffMs` (uploads never
   * committed); returns them so their files can be removed.
   */
  takeOrphanBlobs(cutoffMs: number): { sha256: string; size: number }[] {
    const run = this.db.transaction(() => {
      const rows = this.db
        .prepare('SELECT sha256, size FROM blobs WHERE refcount <= 0 AND created_ms <= ?')
        .all(cutoffMs) as { sha256: string; size: number }[];
      const del = this.db.prepare('DELETE FROM blobs WHERE sha256 = ? AND refcount <= 0');
      for (const r of rows) del.run(r.sha256);
      return rows;
    });
    return run.immediate();
  }

  // ---- traces ----

  hasTrace(id: string): boolean {
    return this.db.prepare('SELECT 1 FROM traces WHERE id = ?').get(id) !== undefined;
  }

  /**
   * Commits a trace in one transaction, only if every blob it names is present.
   * Returns false (and changes nothing) when the trace is already there.
   */
  commitTrace(m: Manifest, manifestJson: string, labels: Record<string, string>): boolean {
    const run = this.db.transaction((): boolean => {
      if (this.hasTrace(m.id)) return false;
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
             complete, size_bytes, labels, manifest, uploaded_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          m.id, m.host.hostname, program, path.posix.basename(m.argv[0] ?? ''), m.exe, JSON.stringify(m.argv), m.user, m.cwd, Date.parse(m.startTime),
          m.durationMs, m.exit?.status ?? -1, m.exit?.signal ?? null, m.complete ? 1 : 0, size, JSON.stringify(labels), manifestJson, Date.now(),
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

  listTraces(f: TraceFilter): TraceRow[] {
    const limit = Math.min(Math.max(f.limit || 50, 1), 10_000);
    if (f.program && !f.program.includes('/')) {
      // The executable's name or the name it was run as (python3 vs python3.11): two queries
      // that each walk their (name, start) index, merged newest first.
      const a = this.queryTraces(f, ['t.program = ?'], [f.program], limit);
      const b = this.queryTraces(f, ['t.argv0 = ?', 't.program != ?'], [f.program, f.program], limit);
      return [...a, ...b].sort((x, y) => y.startMs - x.startMs || (x.id < y.id ? -1 : 1)).slice(0, limit);
    }
    return this.queryTraces(f, f.program ? ['t.exe = ?'] : [], f.program ? [f.program] : [], limit);
  }

  private queryTraces(f: TraceFilter, extraWhere: string[], extraArgs: (string | number)[], limit: number): TraceRow[] {
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
    return (this.db.prepare(sql).all(...args) as RawTrace[]).map(toTrace);
  }

  getTrace(id: string): { trace: TraceRow; manifest: string; blobs: BlobEntry[] } {
    const r = this.db.prepare(`SELECT ${TRACE_COLS}, t.manifest FROM traces t WHERE t.id = ?`).get(id) as
      | (RawTrace & { manifest: string })
      | undefined;
    if (!r) throw notFound(`no trace ${id}`);
    const blobs = this.db
      .prepare('SELECT sha256, size, role, path FROM trace_blobs WHERE trace_id = ? ORDER BY idx')
      .all(id) as BlobEntry[];
    return { trace: toTrace(r), manifest: r.manifest, blobs };
  }

  /** Deletes a trace; returns the blobs no trace references any more (their rows are gone). */
  deleteTrace(id: string): { sha256: string; size: number }[] {
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

  stats(): { traces: number; blobs: number; blobBytes: number } {
    const t = this.db.prepare('SELECT COUNT(*) AS n FROM traces').get() as { n: number };
    const b = this.db.prepare('SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS s FROM blobs').get() as { n: number; s: number };
    return { traces: t.n, blobs: b.n, blobBytes: b.s };
  }

  // ---- agents and jobs ----

  registerAgent(hostname: string, facts: string): AgentRow {
    const now = Date.now();
    const existing = this.db.prepare('SELECT id FROM agents WHERE hostname = ?').get(hostname) as { id: string } | undefined;
    const id = existing?.id ?? randomUUID();
    this.db
      .prepare(
        `INSERT INTO agents (id, hostname, facts, registered_ms, last_heartbeat_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(hostname) DO UPDATE SET facts = excluded.facts, last_heartbeat_ms = excluded.last_heartbeat_ms`,
      )
      .run(id, hostname, facts, now, now);
    return this.getAgent(id)!;
  }

  getAgent(id: string): AgentRow | undefined {
    const r = this.db.prepare('SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents WHERE id = ?').get(id) as
      | { id: string; hostname: string; facts: string; registered_ms: number; last_heartbeat_ms: number }
      | undefined;
    return r && { id: r.id, hostname: r.hostname, facts: r.facts, registeredMs: r.registered_ms, lastHeartbeatMs: r.last_heartbeat_ms };
  }

  listAgents(): AgentRow[] {
    const rows = this.db.prepare('SELECT id FROM agents ORDER BY hostname').all() as { id: string }[];
    return rows.map((r) => this.getAgent(r.id)!);
  }

  /** Heartbeat: marks the agent alive and hands it its pending jobs (now running). */
  heartbeat(agentId: string): JobRow[] {
    const run = this.db.transaction(() => {
      const a = this.getAgent(agentId);
      if (!a) throw notFound(`unknown agent ${agentId}; register again`);
      const now = Date.now();
      this.db.prepare('UPDATE agents SET last_heartbeat_ms = ? WHERE id = ?').run(now, agentId);
      const jobs = this.jobsWhere('hostname = ? AND state = ?', a.hostname, 'pending');
      const upd = this.db.prepare("UPDATE jobs SET state = 'running', updated_ms = ? WHERE id = ?");
      for (const j of jobs) {
        upd.run(now, j.id);
        j.state = 'running';
      }
      return jobs;
    });
    return run.immediate();
  }

  createJob(hostname: string, argv: string[], labels: Record<string, string>): JobRow {
    const id = randomUUID();
    const now = Date.now();
    this.db
      .prepare("INSERT INTO jobs (id, hostname, argv, labels, state, created_ms, updated_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)")
      .run(id, hostname, JSON.stringify(argv), JSON.stringify(labels), now, now);
    return this.getJob(id)!;
  }

  completeJob(id: string, traceId: string, error: string): void {
    const info = this.db
      .prepare('UPDATE jobs SET state = ?, trace_id = ?, error = ?, updated_ms = ? WHERE id = ?')
      .run(error ? 'failed' : 'done', traceId, error, Date.now(), id);
    if (info.changes === 0) throw notFound(`no job ${id}`);
  }

  getJob(id: string): JobRow | undefined {
    return this.jobsWhere('id = ?', id)[0];
  }

  private jobsWhere(where: string, ...args: string[]): JobRow[] {
    const rows = this.db
      .prepare(`SELECT id, hostname, argv, labels, state, trace_id, error, created_ms FROM jobs WHERE ${where} ORDER BY created_ms`)
      .all(...args) as {
      id: string;
      hostname: string;
      argv: string;
      labels: string;
      state: JobState;
      trace_id: string;
      error: string;
      created_ms: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      hostname: r.hostname,
      argv: JSON.parse(r.argv) as string[],
      labels: JSON.parse(r.labels) as Record<string, string>,
      state: r.state,
      traceId: r.trace_id,
      error: r.error,
      createdMs: r.created_ms,
    }));
  }

  // ---- replay sessions ----

  startSession(id: string, traceId: string, tokenId: string): void {
    this.db.prepare('INSERT INTO sessions (id, trace_id, token_id, started_ms) VALUES (?, ?, ?, ?)').run(id, traceId, tokenId, Date.now());
  }

  endSession(id: string, exitStatus: number | null, error: string): void {
    this.db.prepare('UPDATE sessions SET ended_ms = ?, exit_status = ?, error = ? WHERE id = ?').run(Date.now(), exitStatus, error, id);
  }
}

/** Turns free text into an FTS5 query: every word must occur (as a prefix). */
function ftsQuery(text: string): string {
  const words = text.split(/\s+/).filter(Boolean);
  return words.map((w) => `"${w.replace(/"/g, '""')}"*`).join(' ');
}
