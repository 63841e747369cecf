// Replay and debug sessions, as a record of who replayed what and how it ended.
import type Database from 'better-sqlite3';

export interface SessionLog {
  start(id: string, traceId: string, tokenId: string): void;
  end(id: string, exitStatus: number | null, error: string): void;
}

export class SqliteSessions implements SessionLog {
  constructor(private readonly db: Database.Database) {}

  start(id: string, traceId: string, tokenId: string): void {
    this.db.prepare('INSERT INTO sessions (id, trace_id, token_id, started_ms) VALUES (?, ?, ?, ?)').run(id, traceId, tokenId, Date.now());
  }

  end(id: string, exitStatus: number | null, error: string): void {
    this.db.prepare('UPDATE sessions SET ended_ms = ?, exit_status = ?, error = ? WHERE id = ?').run(Date.now(), exitStatus, error, id);
  }
}
