import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { SHA256_HEX } from '../../trace/ids.js';

/**
 * A local directory of blobs fetched from a remote store, bounded in bytes: the least recently
 * used blobs are removed to make room (a session that already has a blob keeps it: it holds a
 * hard link or a copy). Every blob is verified against its sha256 as it is written; concurrent
 * requests for one blob share one download.
 */
export class BlobCache {
  /** sha256 → size, in order of last use (oldest first). */
  private readonly entries = new Map<string, number>();
  private bytes = 0;
  private readonly downloads = new Map<string, Promise<void>>();
  /** Blobs being handed out now: never evicted under a reader. */
  private readonly pins = new Map<string, number>();

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
  ) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    // What an earlier run left: complete blobs are kept (oldest use first), downloads cut short are not.
    const found: { sha: string; size: number; used: number }[] = [];
    for (const name of fs.readdirSync(dir)) {
      const p = path.join(dir, name);
      if (!SHA256_HEX.test(name)) {
        fs.rmSync(p, { force: true });
        continue;
      }
      const st = fs.statSync(p);
      found.push({ sha: name, size: st.size, used: st.atimeMs });
    }
    for (const f of found.sort((a, b) => a.used - b.used)) {
      this.entries.set(f.sha, f.size);
      this.bytes += f.size;
    }
  }

  /** Bytes held now. */
  get size(): number {
    return this.bytes;
  }

  has(sha256: string): boolean {
    return this.entries.has(sha256);
  }

  /**
   * Makes blob `sha256` available at `dest` (a hard link to the cached file, else a copy),
   * downloading it with `open` if it is not cached.
   */
  async materialize(sha256: string, dest: string, open: () => Promise<Readable>): Promise<void> {
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
    this.pins.set(sha256, (this.pins.get(sha256) ?? 0) + 1);
    try {
      if (!this.entries.has(sha256)) {
        let d = this.downloads.get(sha256);
        if (!d) {
          d = this.download(sha256, open).finally(() => this.downloads.delete(sha256));
          this.downloads.set(sha256, d);
        }
        await d;
      }
      const size = this.entries.get(sha256)!;
      this.entries.delete(sha256);
      this.entries.set(sha256, size);
      const src = path.join(this.dir, sha256);
      try {
        await fsp.link(src, dest);
      } catch {
        await fsp.copyFile(src, dest);
      }
    } finally {
      const n = this.pins.get(sha256)! - 1;
      if (n === 0) this.pins.delete(sha256);
      else this.pins.set(sha256, n);
    }
    await this.evict();
  }

  /** Forgets a blob (it was deleted from the store). */
  async remove(sha256: string): Promise<void> {
    const size = this.entries.get(sha256);
    if (size === undefined) return;
    this.entries.delete(sha256);
    this.bytes -= size;
    await fsp.rm(path.join(this.dir, sha256), { force: true });
  }

  private async download(sha256: string, open: () => Promise<Readable>): Promise<void> {
    const tmp = path.join(this.dir, `.${sha256}.${process.pid}.${Date.now()}`);
    const hash = createHash('sha256');
    let size = 0;
    const tee = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        size += chunk.length;
        cb(null, chunk);
      },
    });
    try {
      await pipeline(await open(), tee, fs.createWriteStream(tmp, { mode: 0o600 }));
      const got = hash.digest('hex');
      if (got !== sha256) throw new Error(`blob ${sha256} from the store does not match its sha256 (got ${got}): not cached`);
      await fsp.rename(tmp, path.join(this.dir, sha256));
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    this.entries.set(sha256, size);
    this.bytes += size;
  }

  /** Removes the least recently used blobs (none in use) until the cache fits its bound. */
  private async evict(): Promise<void> {
    for (const [sha, size] of this.entries) {
      if (this.bytes <= this.maxBytes) return;
      if (this.pins.has(sha)) continue;
      this.entries.delete(sha);
      this.bytes -= size;
      await fsp.rm(path.join(this.dir, sha), { force: true });
    }
  }
}
