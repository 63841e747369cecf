// The blobs the catalogue knows, with reference counts: a blob is referenced by the committed
// traces that name it; one no trace references is an upload never committed (or a deleted trace's).
import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import type { BlobIndex, MetaStore } from './stores.js';

/**
 * A claim on a blob (SQLite and PostgreSQL alike): taken when no claim holds it, or when the one
 * that does belongs to a server whose lease ran out. Args: sha256, claim, server id, now, now.
 */
export const CLAIM_BLOB = `INSERT INTO blob_claims (sha256, claim, server_id, since_ms) VALUES (?, ?, ?, ?)
  ON CONFLICT (sha256) DO UPDATE SET claim = excluded.claim, server_id = excluded.server_id, since_ms = excluded.since_ms
  WHERE NOT EXISTS (SELECT 1 FROM servers s WHERE s.id = blob_claims.server_id AND s.lease_until_ms >= ?)
  RETURNING claim`;
export const RELEASE_BLOB = 'DELETE FROM blob_claims WHERE sha256 = ? AND claim = ?';
export const BLOB_CLAIMS_TABLE = 'CREATE TABLE blob_claims (sha256 TEXT PRIMARY KEY, claim TEXT NOT NULL, server_id TEXT NOT NULL, since_ms BIGINT NOT NULL);';

export class SqliteBlobs implements BlobIndex {
  constructor(
    private readonly db: Database.Database,
    private readonly serverId: string,
  ) {}

  async has(sha256: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM blobs WHERE sha256 = ?').get(sha256) !== undefined;
  }

  async isReferenced(sha256: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM blobs WHERE sha256 = ? AND refcount > 0').get(sha256) !== undefined;
  }

  async add(sha256: string, size: number): Promise<void> {
    this.db.prepare('INSERT OR IGNORE INTO blobs (sha256, size, refcount, created_ms) VALUES (?, ?, 0, ?)').run(sha256, size, Date.now());
  }

  async takeOrphans(cutoffMs: number): Promise<{ sha256: string; size: number }[]> {
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

  async claim(sha256: string): Promise<string | undefined> {
    const now = Date.now();
    const r = this.db.prepare(CLAIM_BLOB).get(sha256, randomUUID(), this.serverId, now, now) as { claim: string } | undefined;
    return r?.claim;
  }

  async release(sha256: string, claim: string): Promise<void> {
    this.db.prepare(RELEASE_BLOB).run(sha256, claim);
  }
}

export class SqliteMeta implements MetaStore {
  constructor(private readonly db: Database.Database) {}

  async get(key: string): Promise<string | undefined> {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  async setOnce(key: string, value: string): Promise<boolean> {
    return this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO NOTHING').run(key, value).changes === 1;
  }
}
