// The server's SQLite catalogue (better-sqlite3, WAL): one database, one store per concept
// (tokens, traces, blobs, agents and their jobs, sessions), each behind an interface.
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { SqliteAgents, type AgentStore } from './agents.js';
import { SqliteBlobs, SqliteMeta, type BlobIndex, type MetaStore } from './blobs.js';
import { SqliteSessions, type SessionLog } from './sessions.js';
import { SqliteTokens, type TokenStore } from './tokens.js';
import { SqliteTraces, type TraceStore } from './traces.js';

export type * from './types.js';
export type { AgentStore, BlobIndex, MetaStore, SessionLog, TokenStore, TraceStore };

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

export class Catalog {
  readonly tokens: TokenStore;
  readonly traces: TraceStore;
  readonly blobs: BlobIndex;
  readonly agents: AgentStore;
  readonly sessions: SessionLog;
  readonly meta: MetaStore;
  private readonly db: Database.Database;

  constructor(file: string) {
    // Private to the server's user: the catalogue holds every trace's manifest. SQLite gives its
    // -wal and -shm files the database's mode; an older server's files are tightened too.
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    const own = (): void => {
      for (const f of [file, `${file}-wal`, `${file}-shm`]) if (fs.existsSync(f)) fs.chmodSync(f, 0o600);
    };
    own();
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL'); // a commit the client saw survives a power cut
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
    this.migrate();
    own();
    this.tokens = new SqliteTokens(this.db);
    this.traces = new SqliteTraces(this.db);
    this.blobs = new SqliteBlobs(this.db);
    this.agents = new SqliteAgents(this.db);
    this.sessions = new SqliteSessions(this.db);
    this.meta = new SqliteMeta(this.db);
  }

  private migrate(): void {
    const cols = (this.db.prepare('PRAGMA table_info(traces)').all() as { name: string }[]).map((c) => c.name);
    if (!cols.includes('argv0')) {
      this.db.exec("ALTER TABLE traces ADD COLUMN argv0 TEXT NOT NULL DEFAULT ''");
    }
    this.db.exec('CREATE INDEX IF NOT EXISTS traces_argv0 ON traces (argv0, start_ms DESC)');
    // Who uploaded a trace, and which agent token a host belongs to ('' for rows from before).
    if (!cols.includes('token_id')) this.db.exec("ALTER TABLE traces ADD COLUMN token_id TEXT NOT NULL DEFAULT ''");
    const agentCols = (this.db.prepare('PRAGMA table_info(agents)').all() as { name: string }[]).map((c) => c.name);
    if (!agentCols.includes('token_id')) this.db.exec("ALTER TABLE agents ADD COLUMN token_id TEXT NOT NULL DEFAULT ''");
    this.db.exec('CREATE INDEX IF NOT EXISTS traces_token ON traces (token_id)');
  }

  static inDir(dataDir: string): Catalog {
    return new Catalog(path.join(dataDir, 'catalog.sqlite'));
  }

  /** Runs fn in one transaction: many writes at the cost of one commit (bulk loads). */
  batch<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    this.db.close();
  }
}
