import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { BlobWriteError, isNoSpace, type BlobStore, type BlobWriter, type ChunkCheck } from './blobstore.js';
import { SHA256_HEX } from '../../trace/ids.js';
import { ThreadWriteError, WriteThreads, type ThreadFile } from './write_threads.js';

/**
 * Blobs on a local disk: complete blobs at ROOT/ab/cd/<sha256>; unfinished uploads at
 * ROOT/.partial/<sha256> (kept across restarts so an upload resumes where it broke).
 * A blob is published by fsync + verify + rename, so a complete path always holds verified bytes.
 * Writing and hashing run on write threads (write_threads.ts), off the event loop.
 */
export class DiskBlobStore implements BlobStore {
  private readonly partialDir: string;
  private readonly busy = new Set<string>();
  private readonly draining = new Map<string, Promise<void>>();
  private readonly threads: WriteThreads;

  constructor(
    readonly root: string,
    opts: { writeThreads?: number } = {},
  ) {
    this.threads = new WriteThreads(opts.writeThreads ?? 2);
    this.threads.start();
    this.partialDir = path.join(root, '.partial');
    fs.mkdirSync(this.partialDir, { recursive: true, mode: 0o700 });
  }

  isBusy(sha256: string): boolean {
    return this.busy.has(sha256);
  }

  pathOf(sha256: string): string {
    check(sha256);
    return path.join(this.root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
  }

  private partialOf(sha256: string): string {
    check(sha256);
    return path.join(this.partialDir, sha256);
  }

  async has(sha256: string): Promise<boolean> {
    try {
      await fsp.access(this.pathOf(sha256));
      return true;
    } catch {
      return false;
    }
  }

  async partialSize(sha256: string): Promise<number> {
    // A writer just closed may still be writing what it queued: count those bytes too.
    await this.draining.get(sha256)?.catch(() => undefined);
    return this.heldBytes(sha256);
  }

  private async heldBytes(sha256: string): Promise<number> {
    try {
      return (await fsp.stat(this.partialOf(sha256))).size;
    } catch {
      return 0;
    }
  }

  async openWriter(sha256: string, size: number, offset: number): Promise<BlobWriter> {
    check(sha256);
    // A writer that was just closed may still be flushing its queued writes: wait for them, so
    // the partial file's size is final before it is compared with the client's offset.
    await this.draining.get(sha256);
    if (this.busy.has(sha256)) {
      throw new BlobWriteError('busy', `blob ${sha256} is being uploaded by another stream`, await this.heldBytes(sha256));
    }
    this.busy.add(sha256);
    try {
      const partial = this.partialOf(sha256);
      const held = await this.heldBytes(sha256);
      if (held > size) {
        // A stale partial longer than the blob can only be garbage: start again.
        await fsp.rm(partial, { force: true });
        throw new BlobWriteError('offset', `offset ${offset} does not match: server holds 0 bytes of ${sha256}`, 0);
      }
      if (offset !== held) {
        throw new BlobWriteError('offset', `offset ${offset} does not match: server holds ${held} bytes of ${sha256}`, held);
      }
      const file = await this.threads.open(partial, held);
      return new DiskBlobWriter(this, sha256, size, held, file, partial, (flushed) => {
        if (!flushed) {
          this.busy.delete(sha256);
          return;
        }
        this.draining.set(sha256, flushed);
        void flushed.finally(() => {
          if (this.draining.get(sha256) === flushed) this.draining.delete(sha256);
          this.busy.delete(sha256);
        });
      });
    } catch (err) {
      this.busy.delete(sha256);
      throw err;
    }
  }

  async publish(sha256: string, partial: string): Promise<void> {
    const dest = this.pathOf(sha256);
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
    await fsp.rename(partial, dest);
    const dir = await fsp.open(path.dirname(dest), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }

  async materialize(sha256: string, dest: string): Promise<void> {
    const src = this.pathOf(sha256);
    try {
      await fsp.link(src, dest);
    } catch {
      await fsp.copyFile(src, dest);
    }
  }

  async delete(sha256: string): Promise<void> {
    await fsp.rm(this.pathOf(sha256), { force: true });
  }

  async sweepPartials(olderThanMs: number): Promise<number> {
    let names: string[] = [];
    try {
      names = await fsp.readdir(this.partialDir);
    } catch {
      // no partial uploads
    }
    let removed = 0;
    for (const n of names) {
      if (this.isBusy(n)) continue;
      const p = path.join(this.partialDir, n);
      try {
        if (Date.now() - (await fsp.stat(p)).mtimeMs > olderThanMs) {
          await fsp.rm(p, { force: true });
          removed++;
        }
      } catch {
        // gone meanwhile
      }
    }
    return removed;
  }

  async close(): Promise<void> {
    await this.threads.close();
  }
}

/** Writes in flight per writer before write() waits for the oldest. */
const MAX_QUEUED_WRITES = 4;

class DiskBlobWriter implements BlobWriter {
  private inflight: Promise<void>[] = [];
  private failure: Error | undefined;
  private finished = false;
  private released = false;
  private fileClosed = false;
  /** The disk filled up: what was written is removed when the writer is released. */
  private discard = false;

  constructor(
    private readonly store: DiskBlobStore,
    private readonly sha256: string,
    private readonly size: number,
    public offset: number,
    private readonly file: ThreadFile,
    private readonly partial: string,
    /** Called once, when the writer is done with; `flushed` settles when its file is closed (undefined: it is). */
    private readonly release: (flushed: Promise<void> | undefined) => void,
  ) {}

  /**
   * Queues the bytes on the file's write thread, which writes and hashes them in order: the
   * caller goes on with the next chunk meanwhile. `data`'s buffer may be moved to that thread
   * (detached); a failed write is reported by a later write() or by finish().
   */
  async write(data: Uint8Array, check?: ChunkCheck): Promise<void> {
    if (this.finished || this.released) throw new Error('writer is closed');
    if (this.failure) throw this.failure;
    if (this.offset + data.length > this.size) {
      throw new BlobWriteError(
        'too-large',
        `blob ${this.sha256} is larger than its declared size of ${this.size} bytes`,
        this.offset,
      );
    }
    const at = this.offset;
    this.offset += data.length;
    this.inflight.push(
      this.file.write(data, check).catch((err: unknown) => {
        if (err instanceof ThreadWriteError && err.code === 'chunk') {
          this.failure ??= new BlobWriteError('chunk', `chunk at offset ${at} of blob ${this.sha256} does not match its ${err.message}; re-send it`, at);
        } else if (isNoSpace(err)) {
          this.failure ??= this.noSpace();
        } else {
          this.failure ??= err instanceof Error ? err : new Error(String(err));
        }
      }),
    );
    while (this.inflight.length >= MAX_QUEUED_WRITES) await this.inflight.shift();
    if (this.failure) throw this.failure;
  }

  async finish(): Promise<void> {
    if (this.offset !== this.size) {
      throw new BlobWriteError('incomplete', `blob ${this.sha256} is incomplete: ${this.offset} of ${this.size} bytes`, this.offset);
    }
    this.finished = true;
    try {
      await Promise.all(this.inflight.splice(0));
      if (this.failure) throw this.failure;
      // fsync, close and the digest, on the write thread.
      const got = await this.file.finish();
      this.fileClosed = true;
      if (got !== this.sha256) {
        await fsp.rm(this.partial, { force: true });
        throw new BlobWriteError('hash', `blob content does not match its sha256: expected ${this.sha256}, got ${got}`, 0);
      }
      await this.store.publish(this.sha256, this.partial);
    } catch (err) {
      // An fsync or a rename that found the disk full: close() removes the partial.
      throw isNoSpace(err) ? this.noSpace() : err;
    } finally {
      await this.close();
    }
  }

  private noSpace(): BlobWriteError {
    this.discard = true;
    return new BlobWriteError(
      'no-space',
      `the server's disk is full: blob ${this.sha256} was not stored, and what had arrived of it was removed; try again once space is freed`,
      0,
    );
  }

  /** Keeps what was written (queued writes complete first) and releases the blob for another writer. */
  async close(): Promise<void> {
    if (this.released) return;
    this.released = true;
    // The thread handles requests in order: the close comes after every queued write. After a
    // finish the file is closed already, and the blob is released at once (before the reply).
    const closed = this.fileClosed ? undefined : this.file.close().catch(() => undefined);
    // A partial that filled the disk goes at once (a resume would only fill it again).
    const flushed = this.discard ? (closed ?? Promise.resolve()).then(() => fsp.rm(this.partial, { force: true })).catch(() => undefined) : closed;
    this.release(flushed);
    await flushed;
  }
}

function check(sha256: string): void {
  if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
}

