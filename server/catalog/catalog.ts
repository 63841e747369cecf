// The server's catalogue: one store per concept (tokens, traces, blobs, agents and their jobs,
// sessions) behind the interfaces of stores.ts, in SQLite (the default: one file in the data
// directory, better-sqlite3, WAL) or PostgreSQL (several servers on one database). Both version
// their schema the same way: a `schema_migrations` table names the migrations applied, and the
// missing ones run, in order, when the catalogue is opened.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SqliteAgents } from './agents.js';
import { BLOB_CLAIMS_TABLE, SqliteBlobs, SqliteMeta } from './blobs.js';
import { SqliteReaders } from './sqlite_readers.js';
import { SqliteSessions } from './sessions.js';
import type { AgentStore, BlobIndex, Catalog, MetaStore, SessionLog, TokenStore, TraceStore } from './stores.js';
import { SqliteTokens } from './tokens.js';
import { SqliteTraces } from './traces.js';

export type * from './types.js';
export type * from './stores.js';

export interface Migration {
  version: number;
  name: string;
  /** SQL, or a function for the steps SQL alone cannot express (columns added to older files). */
  up: string | ((db: Database.Database) => void);
}

const columns = (db: Database.Database, table: string): string[] =>
  (db.prepare(`PRAGMA table_info(${table})`).all() as { name: string }[]).map((c) => c.name);

const addColumn = (db: Database.Database, table: string, column: string, decl: string): void => {
  if (!columns(db, table).includes(column)) db.exec(`ALTER TABLE ${table} ADD COLUMN ${column} ${decl}`);
};

/** SQLite's migrations. The first is written to run on a file from before versioning as well. */
const SQLITE_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'catalogue',
    up: (db) => {
      db.exec(`
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
  ended_ms INTEGER, exit_status INTEGER, error TEXT);`);
      addColumn(db, 'traces', 'argv0', "TEXT NOT NULL DEFAULT ''");
      db.exec('CREATE INDEX IF NOT EXISTS traces_argv0 ON traces (argv0, start_ms DESC)');
      // Who uploaded a trace, and which agent token a host belongs to ('' for rows from before).
      addColumn(db, 'traces', 'token_id', "TEXT NOT NULL DEFAULT ''");
      addColumn(db, 'agents', 'token_id', "TEXT NOT NULL DEFAULT ''");
      db.exec('CREATE INDEX IF NOT EXISTS traces_token ON traces (token_id)');
    },
  },
  {
    version: 2,
    name: 'leases: jobs to their agent, sessions to their server',
    up: `
ALTER TABLE jobs ADD COLUMN agent_id TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN lease_until_ms INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_running ON jobs (state, lease_until_ms);
ALTER TABLE sessions ADD COLUMN server_id TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_open ON sessions (server_id) WHERE ended_ms IS NULL;
CREATE TABLE servers (id TEXT PRIMARY KEY, started_ms INTEGER NOT NULL, lease_until_ms INTEGER NOT NULL);`,
  },
  {
    version: 3,
    name: "the program filter's second query: rows run under another name than the executable's",
    up: 'CREATE INDEX traces_argv0_other ON traces (argv0, start_ms DESC) WHERE argv0 != program;',
  },
  { version: 4, name: 'claims on blobs: one writer of a blob across servers', up: BLOB_CLAIMS_TABLE },
];

/** The SQLite catalogue: writes and point reads on the main connection, unbounded reads on reader threads. */
export class SqliteCatalog implements Catalog {
  readonly kind = 'sqlite';
  readonly serverId = randomUUID();
  readonly tokens: TokenStore;
  readonly traces: TraceStore;
  readonly blobs: BlobIndex;
  readonly agents: AgentStore;
  readonly sessions: SessionLog;
  readonly meta: MetaStore;
  private readonly db: Database.Database;
  private readonly readers: SqliteReaders;

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
    migrateSqlite(this.db);
    own();
    this.readers = new SqliteReaders(file);
    this.tokens = new SqliteTokens(this.db);
    this.traces = new SqliteTraces(this.db, this.readers);
    this.blobs = new SqliteBlobs(this.db, this.serverId);
    this.agents = new SqliteAgents(this.db);
    this.sessions = new SqliteSessions(this.db, this.serverId);
    this.meta = new SqliteMeta(this.db);
  }

  async close(): Promise<void> {
    await this.readers.close();
    this.db.close();
  }
}

function migrateSqlite(db: Database.Database): void {
  db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL)');
  db.transaction(() => {
    const done = new Set((db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map((r) => r.version));
    const newest = Math.max(0, ...done);
    const known = SQLITE_MIGRATIONS[SQLITE_MIGRATIONS.length - 1]!.version;
    if (newest > known) throw new Error(`the catalogue's schema is version ${newest}, newer than this server knows (${known}): upgrade rewind`);
    for (const m of SQLITE_MIGRATIONS) {
      if (done.has(m.version)) continue;
      if (typeof m.up === 'string') db.exec(m.up);
      else m.up(db);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)').run(m.version, m.name, Date.now());
    }
  }).immediate();
}

/** True when `spec` (a --catalog value) names a PostgreSQL database. */
export function isPostgresUrl(spec: string): boolean {
  return /^postgres(ql)?:\/\//i.test(spec);
}

/**
 * Opens the catalogue `spec` names: a postgres:// URL, or a SQLite file (default: catalog.sqlite
 * in the data directory).
 */
export async function openCatalog(dataDir: string, spec?: string): Promise<Catalog> {
  if (spec && isPostgresUrl(spec)) {
    const { PgCatalog } = await import('./postgres.js');
    return PgCatalog.open(spec);
  }
  return new SqliteCatalog(spec ? path.resolve(spec) : path.join(dataDir, 'catalog.sqlite'));
}
