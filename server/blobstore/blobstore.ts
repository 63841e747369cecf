/**
 * Content-addressed storage of trace blobs. The server only talks to this interface, so the
 * disk store can be swapped for an object store (S3-compatible) without touching the services.
 */
export interface BlobStore {
  /** True when the blob is complete and verified. */
  has(sha256: string): Promise<boolean>;
  /** Bytes already held of an unfinished upload of this blob (0 when none). */
  partialSize(sha256: string): Promise<number>;
  /**
   * Opens a writer that continues an upload at `offset`, which must equal partialSize().
   * Throws BlobWriteError when the offset is wrong or the blob is being written elsewhere.
   */
  openWriter(sha256: string, size: number, offset: number): Promise<BlobWriter>;
  /** Makes the blob available as a local file at dest (hard link when possible, else copy). */
  materialize(sha256: string, dest: string): Promise<void>;
  /** Removes a complete blob (no-op when absent). */
  delete(sha256: string): Promise<void>;
  /** True while an upload stream writes this blob. */
  isBusy(sha256: string): boolean;
  /** Removes unfinished uploads untouched for `olderThanMs` (none being written); returns how many. */
  sweepPartials(olderThanMs: number): Promise<number>;
  /** Releases what the store holds (threads, connections); called when the server stops. */
  close?(): Promise<void>;
}

export interface BlobWriter {
  /** Bytes of the blob now held (offset of the next write). */
  readonly offset: number;
  /**
   * Appends bytes (offset advances at once); rejects with BlobWriteError if they overrun the
   * declared size. The store may still be writing them when the promise resolves, and may take
   * `data`'s memory (its buffer may be detached), so the caller must not use `data` afterwards;
   * a failed write rejects a later write() or finish(). With `check`, bytes that do not match it
   * are not written: BlobWriteError('chunk'), now or from a later call; nothing after them is
   * written either, so what the store holds stays a prefix of the blob.
   */
  write(data: Uint8Array, check?: ChunkCheck): Promise<void>;
  /**
   * Once offset === size: flushes to stable storage, verifies the sha256 and publishes the blob.
   * On a mismatch the partial data is discarded and BlobWriteError('hash') is thrown.
   */
  finish(): Promise<void>;
  /**
   * Keeps what was written so far (for a later resume; queued writes complete) and releases the
   * writer; settles once the queued writes are stored.
   */
  close(): Promise<void>;
}

/** 'no-space': the store is full; what was written of the blob is removed. */
export type BlobWriteErrorKind = 'offset' | 'busy' | 'too-large' | 'hash' | 'incomplete' | 'chunk' | 'no-space';

/** errno codes of a full file system (or quota) as Node reports them. */
export function isNoSpace(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

/** What a chunk must match before it is written: its CRC-32 (zlib polynomial) and/or sha256 (raw 32 bytes). */
export interface ChunkCheck {
  crc32?: number;
  sha256?: Uint8Array;
}

export class BlobWriteError extends Error {
  constructor(
    readonly kind: BlobWriteErrorKind,
    message: string,
    /** Bytes the store holds of the blob after the failure. */
    readonly heldOffset: number,
  ) {
    super(message);
    this.name = 'BlobWriteError';
  }
}

