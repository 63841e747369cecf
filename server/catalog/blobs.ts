// The blobs the catalogue knows, with reference counts: a blob is referenced by the committed
// traces that name it; one no trace references is an upload never committed (or a deleted trace's).
import type Database from 'better-sqlite3';
import type { BlobIndex, MetaStore } from './stores.js';

export class SqliteBlobs implements BlobIndex {
  constructor(private readonly db: Database.Database) {}

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
