import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { crc32 } from 'node:zlib';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  ListPartsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
  type MultipartUpload,
  type Part,
} from '@aws-sdk/client-s3';
import { BlobWriteError, type BlobStore, type BlobWriter, type ChunkCheck } from './blobstore.js';
import { BlobCache } from './cache.js';
import { SHA256_HEX } from '../../trace/ids.js';

/** Where an S3 store keeps its blobs: `s3://BUCKET/PREFIX`. */
export interface S3Location {
  bucket: string;
  /** '' or ending in '/'. */
  prefix: string;
}

export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/.exec(url);
  if (!m) throw new Error(`not an S3 location: ${JSON.stringify(url)} (use s3://BUCKET or s3://BUCKET/PREFIX)`);
  const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
  return { bucket: m[1]!, prefix: prefix ? `${prefix}/` : '' };
}

/**
 * A client from the SDK's default provider chain (AWS_* variables, ~/.aws/config and
 * credentials, instance roles). With an endpoint (the flag or AWS_ENDPOINT_URL[_S3]) the store is
 * taken to be S3-compatible: path-style addressing, and only the checksums S3 itself requires
 * (many compatible stores refuse the SDK's newer default ones).
 */
export function s3Client(endpoint?: string): S3Client {
  const compatible = Boolean(endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL);
  return new S3Client({
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: compatible,
    ...(compatible ? { requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' } : {}),
  });
}

export interface S3BlobStoreOptions extends S3Location {
  client: S3Client;
  /** Local directory of the blobs replay and debug sessions use. */
  cacheDir: string;
  cacheBytes: number;
  /** Bytes of a multipart part (at least 5 MiB, S3's minimum); larger blobs get larger parts. */
  partSize?: number;
  /** Parts of one blob uploaded at once. */
  partsInFlight?: number;
}

const MIB = 1 << 20;
export const DEFAULT_PART_SIZE = 8 * MIB;
/** S3 allows 10,000 parts; Swift's s3api 1,000 by default. */
const MAX_PARTS = 1000;

/**
 * Blobs in an S3-compatible object store: complete blobs at PREFIX/blobs/<sha256>. A blob larger
 * than one part streams into a multipart upload of that key, in parts of a size fixed by the
 * blob's size, so what the store holds (ListMultipartUploads, ListParts) says where an upload
 * resumes, after a broken stream or a restart of this server. A blob is completed only once
 * verified: a writer that saw the blob from its first byte hashes it on the way and completes
 * the upload only if the sha256 matches; a resumed writer never saw the held parts (a store
 * cannot read them back before completion), so it marks the blob (PREFIX/verifying/<sha256>),
 * completes, reads the blob back streaming, and removes the mark (or, on a mismatch, the blob).
 * A marked blob counts as absent. Memory per writer: at most `partsInFlight` + 1 parts.
 */
export class S3BlobStore implements BlobStore {
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly cache: BlobCache;
  private readonly basePartSize: number;
  readonly partsInFlight: number;
  private readonly busy = new Set<string>();
  private readonly draining = new Map<string, Promise<void>>();
  /**
   * Part buffers of the base size, kept for the next part: a fresh 8 MiB buffer per part made
   * the garbage collector a large share of an upload's CPU time.
   */
  private readonly spareParts: Buffer[] = [];

  constructor(opts: S3BlobStoreOptions) {
    this.client = opts.client;
    this.bucket = opts.bucket;
    this.prefix = opts.prefix;
    this.basePartSize = opts.partSize ?? DEFAULT_PART_SIZE;
    if (this.basePartSize < 5 * MIB) throw new Error('an S3 part is at least 5 MiB');
    this.partsInFlight = opts.partsInFlight ?? 4;
    if (this.partsInFlight < 1) throw new Error('at least one part in flight');
    this.cache = new BlobCache(opts.cacheDir, opts.cacheBytes);
  }

  /** A store at `s3://BUCKET/PREFIX`, once the bucket answers (so a wrong name or key fails at start). */
  static async open(url: string, opts: { endpoint?: string; cacheDir: string; cacheBytes: number; partSize?: number }): Promise<S3BlobStore> {
    const loc = parseS3Url(url);
    const client = s3Client(opts.endpoint);
    try {
      await client.send(new HeadBucketCommand({ Bucket: loc.bucket }));
    } catch (err) {
      client.destroy();
      const e = err as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
      throw new Error(`cannot use ${url}: ${e.name ?? 'error'} ${e.$metadata?.httpStatusCode ?? ''} ${e.message ?? ''}`.trim(), { cause: err });
    }
    return new S3BlobStore({ ...loc, client, cacheDir: opts.cacheDir, cacheBytes: opts.cacheBytes, partSize: opts.partSize });
  }

  /** A buffer for a part of `length` bytes: a spare one when the length is the base part size. */
  partBuffer(length: number): Buffer {
    return (length === this.basePartSize ? this.spareParts.pop() : undefined) ?? Buffer.allocUnsafe(length);
  }

  /** Takes back a part's buffer once nothing holds it (its upload settled). */
  sparePart(buf: Buffer): void {
    if (buf.length === this.basePartSize && this.spareParts.length < this.partsInFlight) this.spareParts.push(buf);
  }

  keyOf(sha256: string): string {
    check(sha256);
    return `${this.prefix}blobs/${sha256}`;
  }

  private markOf(sha256: string): string {
    return `${this.prefix}verifying/${sha256}`;
  }

  /** The part size of a blob of `size` bytes (a whole MiB, so that at most MAX_PARTS parts hold it). */
  partSizeOf(size: number): number {
    return Math.max(this.basePartSize, Math.ceil(size / MAX_PARTS / MIB) * MIB);
  }

  isBusy(sha256: string): boolean {
    return this.busy.has(sha256);
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw err;
    }
  }

  async has(sha256: string): Promise<boolean> {
    return (await this.exists(this.keyOf(sha256))) && !(await this.exists(this.markOf(sha256)));
  }

  /** Unfinished uploads of the key `key`, or of every key under it when `under`. */
  private async uploadsOf(key: string, under = false): Promise<MultipartUpload[]> {
    const out: MultipartUpload[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      const r = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: key, KeyMarker, UploadIdMarker }));
      out.push(...(r.Uploads ?? []).filter((u) => (under || u.Key === key) && u.UploadId));
      if (!r.IsTruncated) return out;
      KeyMarker = r.NextKeyMarker;
      UploadIdMarker = r.NextUploadIdMarker;
    }
  }

  private async partsOf(key: string, uploadId: string): Promise<Part[]> {
    const out: Part[] = [];
    let PartNumberMarker: string | undefined;
    for (;;) {
      const r = await this.client.send(new ListPartsCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId, PartNumberMarker }));
      out.push(...(r.Parts ?? []));
      if (!r.IsTruncated) return out;
      PartNumberMarker = r.NextPartNumberMarker;
    }
  }

  /**
   * The unfinished upload of a blob as the store holds it: its id and the run of whole parts
   * from part 1 (a part cut short or out of order is re-sent). With several uploads of one key
   * (a server died between creating one and using it) the one holding most wins. `tidy`, only for
   * the blob's one writer (its claim in the catalogue keeps every other server off it): the other
   * uploads are aborted, and a blob left unverified (its server died while checking it) is removed.
   */
  private async held(sha256: string, size?: number, tidy = false): Promise<{ uploadId: string; parts: CompletedPart[]; bytes: number } | undefined> {
    const key = this.keyOf(sha256);
    // A resumed upload completed but not verified (its server died meanwhile): start again.
    if (await this.exists(this.markOf(sha256))) {
      if (!tidy) return undefined;
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.markOf(sha256) }));
    }
    let best: { uploadId: string; parts: CompletedPart[]; bytes: number } | undefined;
    for (const u of await this.uploadsOf(key)) {
      const parts = (await this.partsOf(key, u.UploadId!)).sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
      const partSize = size === undefined ? (parts[0]?.Size ?? 0) : this.partSizeOf(size);
      const run: CompletedPart[] = [];
      for (const p of parts) {
        if (p.PartNumber !== run.length + 1 || p.Size !== partSize || partSize < this.basePartSize) break;
        run.push({ PartNumber: p.PartNumber, ETag: p.ETag });
      }
      const cand = { uploadId: u.UploadId!, parts: run, bytes: run.length * partSize };
      let loser: typeof best = cand;
      if (!best || cand.bytes > best.bytes) {
        loser = best;
        best = cand;
      }
      if (loser && tidy) await this.abort(key, loser.uploadId);
    }
    return best;
  }

  async abort(key: string, uploadId: string): Promise<void> {
    try {
      await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: key, UploadId: uploadId }));
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  async partialSize(sha256: string): Promise<number> {
    check(sha256);
    // A writer just closed may still be storing the parts it sent.
    await this.draining.get(sha256);
    return (await this.held(sha256))?.bytes ?? 0;
  }

  async openWriter(sha256: string, size: number, offset: number): Promise<BlobWriter> {
    check(sha256);
    await this.draining.get(sha256);
    if (this.busy.has(sha256)) {
      throw new BlobWriteError('busy', `blob ${sha256} is being uploaded by another stream`, await this.partialSize(sha256));
    }
    this.busy.add(sha256);
    try {
      const partSize = this.partSizeOf(size);
      // A blob of one part is sent whole at the end (nothing of it is held before).
      const upload = size > partSize ? await this.held(sha256, size, true) : undefined;
      const held = upload?.bytes ?? 0;
      if (offset !== held) {
        throw new BlobWriteError('offset', `offset ${offset} does not match: server holds ${held} bytes of ${sha256}`, held);
      }
      return new S3BlobWriter(this, sha256, size, partSize, upload, (settled) => {
        if (!settled) {
          this.busy.delete(sha256);
          return;
        }
        this.draining.set(sha256, settled);
        void settled.finally(() => {
          if (this.draining.get(sha256) === settled) this.draining.delete(sha256);
          this.busy.delete(sha256);
        });
      });
    } catch (err) {
      this.busy.delete(sha256);
      throw err;
    }
  }

  /** Reads the stored blob back and compares its sha256 (streamed: never whole in memory). */
  async verifyStored(sha256: string): Promise<string> {
    const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(sha256) }));
    const hash = createHash('sha256');
    for await (const chunk of r.Body as Readable) hash.update(chunk as Buffer);
    return hash.digest('hex');
  }

  async mark(sha256: string, on: boolean): Promise<void> {
    const Key = this.markOf(sha256);
    await this.client.send(on ? new PutObjectCommand({ Bucket: this.bucket, Key, Body: '' }) : new DeleteObjectCommand({ Bucket: this.bucket, Key }));
  }

  async materialize(sha256: string, dest: string): Promise<void> {
    await this.cache.materialize(sha256, dest, async () => {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.keyOf(sha256) }));
      return r.Body as Readable;
    });
  }

  async delete(sha256: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.keyOf(sha256) }));
    await this.cache.remove(sha256);
  }

  /** Aborts multipart uploads with no part stored for `olderThanMs`, and drops stale verification marks. */
  async sweepPartials(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const u of await this.uploadsOf(`${this.prefix}blobs/`, true)) {
      const sha = u.Key!.slice(`${this.prefix}blobs/`.length);
      if (!SHA256_HEX.test(sha) || this.isBusy(sha)) continue;
      const parts = await this.partsOf(u.Key!, u.UploadId!);
      const touched = Math.max(u.Initiated?.getTime() ?? 0, ...parts.map((p) => p.LastModified?.getTime() ?? 0));
      if (touched < cutoff) {
        await this.abort(u.Key!, u.UploadId!);
        removed++;
      }
    }
    let ContinuationToken: string | undefined;
    do {
      const r = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: `${this.prefix}verifying/`, ContinuationToken }));
      for (const o of r.Contents ?? []) {
        const sha = o.Key!.slice(`${this.prefix}verifying/`.length);
        if (!SHA256_HEX.test(sha) || this.isBusy(sha) || (o.LastModified?.getTime() ?? 0) >= cutoff) continue;
        await this.held(sha, undefined, true); // removes the unverified blob and its mark
        removed++;
      }
      ContinuationToken = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (ContinuationToken);
    return removed;
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}

class S3BlobWriter implements BlobWriter {
  offset: number;
  /** Whole parts the store holds (numbered from 1), in order. */
  private readonly parts: CompletedPart[];
  /** Parts sent after them, in order, not all stored yet. */
  private readonly pending: CompletedPart[] = [];
  private uploadId: string | undefined;
  /** The part being filled. */
  private buf: Buffer | undefined;
  private filled = 0;
  /** Present when this writer saw the blob from byte 0. */
  private readonly hash: Hash | undefined;
  private readonly inflight = new Set<Promise<void>>();
  private creating: Promise<string> | undefined;
  private failure: Error | undefined;
  private done = false;

  constructor(
    private readonly store: S3BlobStore,
    private readonly sha256: string,
    private readonly size: number,
    private readonly partSize: number,
    upload: { uploadId: string; parts: CompletedPart[]; bytes: number } | undefined,
    /** Called once, when the writer is done with; `settled` settles when its parts are all stored (undefined: they are). */
    private readonly release: (settled: Promise<void> | undefined) => void,
  ) {
    this.uploadId = upload?.uploadId;
    this.parts = upload?.parts ?? [];
    this.offset = upload?.bytes ?? 0;
    this.hash = this.offset === 0 ? createHash('sha256') : undefined;
  }

  /** Parts in flight: fewer for a huge blob's large parts, so a writer holds at most ~40 MiB (or one part and the next). */
  private get maxInflight(): number {
    return Math.max(1, Math.min(this.store.partsInFlight, Math.floor((32 * MIB) / this.partSize)));
  }

  private get key(): string {
    return this.store.keyOf(this.sha256);
  }

  async write(data: Uint8Array, check?: ChunkCheck): Promise<void> {
    if (this.done) throw new Error('writer is closed');
    if (this.failure) throw this.failure;
    if (this.offset + data.length > this.size) {
      throw new BlobWriteError('too-large', `blob ${this.sha256} is larger than its declared size of ${this.size} bytes`, this.offset);
    }
    const bad =
      check?.crc32 !== undefined && crc32(data) !== check.crc32
        ? 'CRC-32'
        : check?.sha256 && check.sha256.length > 0 && !createHash('sha256').update(data).digest().equals(check.sha256)
          ? 'sha256'
          : undefined;
    if (bad) {
      // Nothing of the part being filled is kept: the store holds whole parts only.
      this.failure = new BlobWriteError('chunk', `chunk at offset ${this.offset} of blob ${this.sha256} does not match its ${bad}; re-send it`, this.parts.length * this.partSize);
      throw this.failure;
    }
    this.hash?.update(data);
    this.offset += data.length;
    for (let at = 0; at < data.length; ) {
      this.buf ??= this.store.partBuffer(Math.min(this.partSize, this.size - this.sent * this.partSize));
      const n = Math.min(this.buf.length - this.filled, data.length - at);
      this.buf.set(data.subarray(at, at + n), this.filled);
      this.filled += n;
      at += n;
      // A blob of one part is stored whole by finish().
      if (this.filled === this.buf.length && this.size > this.partSize) this.sendPart();
    }
    while (this.inflight.size >= this.maxInflight) await Promise.race(this.inflight);
    if (this.failure) throw this.failure;
  }

  /** Parts sent (stored or on their way). */
  private get sent(): number {
    return this.parts.length + this.pending.length;
  }

  /** Uploads the filled buffer as the next part. */
  private sendPart(): void {
    const body = this.buf!;
    const number = this.sent + 1;
    this.buf = undefined;
    this.filled = 0;
    const slot: CompletedPart = { PartNumber: number };
    const p = (async () => {
      this.creating ??= this.uploadId
        ? Promise.resolve(this.uploadId)
        : this.store.client.send(new CreateMultipartUploadCommand({ Bucket: this.store.bucket, Key: this.key })).then((r) => (this.uploadId = r.UploadId!));
      const UploadId = await this.creating;
      const r = await this.store.client.send(
        new UploadPartCommand({ Bucket: this.store.bucket, Key: this.key, UploadId, PartNumber: number, Body: body, ContentLength: body.length }),
      );
      slot.ETag = r.ETag;
    })()
      .catch((err: unknown) => {
        this.failure ??= err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => this.store.sparePart(body));
    this.pending.push(slot);
    this.inflight.add(p);
    void p.finally(() => {
      this.inflight.delete(p);
      // Parts are held in order: those done at the front of the queue join the run.
      while (this.pending[0]?.ETag) this.parts.push(this.pending.shift()!);
    });
  }

  async finish(): Promise<void> {
    if (this.offset !== this.size) {
      throw new BlobWriteError('incomplete', `blob ${this.sha256} is incomplete: ${this.offset} of ${this.size} bytes`, this.offset);
    }
    if (this.done) throw new Error('writer is closed');
    this.done = true;
    try {
      if (this.failure) throw this.failure;
      const { client, bucket } = this.store;
      if (this.size <= this.partSize) {
        // A blob of one part: verified, then stored whole.
        const got = this.hash!.digest('hex');
        if (got !== this.sha256) throw hashMismatch(this.sha256, got);
        const body = this.buf ?? Buffer.alloc(0);
        this.buf = undefined;
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: this.key, Body: body, ContentLength: body.length }));
        return;
      }
      await this.allStored();
      if (this.failure) throw this.failure;
      const UploadId = this.uploadId!;
      if (this.hash) {
        const got = this.hash.digest('hex');
        if (got !== this.sha256) {
          await this.store.abort(this.key, UploadId);
          throw hashMismatch(this.sha256, got);
        }
      } else {
        await this.store.mark(this.sha256, true);
      }
      await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: this.key, UploadId, MultipartUpload: { Parts: this.parts } }));
      if (!this.hash) {
        const got = await this.store.verifyStored(this.sha256);
        if (got !== this.sha256) {
          await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: this.key }));
          await this.store.mark(this.sha256, false);
          throw hashMismatch(this.sha256, got);
        }
        await this.store.mark(this.sha256, false);
      }
    } finally {
      await this.allStored();
      this.release(undefined);
    }
  }

  /** Settles when every part sent is stored (or failed). */
  private async allStored(): Promise<void> {
    while (this.inflight.size > 0) await Promise.race(this.inflight);
  }

  /** Keeps the parts stored (those in flight complete) and releases the blob; the part being filled is dropped. */
  async close(): Promise<void> {
    if (this.done) return;
    this.done = true;
    if (this.buf) this.store.sparePart(this.buf);
    this.buf = undefined;
    const stored = this.allStored();
    this.release(stored);
    await stored;
  }
}

function hashMismatch(expected: string, got: string): BlobWriteError {
  return new BlobWriteError('hash', `blob content does not match its sha256: expected ${expected}, got ${got}`, 0);
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } } | null;
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.name === 'NoSuchUpload' || e?.$metadata?.httpStatusCode === 404;
}

function check(sha256: string): void {
  if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256: ${JSON.stringify(sha256)}`);
}
