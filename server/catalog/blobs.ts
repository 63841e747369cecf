// The blobs the catalogue knows, with reference counts: a blob is referenced by the committed
// traces that name it; one no trace references is an upload never committed (or a deleted trace's).
import type Database from 'better-sqlite3';

export interface BlobIndex {
  has(sha256: string): boolean;
  /** A committed trace names it. */
  isReferenced(sha256: string): boolean;
  /** Records a complete, verified blob (unreferenced until a trace naming it is committed). */
  add(sha256: string, size: number): void;
  /**
   * Forgets blobs no trace references that were stored at or before `cutoffMs` (uploads never
   * committed); returns them so their files can be removed.
   */
  takeOrphans(cutoffMs: number): { sha256: string; size: number }[];
}

export class SqliteBlobs implements BlobIndex {
  constructor(private readonly db: Database.Database) {}

  has(sha256: string): boolean {
    return this.db.prepare('SELECT 1 FROM blobs WHERE sha256 = ?').get(sha256) !== undefined;
  }

  isReferenced(sha256: string): boolean {
    return this.db.prepare('SELECT 1 FROM blobs WHERE sha256 = ? AND refcount > 0').get(sha256) !== undefined;
  }

  add(sha256: string, size: number): void {
    this.db.prepare('INSERT OR IGNORE INTO blobs (sha256, size, refcount, created_ms) VALUES (?, ?, 0, ?)').run(sha256, size, Date.now());
  }

  takeOrphans(cutoffMs: number): { sha256: string; size: number }[] {
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

/** Small facts about the catalogue itself (when the first admin token was made). */
export interface MetaStore {
  get(key: string): string | undefined;
  set(key: string, value: string): void;
}

export class SqliteMeta implements MetaStore {
  constructor(private readonly db: Database.Database) {}

  get(key: string): string | undefined {
    const r = this.db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return r?.value;
  }

  set(key: string, value: string): void {
    this.db.prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value').run(key, value);
  }
}
