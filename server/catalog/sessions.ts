// Replay and debug sessions, as a record of who replayed what, on which server, and how it ended.
import type Database from 'better-sqlite3';
import type { SessionLog } from './stores.js';
import type { SessionRow } from './types.js';

export interface RawSession {
  id: string;
  trace_id: string;
  token_id: string;
  server_id: string;
  started_ms: number;
  ended_ms: number | null;
  exit_status: number | null;
  error: string | null;
}

export const toSession = (r: RawSession): SessionRow => ({
  id: r.id,
  traceId: r.trace_id,
  tokenId: r.token_id,
  serverId: r.server_id,
  startedMs: r.started_ms,
  endedMs: r.ended_ms,
  exitStatus: r.exit_status,
  error: r.error,
});

/** What a session left open by a server that went away ends with. */
export const SERVER_GONE = 'the server running this session went away';

export class SqliteSessions implements SessionLog {
  constructor(
    private readonly db: Database.Database,
    private readonly serverId: string,
  ) {}

  async start(id: string, traceId: string, tokenId: string): Promise<void> {
    this.db
      .prepare('INSERT INTO sessions (id, trace_id, token_id, server_id, started_ms) VALUES (?, ?, ?, ?, ?)')
      .run(id, traceId, tokenId, this.serverId, Date.now());
  }

  async end(id: string, exitStatus: number | null, error: string): Promise<void> {
    this.db
      .prepare('UPDATE sessions SET ended_ms = ?, exit_status = ?, error = ? WHERE id = ? AND ended_ms IS NULL')
      .run(Date.now(), exitStatus, error, id);
  }

  async get(id: string): Promise<SessionRow | undefined> {
    const r = this.db.prepare('SELECT * FROM sessions WHERE id = ?').get(id) as RawSession | undefined;
    return r && toSession(r);
  }

  async keepAlive(leaseMs: number): Promise<number> {
    const run = this.db.transaction((): number => {
      const now = Date.now();
      this.db
        .prepare('INSERT INTO servers (id, started_ms, lease_until_ms) VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE SET lease_until_ms = excluded.lease_until_ms')
        .run(this.serverId, now, now + leaseMs);
      this.db.prepare('DELETE FROM servers WHERE lease_until_ms < ?').run(now);
      // Their claims on blobs lapsed with them (CLAIM_BLOB takes such a claim over); the rows go.
      this.db.prepare('DELETE FROM blob_claims WHERE server_id NOT IN (SELECT id FROM servers)').run();
      // Sessions of a server that never renewed (or from before servers kept leases) count as gone too.
      const ended = this.db
        .prepare(
          `UPDATE sessions SET ended_ms = ?, error = ? WHERE ended_ms IS NULL AND server_id NOT IN (SELECT id FROM servers)`,
        )
        .run(now, SERVER_GONE);
      return ended.changes;
    });
    return run.immediate();
  }

  async retire(serverId: string): Promise<{ claims: number }> {
    if (serverId === this.serverId) throw new Error('a server cannot retire itself');
    const run = this.db.transaction((): number => {
      this.db.prepare('DELETE FROM servers WHERE id = ?').run(serverId);
      return this.db.prepare('DELETE FROM blob_claims WHERE server_id = ?').run(serverId).changes;
    });
    return { claims: run.immediate() };
  }
}
