// The catalogue in PostgreSQL (node-postgres), for several servers on one database. The same
// stores, queries and filters as SQLite's; what several servers change:
// - every multi-statement write is one transaction, and rows two servers may race for are locked
//   (blobs a commit names and a delete frees, `FOR UPDATE`; the jobs a heartbeat takes and the
//   leases a sweep expires, `FOR UPDATE SKIP LOCKED`, so each goes to one server, and none waits);
// - nothing a request leaves behind lives in one server's memory: a server killed mid-request
//   loses its connection, and PostgreSQL rolls its transaction back; a job handed to an agent
//   and a session a server runs are leases that others expire (agents.ts, sessions.ts).
// Full-text search uses PostgreSQL's tsvector/tsquery over the tokens FTS5 would see (listing.ts).
import { randomUUID } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import pg from 'pg';
import { RpcError, notFound } from '../errors.js';
import { LEASE_EXPIRED, JOB_COLS, checkCompletion, checkOwner, checkRegister, toAgent, toJob, type RawAgent, type RawJob } from './agents.js';
import { listQueries, listSql, mergePages, rowBytes, searchColumns, searchTokens, searchWords, toTrace, TRACE_COLS, type ListQuery, type Page, type RawTrace } from './listing.js';
import { SERVER_GONE, toSession, type RawSession } from './sessions.js';
import type { AgentStore, BlobIndex, Catalog, MetaStore, NewTrace, SessionLog, TokenStore, TraceStore } from './stores.js';
import { ADD_STORED, hashSecret, newToken, onlyToken, toToken, type RawToken } from './tokens.js';
import { checkBlobs, traceColumns } from './traces.js';
import { BLOB_CLAIMS_TABLE, CLAIM_BLOB, RELEASE_BLOB } from './blobs.js';
import type { AgentRow, BlobEntry, JobRow, RoleName, SessionRow, StoredToken, TokenRow, TraceFilter, TraceRow } from './types.js';

type Arg = string | number | boolean | null | (string | number | boolean | null)[];
type Queryable = pg.Pool | pg.PoolClient;

/** PostgreSQL's migrations, applied in order at start (under a lock: several servers may start at once). */
const PG_MIGRATIONS: { version: number; name: string; up: string }[] = [
  {
    version: 1,
    name: 'catalogue',
    up: `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tokens (
  id TEXT PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,
  created_ms BIGINT NOT NULL, revoked_ms BIGINT);
CREATE TABLE blobs (
  sha256 TEXT PRIMARY KEY, size BIGINT NOT NULL, refcount INTEGER NOT NULL DEFAULT 0, created_ms BIGINT NOT NULL);
CREATE INDEX blobs_orphans ON blobs (created_ms) WHERE refcount <= 0;
-- Ids sort bytewise ("C"), as the listing merges them.
CREATE TABLE traces (
  id TEXT COLLATE "C" PRIMARY KEY, host TEXT NOT NULL, program TEXT NOT NULL, argv0 TEXT NOT NULL,
  exe TEXT NOT NULL, argv TEXT NOT NULL, "user" TEXT NOT NULL, cwd TEXT NOT NULL, start_ms BIGINT NOT NULL,
  duration_ms DOUBLE PRECISION NOT NULL, exit_status BIGINT NOT NULL, signal TEXT, complete BOOLEAN NOT NULL,
  size_bytes BIGINT NOT NULL, labels TEXT NOT NULL, manifest TEXT NOT NULL, uploaded_ms BIGINT NOT NULL,
  token_id TEXT NOT NULL, search TSVECTOR NOT NULL);
CREATE INDEX traces_start ON traces (start_ms DESC, id);
CREATE INDEX traces_host ON traces (host, start_ms DESC, id);
CREATE INDEX traces_program ON traces (program, start_ms DESC, id);
CREATE INDEX traces_argv0 ON traces (argv0, start_ms DESC, id);
CREATE INDEX traces_exe ON traces (exe, start_ms DESC, id);
CREATE INDEX traces_exit ON traces (exit_status, start_ms DESC, id);
CREATE INDEX traces_signal ON traces (signal, start_ms DESC, id);
CREATE INDEX traces_token ON traces (token_id);
CREATE INDEX traces_search ON traces USING GIN (search);
CREATE TABLE trace_labels (
  trace_id TEXT COLLATE "C" NOT NULL REFERENCES traces(id) ON DELETE CASCADE, key TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (trace_id, key));
CREATE INDEX trace_labels_kv ON trace_labels (key, value);
CREATE TABLE trace_blobs (
  trace_id TEXT COLLATE "C" NOT NULL REFERENCES traces(id) ON DELETE CASCADE, idx INTEGER NOT NULL,
  sha256 TEXT NOT NULL, size BIGINT NOT NULL, role TEXT NOT NULL, path TEXT NOT NULL,
  PRIMARY KEY (trace_id, idx));
CREATE INDEX trace_blobs_sha ON trace_blobs (sha256);
CREATE TABLE agents (
  id TEXT PRIMARY KEY, hostname TEXT NOT NULL UNIQUE, facts TEXT NOT NULL, registered_ms BIGINT NOT NULL,
  last_heartbeat_ms BIGINT NOT NULL, token_id TEXT NOT NULL DEFAULT '');
CREATE TABLE jobs (
  id TEXT PRIMARY KEY, hostname TEXT NOT NULL, argv TEXT NOT NULL, labels TEXT NOT NULL, state TEXT NOT NULL,
  trace_id TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '', created_ms BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL, agent_id TEXT NOT NULL DEFAULT '', lease_until_ms BIGINT NOT NULL DEFAULT 0);
CREATE INDEX jobs_host_state ON jobs (hostname, state, created_ms);
CREATE INDEX jobs_running ON jobs (state, lease_until_ms);
CREATE TABLE sessions (
  id TEXT PRIMARY KEY, trace_id TEXT NOT NULL, token_id TEXT NOT NULL, server_id TEXT NOT NULL,
  started_ms BIGINT NOT NULL, ended_ms BIGINT, exit_status INTEGER, error TEXT);
CREATE INDEX sessions_open ON sessions (server_id) WHERE ended_ms IS NULL;
CREATE TABLE servers (id TEXT PRIMARY KEY, started_ms BIGINT NOT NULL, lease_until_ms BIGINT NOT NULL);`,
  },
  {
    version: 2,
    name: "the program filter's second query: rows run under another name than the executable's",
    up: 'CREATE INDEX traces_argv0_other ON traces (argv0, start_ms DESC, id) WHERE argv0 != program;',
  },
  { version: 3, name: 'claims on blobs: one writer of a blob across servers', up: BLOB_CLAIMS_TABLE },
  // Jobs created in one millisecond keep the order they were created in.
  { version: 4, name: 'jobs in the order they were created', up: 'ALTER TABLE jobs ADD COLUMN seq BIGSERIAL;' },
  { version: 5, name: 'tokens in the order they were created', up: 'ALTER TABLE tokens ADD COLUMN seq BIGSERIAL;' },
];

/** The advisory locks of schema migration and of agent registration (any constants, named once). */
const LOCK_MIGRATE = 0x72657769;
const LOCK_REGISTER = 0x72657770;

/** SQLSTATEs a client can retry (serialization, deadlock, lock timeout, shutdown, too many connections) or that mean a full disk. */
const RETRY_STATES = new Set(['40001', '40P01', '55P03', '57P01', '57P02', '57P03', '53300', '57014']);
const FULL_STATES = new Set(['53100', '53200']);

/** `?` placeholders as PostgreSQL's `$n` (our SQL has no `?` in literals). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** A database failure as the client should see it; our own errors pass through. */
function failure(err: unknown): unknown {
  if (err instanceof RpcError) return err;
  if (err instanceof pg.DatabaseError) {
    if (RETRY_STATES.has(err.code ?? '')) return new RpcError(status.UNAVAILABLE, `the server's catalogue cannot take this now (${err.message}); try again`);
    if (FULL_STATES.has(err.code ?? '')) return new RpcError(status.RESOURCE_EXHAUSTED, `the catalogue database is out of space (${err.message})`);
    return err;
  }
  // No answer at all (connection refused or lost, timeout): the database is unreachable.
  const code = (err as { code?: unknown }).code;
  if (err instanceof Error && ((typeof code === "string" && /^E[A-Z]+$/.test(code)) || /connect|terminated|timeout/i.test(err.message))) {
    return new RpcError(status.UNAVAILABLE, `the catalogue database is unreachable (${err.message}); try again`);
  }
  return err;
}

/** A query; in a transaction its failure is the transaction's to map (it may retry). */
async function rows<T>(db: Queryable, sql: string, args: Arg[] = []): Promise<T[]> {
  try {
    return (await db.query(numbered(sql), args)).rows as T[];
  } catch (err) {
    throw db instanceof pg.Pool ? failure(err) : err;
  }
}

async function one<T>(db: Queryable, sql: string, args: Arg[] = []): Promise<T | undefined> {
  return (await rows<T>(db, sql, args))[0];
}

/** Runs fn in a transaction; a serialization failure or deadlock runs it again (a few times). */
async function transaction<T>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    let c: pg.PoolClient;
    try {
      c = await pool.connect();
    } catch (err) {
      throw failure(err);
    }
    try {
      await c.query('BEGIN');
      const r = await fn(c);
      await c.query('COMMIT');
      c.release();
      return r;
    } catch (err) {
      await c.query('ROLLBACK').catch(() => undefined);
      c.release();
      const again = err instanceof pg.DatabaseError && (err.code === '40001' || err.code === '40P01');
      if (!again || attempt >= 5) throw failure(err);
    }
  }
}

/** The largest tsvector PostgreSQL stores is 1 MiB of lexemes; a lexeme is at most 2 KiB, with 256 positions. */
const TSV = { bytes: 900_000, lexeme: 2046, positions: 256, maxPos: 16383 } as const;

/**
 * A trace's search text as a tsvector literal: the FTS5 tokens of each column at their
 * positions, one position left free between columns (a phrase does not span two).
 */
export function tsvector(columns: string[]): string {
  const at = new Map<string, number[]>();
  let pos = 1;
  let bytes = 0;
  for (const text of columns) {
    for (const tok of searchTokens(text)) {
      const size = Buffer.byteLength(tok);
      let list = at.get(tok);
      if (!list) {
        if (size > TSV.lexeme || bytes + size > TSV.bytes) {
          pos++;
          continue;
        }
        bytes += size;
        list = [];
        at.set(tok, list);
      }
      if (list.length < TSV.positions && pos <= TSV.maxPos) list.push(pos);
      pos++;
    }
    pos++;
  }
  return [...at].map(([tok, ps]) => (ps.length ? `'${tok}':${ps.join(',')}` : `'${tok}'`)).join(' ');
}

/** Free text as a tsquery, as FTS5 reads `"w1"* "w2"*`: each word a phrase of its tokens, the last a prefix. */
export function tsquery(text: string): string {
  return searchWords(text)
    .map((w) => searchTokens(w).map((t) => `'${t}'`))
    .filter((ts) => ts.length > 0)
    .map((ts) => `(${ts.join(' <-> ')}:*)`)
    .join(' & ');
}

class PgTokens implements TokenStore {
  constructor(private readonly pool: pg.Pool) {}

  async create(role: RoleName, name: string): Promise<{ token: TokenRow; secret: string }> {
    const { secret, token } = newToken(role, name);
    await rows(this.pool, 'INSERT INTO tokens (id, name, role, hash, created_ms) VALUES (?, ?, ?, ?, ?)', [
      token.id,
      token.name,
      role,
      hashSecret(secret),
      token.createdMs,
    ]);
    return { token, secret };
  }

  async forSecret(secret: string): Promise<TokenRow | undefined> {
    const r = await one<RawToken>(this.pool, 'SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE hash = ? AND revoked_ms IS NULL', [
      hashSecret(secret),
    ]);
    return r && toToken(r);
  }

  async revoke(ref: string): Promise<TokenRow> {
    const ids = await rows<{ id: string }>(this.pool, 'SELECT id FROM tokens WHERE id = ? OR name = ? OR hash = ?', [ref, ref, hashSecret(ref)]);
    const id = onlyToken(
      ref,
      ids.map((r) => r.id),
    );
    const r = await one<RawToken>(
      this.pool,
      'UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ? RETURNING id, name, role, created_ms, revoked_ms',
      [Date.now(), id],
    );
    return toToken(r!);
  }

  async list(): Promise<TokenRow[]> {
    return (await rows<RawToken>(this.pool, 'SELECT id, name, role, created_ms, revoked_ms FROM tokens ORDER BY created_ms, seq')).map(toToken);
  }

  async addStored(tokens: StoredToken[]): Promise<number> {
    return transaction(this.pool, async (c) => {
      let added = 0;
      for (const t of tokens) {
        added += (await rows(c, `${ADD_STORED} ON CONFLICT DO NOTHING RETURNING id`, [t.id, t.name, t.role, t.hash, t.createdMs, t.revokedMs])).length;
      }
      return added;
    });
  }
}

/** Rows read per query of a listing: a page of huge rows is read a batch at a time, within its byte budget. */
const LIST_BATCH = 200;

class PgTraces implements TraceStore {
  constructor(private readonly pool: pg.Pool) {}

  async has(id: string): Promise<boolean> {
    return (await one(this.pool, 'SELECT 1 FROM traces WHERE id = ?', [id])) !== undefined;
  }

  async commit(t: NewTrace): Promise<boolean> {
    return (await this.commitMany([t])) === 1;
  }

  async commitMany(ts: NewTrace[]): Promise<number> {
    if (ts.length === 0) return 0;
    return transaction(this.pool, async (c) => {
      const ids = ts.map((t) => t.manifest.id);
      const present = new Set((await rows<{ id: string }>(c, 'SELECT id FROM traces WHERE id = ANY(?)', [ids])).map((r) => r.id));
      const fresh = new Map<string, NewTrace>();
      for (const t of ts) if (!present.has(t.manifest.id)) fresh.set(t.manifest.id, t);
      if (fresh.size === 0) return 0;
      const cols = [...fresh.values()].map((t) => ({ t, c: traceColumns(t) }));
      // The blobs named, locked (in one order, against deadlocks): no sweep forgets one under this commit.
      const shas = [...new Set(cols.flatMap((x) => [...x.c.blobs.keys()]))].sort();
      const stored = new Map(
        (await rows<{ sha256: string; size: number }>(c, 'SELECT sha256, size FROM blobs WHERE sha256 = ANY(?) ORDER BY sha256 FOR UPDATE', [shas])).map(
          (r) => [r.sha256, r.size],
        ),
      );
      for (const x of cols) checkBlobs(x.t.manifest.id, x.c.blobs, stored);
      const now = Date.now();
      const col = <V extends string | number | boolean | null>(f: (x: (typeof cols)[number]) => V): V[] => cols.map(f);
      const inserted = await rows<{ id: string }>(
        c,
        `INSERT INTO traces (id, host, program, argv0, exe, argv, "user", cwd, start_ms, duration_ms, exit_status, signal,
           complete, size_bytes, labels, manifest, uploaded_ms, token_id, search)
         SELECT id, host, program, argv0, exe, argv, u, cwd, start_ms, duration_ms, exit_status, signal, complete, size_bytes,
           labels, manifest, uploaded_ms, token_id, search::tsvector
         FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[],
           ?::float8[], ?::bigint[], ?::text[], ?::boolean[], ?::bigint[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[])
           AS x(id, host, program, argv0, exe, argv, u, cwd, start_ms, duration_ms, exit_status, signal, complete, size_bytes,
             labels, manifest, uploaded_ms, token_id, search)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [
          col((x) => x.t.manifest.id),
          col((x) => x.t.manifest.host.hostname),
          col((x) => x.c.program),
          col((x) => x.c.argv0),
          col((x) => x.t.manifest.exe),
          col((x) => JSON.stringify(x.t.manifest.argv)),
          col((x) => x.t.manifest.user),
          col((x) => x.t.manifest.cwd),
          col((x) => x.c.startMs),
          col((x) => x.t.manifest.durationMs),
          col((x) => x.c.exitStatus),
          col((x) => x.c.signal),
          col((x) => x.t.manifest.complete),
          col((x) => x.c.size),
          col((x) => JSON.stringify(x.t.labels)),
          col((x) => x.t.manifestJson),
          col((x) => x.t.uploadedMs ?? now),
          col((x) => x.t.tokenId),
          col((x) => {
            const m = x.t.manifest;
            return tsvector(searchColumns({ argv: m.argv, exe: m.exe, host: m.host.hostname, cwd: m.cwd, user: m.user, labels: x.t.labels }));
          }),
        ],
      );
      // Another server committed one of them meanwhile: its references are counted there.
      const done = inserted.map((r) => fresh.get(r.id)!);
      const labels = done.flatMap((t) => Object.entries(t.labels).map(([k, v]) => [t.manifest.id, k, v] as const));
      if (labels.length > 0) {
        await rows(c, 'INSERT INTO trace_labels (trace_id, key, value) SELECT * FROM unnest(?::text[], ?::text[], ?::text[])', [
          labels.map((l) => l[0]),
          labels.map((l) => l[1]),
          labels.map((l) => l[2]),
        ]);
      }
      const refs = done.flatMap((t) => t.manifest.blobs.map((b, i) => ({ id: t.manifest.id, i, b })));
      if (refs.length > 0) {
        await rows(
          c,
          'INSERT INTO trace_blobs (trace_id, idx, sha256, size, role, path) SELECT * FROM unnest(?::text[], ?::int[], ?::text[], ?::bigint[], ?::text[], ?::text[])',
          [refs.map((r) => r.id), refs.map((r) => r.i), refs.map((r) => r.b.sha256), refs.map((r) => r.b.size), refs.map((r) => r.b.role), refs.map((r) => r.b.path ?? '')],
        );
      }
      const counts = new Map<string, number>();
      for (const t of done) for (const sha of traceColumns(t).blobs.keys()) counts.set(sha, (counts.get(sha) ?? 0) + 1);
      if (counts.size > 0) {
        await rows(c, 'UPDATE blobs b SET refcount = b.refcount + x.n FROM unnest(?::text[], ?::int[]) AS x(sha, n) WHERE b.sha256 = x.sha', [
          [...counts.keys()],
          [...counts.values()],
        ]);
      }
      return done.length;
    });
  }

  async list(f: TraceFilter): Promise<Page> {
    const queries = listQueries(f, 't.search @@ ?::tsquery', tsquery);
    const parts = await Promise.all(queries.map((q) => this.query(q, f.maxBytes ?? Infinity)));
    return mergePages(parts, queries[0]!.limit);
  }

  /** One query of a listing, read a batch at a time (keyset on start, id) until its limit or byte budget. */
  private async query(q: ListQuery, maxBytes: number): Promise<Page> {
    const out: TraceRow[] = [];
    let bytes = 0;
    let last: RawTrace | undefined;
    for (;;) {
      const want = Math.min(LIST_BATCH, q.limit - out.length);
      const batch: ListQuery = last
        ? { where: [...q.where, '(t.start_ms < ? OR (t.start_ms = ? AND t.id > ?))'], args: [...q.args, last.start_ms, last.start_ms, last.id], limit: want }
        : { ...q, limit: want };
      const got = await rows<RawTrace>(this.pool, listSql(batch), batch.args);
      for (const r of got) {
        bytes += rowBytes(r);
        if (out.length > 0 && bytes > maxBytes) return { rows: out, truncated: true };
        out.push(toTrace(r));
      }
      if (got.length < want || out.length >= q.limit) return { rows: out, truncated: false };
      last = got[got.length - 1];
    }
  }

  async get(id: string): Promise<{ trace: TraceRow; manifest: string; blobs: BlobEntry[] }> {
    const r = await one<RawTrace & { manifest: string }>(this.pool, `SELECT ${TRACE_COLS}, t.manifest FROM traces t WHERE t.id = ?`, [id]);
    if (!r) throw notFound(`no trace ${id}`);
    const blobs = await rows<BlobEntry>(this.pool, 'SELECT sha256, size, role, path FROM trace_blobs WHERE trace_id = ? ORDER BY idx', [id]);
    return { trace: toTrace(r), manifest: r.manifest, blobs };
  }

  async delete(id: string): Promise<{ sha256: string; size: number }[]> {
    return transaction(this.pool, async (c) => {
      const shas = (await rows<{ sha256: string }>(c, 'SELECT DISTINCT sha256 FROM trace_blobs WHERE trace_id = ? ORDER BY sha256', [id])).map((r) => r.sha256);
      await rows(c, 'SELECT 1 FROM blobs WHERE sha256 = ANY(?) ORDER BY sha256 FOR UPDATE', [shas]);
      if ((await rows(c, 'DELETE FROM traces WHERE id = ? RETURNING id', [id])).length === 0) throw notFound(`no trace ${id}`);
      const left = await rows<{ sha256: string; size: number; refcount: number }>(
        c,
        'UPDATE blobs SET refcount = refcount - 1 WHERE sha256 = ANY(?) RETURNING sha256, size, refcount',
        [shas],
      );
      const freed = left.filter((b) => b.refcount <= 0).map((b) => ({ sha256: b.sha256, size: b.size }));
      if (freed.length > 0) await rows(c, 'DELETE FROM blobs WHERE sha256 = ANY(?)', [freed.map((b) => b.sha256)]);
      return freed;
    });
  }

  async stats(): Promise<{ traces: number; blobs: number; blobBytes: number }> {
    const r = await one<{ t: number; b: number; s: number }>(
      this.pool,
      'SELECT (SELECT COUNT(*) FROM traces) AS t, COUNT(*) AS b, COALESCE(SUM(size), 0)::bigint AS s FROM blobs',
    );
    return { traces: r!.t, blobs: r!.b, blobBytes: r!.s };
  }

  async bytesUploadedBy(tokenId: string): Promise<number> {
    return (await one<{ s: number }>(this.pool, 'SELECT COALESCE(SUM(size_bytes), 0)::bigint AS s FROM traces WHERE token_id = ?', [tokenId]))!.s;
  }
}

class PgBlobs implements BlobIndex {
  constructor(
    private readonly pool: pg.Pool,
    private readonly serverId: string,
  ) {}

  async has(sha256: string): Promise<boolean> {
    return (await one(this.pool, 'SELECT 1 FROM blobs WHERE sha256 = ?', [sha256])) !== undefined;
  }

  async isReferenced(sha256: string): Promise<boolean> {
    return (await one(this.pool, 'SELECT 1 FROM blobs WHERE sha256 = ? AND refcount > 0', [sha256])) !== undefined;
  }

  async add(sha256: string, size: number): Promise<void> {
    await rows(this.pool, 'INSERT INTO blobs (sha256, size, refcount, created_ms) VALUES (?, ?, 0, ?) ON CONFLICT (sha256) DO NOTHING', [
      sha256,
      size,
      Date.now(),
    ]);
  }

  async takeOrphans(cutoffMs: number): Promise<{ sha256: string; size: number }[]> {
    // Rows a commit holds are skipped: that commit is about to reference them.
    return rows(
      this.pool,
      `DELETE FROM blobs WHERE refcount <= 0 AND sha256 IN
         (SELECT sha256 FROM blobs WHERE refcount <= 0 AND created_ms <= ? FOR UPDATE SKIP LOCKED)
       RETURNING sha256, size`,
      [cutoffMs],
    );
  }

  async claim(sha256: string): Promise<string | undefined> {
    const now = Date.now();
    return (await one<{ claim: string }>(this.pool, CLAIM_BLOB, [sha256, randomUUID(), this.serverId, now, now]))?.claim;
  }

  async release(sha256: string, claim: string): Promise<void> {
    await rows(this.pool, RELEASE_BLOB, [sha256, claim]);
  }
}

class PgAgents implements AgentStore {
  constructor(private readonly pool: pg.Pool) {}

  private async owner(db: Queryable, hostname: string): Promise<string> {
    const r = await one<{ token_id: string }>(
      db,
      'SELECT a.token_id FROM agents a JOIN tokens t ON t.id = a.token_id WHERE a.hostname = ? AND t.revoked_ms IS NULL',
      [hostname],
    );
    return r?.token_id ?? '';
  }

  async register(hostname: string, facts: string, token: TokenRow): Promise<AgentRow> {
    return transaction(this.pool, async (c) => {
      // One registration at a time across servers: a host goes to one token, a token to one host.
      await rows(c, 'SELECT pg_advisory_xact_lock(?)', [LOCK_REGISTER]);
      const owner = await this.owner(c, hostname);
      const other = await one<{ hostname: string }>(c, 'SELECT hostname FROM agents WHERE token_id = ? AND hostname != ?', [token.id, hostname]);
      checkRegister(hostname, owner, other?.hostname, token);
      const now = Date.now();
      const r = await one<RawAgent>(
        c,
        `INSERT INTO agents (id, hostname, facts, registered_ms, last_heartbeat_ms, token_id) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (hostname) DO UPDATE SET facts = excluded.facts, last_heartbeat_ms = excluded.last_heartbeat_ms,
           token_id = excluded.token_id
         RETURNING id, hostname, facts, registered_ms, last_heartbeat_ms`,
        [randomUUID(), hostname, facts, now, now, token.role === 'admin' ? owner : token.id],
      );
      return toAgent(r!);
    });
  }

  async get(id: string): Promise<AgentRow | undefined> {
    const r = await one<RawAgent>(this.pool, 'SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents WHERE id = ?', [id]);
    return r && toAgent(r);
  }

  async list(): Promise<AgentRow[]> {
    return (await rows<RawAgent>(this.pool, 'SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents ORDER BY hostname')).map(toAgent);
  }

  async heartbeat(agentId: string, token: TokenRow, leaseMs: number): Promise<JobRow[]> {
    return transaction(this.pool, async (c) => {
      const now = Date.now();
      const a = await one<RawAgent>(c, 'UPDATE agents SET last_heartbeat_ms = ? WHERE id = ? RETURNING id, hostname, facts, registered_ms, last_heartbeat_ms', [
        now,
        agentId,
      ]);
      if (!a) throw notFound(`unknown agent ${agentId}; register again`);
      checkOwner(a.hostname, await this.owner(c, a.hostname), token);
      await this.expire(c, now);
      await rows(c, "UPDATE jobs SET lease_until_ms = ? WHERE agent_id = ? AND state = 'running'", [now + leaseMs, agentId]);
      // Each pending job to exactly one heartbeat: rows another server's heartbeat holds are skipped.
      const jobs = await rows<RawJob>(
        c,
        `WITH taken AS (UPDATE jobs SET state = 'running', agent_id = ?, lease_until_ms = ?, updated_ms = ?
         WHERE id IN (SELECT id FROM jobs WHERE hostname = ? AND state = 'pending' FOR UPDATE SKIP LOCKED)
         RETURNING ${JOB_COLS}, seq)
         SELECT ${JOB_COLS} FROM taken ORDER BY created_ms, seq`,
        [agentId, now + leaseMs, now, a.hostname],
      );
      return jobs.map(toJob);
    });
  }

  /** Fails the running jobs whose lease ran out (only `id`'s, when given); rows another server holds are its to expire. */
  private async expire(db: Queryable, now: number, id?: string): Promise<void> {
    await rows(
      db,
      `UPDATE jobs SET state = 'failed', error = ?, updated_ms = ? WHERE id IN
         (SELECT id FROM jobs WHERE state = 'running' AND lease_until_ms < ?${id ? ' AND id = ?' : ''} FOR UPDATE SKIP LOCKED)`,
      [LEASE_EXPIRED, now, now, ...(id ? [id] : [])],
    );
  }

  async createJob(hostname: string, argv: string[], labels: Record<string, string>): Promise<JobRow> {
    const now = Date.now();
    const r = await one<RawJob>(
      this.pool,
      `INSERT INTO jobs (id, hostname, argv, labels, state, created_ms, updated_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING ${JOB_COLS}`,
      [randomUUID(), hostname, JSON.stringify(argv), JSON.stringify(labels), now, now],
    );
    return toJob(r!);
  }

  async completeJob(id: string, traceId: string, error: string, token: TokenRow): Promise<void> {
    await transaction(this.pool, async (c) => {
      await this.expire(c, Date.now(), id);
      const r = await one<RawJob>(c, `SELECT ${JOB_COLS} FROM jobs WHERE id = ? FOR UPDATE`, [id]);
      if (!r) throw notFound(`no job ${id}`);
      const job = toJob(r);
      checkOwner(job.hostname, await this.owner(c, job.hostname), token);
      const t = error ? undefined : await one<{ token_id: string }>(c, 'SELECT token_id FROM traces WHERE id = ?', [traceId]);
      checkCompletion(job, traceId, t?.token_id, error, token);
      await rows(c, 'UPDATE jobs SET state = ?, trace_id = ?, error = ?, updated_ms = ? WHERE id = ?', [
        error ? 'failed' : 'done',
        error ? '' : traceId,
        error,
        Date.now(),
        id,
      ]);
    });
  }

  async getJob(id: string): Promise<JobRow | undefined> {
    await this.expire(this.pool, Date.now(), id);
    const r = await one<RawJob>(this.pool, `SELECT ${JOB_COLS} FROM jobs WHERE id = ?`, [id]);
    return r && toJob(r);
  }
}

class PgSessions implements SessionLog {
  constructor(
    private readonly pool: pg.Pool,
    private readonly serverId: string,
  ) {}

  async start(id: string, traceId: string, tokenId: string): Promise<void> {
    await rows(this.pool, 'INSERT INTO sessions (id, trace_id, token_id, server_id, started_ms) VALUES (?, ?, ?, ?, ?)', [
      id,
      traceId,
      tokenId,
      this.serverId,
      Date.now(),
    ]);
  }

  async end(id: string, exitStatus: number | null, error: string): Promise<void> {
    await rows(this.pool, 'UPDATE sessions SET ended_ms = ?, exit_status = ?, error = ? WHERE id = ? AND ended_ms IS NULL', [Date.now(), exitStatus, error, id]);
  }

  async get(id: string): Promise<SessionRow | undefined> {
    const r = await one<RawSession>(this.pool, 'SELECT * FROM sessions WHERE id = ?', [id]);
    return r && toSession(r);
  }

  async keepAlive(leaseMs: number): Promise<number> {
    return transaction(this.pool, async (c) => {
      const now = Date.now();
      await rows(
        c,
        'INSERT INTO servers (id, started_ms, lease_until_ms) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET lease_until_ms = excluded.lease_until_ms',
        [this.serverId, now, now + leaseMs],
      );
      const gone = await rows<{ id: string }>(
        c,
        'DELETE FROM servers WHERE id IN (SELECT id FROM servers WHERE lease_until_ms < ? FOR UPDATE SKIP LOCKED) RETURNING id',
        [now],
      );
      // Their claims on blobs lapsed with them (CLAIM_BLOB takes such a claim over); the rows go.
      // By server id only: a claim another server takes meanwhile changes its server_id, and stays.
      if (gone.length > 0) await rows(c, 'DELETE FROM blob_claims WHERE server_id = ANY(?)', [gone.map((g) => g.id)]);
      const ended = await rows(
        c,
        `UPDATE sessions SET ended_ms = ?, error = ? WHERE id IN
           (SELECT s.id FROM sessions s WHERE s.ended_ms IS NULL AND NOT EXISTS (SELECT 1 FROM servers v WHERE v.id = s.server_id)
            FOR UPDATE SKIP LOCKED)
         RETURNING id`,
        [now, SERVER_GONE],
      );
      return ended.length;
    });
  }

  async retire(serverId: string): Promise<{ claims: number }> {
    if (serverId === this.serverId) throw new Error('a server cannot retire itself');
    return transaction(this.pool, async (c) => {
      await rows(c, 'DELETE FROM servers WHERE id = ?', [serverId]);
      return { claims: (await rows(c, 'DELETE FROM blob_claims WHERE server_id = ? RETURNING sha256', [serverId])).length };
    });
  }
}

class PgMeta implements MetaStore {
  constructor(private readonly pool: pg.Pool) {}

  async get(key: string): Promise<string | undefined> {
    return (await one<{ value: string }>(this.pool, 'SELECT value FROM meta WHERE key = ?', [key]))?.value;
  }

  async setOnce(key: string, value: string): Promise<boolean> {
    return (await rows(this.pool, 'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key', [key, value])).length === 1;
  }
}

/** BIGINT columns (ms, sizes, counts) as numbers: every one fits in 2^53. */
const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: string) =>
    oid === pg.types.builtins.INT8 ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as pg.CustomTypesConfig['getTypeParser'],
};

export class PgCatalog implements Catalog {
  readonly kind = 'postgres';
  readonly serverId = randomUUID();
  readonly tokens: TokenStore;
  readonly traces: TraceStore;
  readonly blobs: BlobIndex;
  readonly agents: AgentStore;
  readonly sessions: SessionLog;
  readonly meta: MetaStore;

  private constructor(private readonly pool: pg.Pool) {
    this.tokens = new PgTokens(pool);
    this.traces = new PgTraces(pool);
    this.blobs = new PgBlobs(pool, this.serverId);
    this.agents = new PgAgents(pool);
    this.sessions = new PgSessions(pool, this.serverId);
    this.meta = new PgMeta(pool);
  }

  /** Connects, and brings the schema up to date. */
  static async open(url: string, opts: { maxConnections?: number } = {}): Promise<PgCatalog> {
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: 10_000,
      // A query is bounded in time as well as in rows; a statement past it answers UNAVAILABLE.
      statement_timeout: 30_000,
      idle_in_transaction_session_timeout: 60_000,
      application_name: 'rewind-server',
      types: TYPES,
    });
    // An idle connection the database drops is replaced at the next query; not a reason to crash.
    pool.on('error', () => undefined);
    try {
      await migratePg(pool);
    } catch (err) {
      await pool.end();
      const e = failure(err);
      throw new Error(`cannot open the catalogue in PostgreSQL: ${e instanceof Error ? e.message : String(e)}`, { cause: err });
    }
    return new PgCatalog(pool);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

async function migratePg(pool: pg.Pool): Promise<void> {
  await transaction(pool, async (c) => {
    await rows(c, 'SELECT pg_advisory_xact_lock(?)', [LOCK_MIGRATE]);
    await rows(c, 'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms BIGINT NOT NULL)');
    const done = new Set((await rows<{ version: number }>(c, 'SELECT version FROM schema_migrations')).map((r) => r.version));
    const newest = Math.max(0, ...done);
    const known = PG_MIGRATIONS[PG_MIGRATIONS.length - 1]!.version;
    if (newest > known) throw new Error(`the catalogue's schema is version ${newest}, newer than this server knows (${known}): upgrade rewind`);
    for (const m of PG_MIGRATIONS) {
      if (done.has(m.version)) continue;
      await c.query(m.up);
      await rows(c, 'INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?, ?, ?)', [m.version, m.name, Date.now()]);
    }
  });
}
