import { createHash } from 'node:crypto';
import { crc32, deflateRawSync } from 'node:zlib';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { status, type ClientWritableStream, type ServiceError } from '@grpc/grpc-js';
import { readLocalTrace } from '../trace/local.js';
import { manifestMessage } from '../trace/manifest_message.js';
import { redactEnv } from '../trace/redact.js';
import { UserError } from '../trace/user_error.js';
import { call, isServiceError, isTransient, type Clients } from './client.js';
import { BLOB_BUSY_TRAILER, CHUNK_HEADROOM, encodeChunk, encodeChunkInPlace, type ChunkHeader } from './upload_wire.js';
import { Compression, UploadBlobResponse, UploadServiceService, type MissingBlob } from '../gen/rewind/upload/v1/upload.js';

export interface PushProgress {
  /** Blob bytes sent so far (this push), before compression. */
  sent: number;
  /** What those bytes took on the wire. */
  wire: number;
  /** Bytes that had to travel (missing at the first prepare). */
  toSend: number;
  /** Total size of all blobs of the trace. */
  total: number;
}

export interface PushOptions {
  labels?: Record<string, string>;
  chunkSize?: number;
  /** Retries after a broken connection or a rejected chunk; Infinity for an agent. */
  retries?: number;
  /** First backoff delay; doubles up to maxBackoffMs. */
  backoffMs?: number;
  maxBackoffMs?: number;
  onProgress?: (p: PushProgress) => void;
  onRetry?: (err: Error, attempt: number, delayMs: number) => void;
  /**
   * How long to wait in all for blobs that another upload holds (through another server, or one
   * that went away: its claim lapses with its lease) before such a refusal counts as a failure;
   * waiting is not retrying (default 10 minutes; Infinity for an agent).
   */
  busyWaitMs?: number;
  /** Told each time blobs were found held by another upload, before waiting delayMs to ask again. */
  onWait?: (w: { blobs: string[]; waitedMs: number; delayMs: number }) => void;
  /** Compress chunks that shrink (default true); a blob whose first chunks do not shrink is sent raw. */
  compress?: boolean;
  /** Blobs uploaded at once (default 4): many small blobs do not each wait a round trip. */
  parallel?: number;
  /** Check each chunk with sha256 instead of CRC-32. */
  chunkSha256?: boolean;
  /**
   * Push a trace whose recording was cut short (`complete: false`), with the events it holds;
   * the server marks it incomplete. Without this such a trace is refused.
   */
  allowIncomplete?: boolean;
  /**
   * Upload the recorded environment as it is; by default variables named like secrets are
   * redacted (trace/redact.ts). REWIND_TOKEN and rewind tokens are redacted either way.
   */
  keepEnv?: boolean;
  /** Test hook: corrupt the data of the n-th chunk sent (1-based), keeping its declared hash. */
  corruptChunk?: number;
  signal?: AbortSignal;
}

export interface PushResult {
  traceId: string;
  /** Blob bytes that travelled (after compression). */
  bytesSent: number;
  /** Blob bytes sent, before compression. */
  blobBytesSent: number;
  totalBytes: number;
  /** False when the server already had the trace. */
  created: boolean;
  attempts: number;
  /** The trace was cut short (pushed with allowIncomplete). */
  incomplete: boolean;
}

/** A blob refused because another upload (on any server sharing the catalogue) or a removal holds it. */
export function isBlobBusy(err: unknown): boolean {
  return isServiceError(err) && err.code === status.ABORTED && (err.metadata?.get(BLOB_BUSY_TRAILER).length ?? 0) > 0;
}

/** The blobs of an attempt that others held (every other blob was sent): the attempt waits. */
class BlobsBusy extends Error {
  constructor(
    readonly blobs: string[],
    readonly first: unknown,
  ) {
    super((first as Error).message);
  }
}

/** Worth another try: a transient failure, or a chunk refused or an offset moved (ask again). */
export function isRetriable(err: unknown): boolean {
  return isTransient(err) || (isServiceError(err) && (err.code === status.DATA_LOSS || err.code === status.FAILED_PRECONDITION));
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(new UserError('aborted'));
    });
  });

/**
 * Uploads a local trace: only the blobs the server lacks travel, in chunks from the offset the
 * server holds, each chunk with its sha256. After a broken connection or a rejected chunk it asks
 * the server again what is missing and continues from there.
 */
export async function pushTrace(c: Clients, dir: string, opts: PushOptions = {}): Promise<PushResult> {
  const local = await readLocalTrace(dir, { allowIncomplete: opts.allowIncomplete });
  const { files, incomplete } = local;
  const manifest = manifestMessage({ ...local.manifest, env: redactEnv(local.manifest.env, opts.keepEnv) });
  const retries = opts.retries ?? 5;
  let backoff = opts.backoffMs ?? 250;
  const maxBackoff = opts.maxBackoffMs ?? 10_000;
  const busyWaitMs = opts.busyWaitMs ?? 600_000;
  /** Since when blobs have been held by others, attempt after attempt; and the wait before the next. */
  let busySince: number | undefined;
  let busyBackoff = opts.backoffMs ?? 250;
  let failures = 0;
  const progress: PushProgress = { sent: 0, wire: 0, toSend: -1, total: 0 };
  const counter = { chunks: 0 };
  let attempt = 0;
  for (;;) {
    attempt++;
    try {
      const prep = await call(c, c.upload.prepareUpload.bind(c.upload), { manifest });
      progress.total = Number(prep.totalBytes);
      if (progress.toSend < 0) progress.toSend = prep.missing.reduce((a, m) => a + Number(m.size - m.offset), 0);
      opts.onProgress?.(progress);
      if (prep.alreadyCommitted) {
        return { traceId: prep.traceId, bytesSent: progress.wire, blobBytesSent: progress.sent, totalBytes: progress.total, created: false, attempts: attempt, incomplete };
      }
      await sendAll(prep.missing, opts.parallel ?? 4, (m) => sendBlob(c, files.get(m.sha256) ?? path.join(dir, 'blobs', m.sha256), m, opts, progress, counter));
      const res = await call(c, c.upload.commitUpload.bind(c.upload), { manifest, labels: opts.labels ?? {} });
      return { traceId: res.traceId, bytesSent: progress.wire, blobBytesSent: progress.sent, totalBytes: progress.total, created: res.created, attempts: attempt, incomplete };
    } catch (caught) {
      let err = caught;
      if (err instanceof BlobsBusy) {
        // Held by another writer: it finishes the blob (found present next time), or went away
        // and its claim lapses. Waiting for that is no failure of this push.
        const waitedMs = Date.now() - (busySince ??= Date.now());
        if (waitedMs < busyWaitMs && !opts.signal?.aborted) {
          const delayMs = Math.min(busyBackoff, Math.max(busyWaitMs - waitedMs, 1));
          opts.onWait?.({ blobs: err.blobs, waitedMs, delayMs });
          await sleep(delayMs, opts.signal);
          busyBackoff = Math.min(busyBackoff * 2, maxBackoff);
          continue;
        }
        err = err.first;
      } else {
        busySince = undefined;
        busyBackoff = opts.backoffMs ?? 250;
      }
      failures++;
      if (!isRetriable(err) || failures > retries || opts.signal?.aborted) throw err;
      opts.onRetry?.(err as Error, attempt, backoff);
      await sleep(backoff, opts.signal);
      backoff = Math.min(backoff * 2, maxBackoff);
    }
  }
}

/**
 * Runs send over the blobs, `parallel` at a time; after a failure starts no new one and rethrows
 * it. A blob another upload holds is left for later (BlobsBusy once the others are sent).
 */
async function sendAll(missing: MissingBlob[], parallel: number, send: (m: MissingBlob) => Promise<void>): Promise<void> {
  const queue = [...missing];
  let failure: { err: unknown } | undefined;
  const busy: { blobs: string[]; first?: unknown } = { blobs: [] };
  const worker = async (): Promise<void> => {
    for (let m = queue.shift(); m && !failure; m = queue.shift()) {
      try {
        await send(m);
      } catch (err) {
        if (isBlobBusy(err)) {
          busy.blobs.push(m.sha256);
          busy.first ??= err;
        } else {
          failure ??= { err };
        }
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(parallel, queue.length)) }, worker));
  if (failure) throw failure.err;
  if (busy.blobs.length > 0) throw new BlobsBusy(busy.blobs, busy.first);
}

async function sendBlob(
  c: Clients,
  file: string,
  m: MissingBlob,
  opts: PushOptions,
  progress: PushProgress,
  counter: { chunks: number },
): Promise<void> {
  const chunkSize = opts.chunkSize ?? 1 << 20;
  const size = Number(m.size);
  let offset = Number(m.offset);
  let compress = opts.compress ?? true;
  let misses = 0;
  const fh = await fsp.open(file, 'r');
  try {
    // Messages are encoded here (upload_wire.ts) and handed to grpc-js as bytes: each chunk is
    // read from the file right behind the room for its header and never copied on its way.
    let stream!: ClientWritableStream<Buffer>;
    const result = new Promise<UploadBlobResponse>((resolve, reject) => {
      stream = c.upload.makeClientStreamRequest<Buffer, UploadBlobResponse>(
        UploadServiceService.uploadBlob.path,
        (b) => b,
        (b) => UploadBlobResponse.decode(b),
        c.metadata(),
        {},
        (err: ServiceError | null, res?: UploadBlobResponse) => (err ? reject(err) : resolve(res!)),
      );
    });
    let failed = false;
    result.catch(() => {
      failed = true;
    });
    // An empty blob, or one whose bytes the server all holds already (the upload broke between
    // the last byte and the blob being stored): one empty chunk makes the server finish it.
    if (offset >= size) stream.write(encodeChunk({ sha256: m.sha256, size, offset }, Buffer.alloc(0)));
    while (offset < size && !failed) {
      const n = Math.min(chunkSize, size - offset);
      // A fresh buffer per chunk: grpc-js may keep a message (its retry buffer) after the write
      // callback, so a buffer is never reused.
      const buf = Buffer.allocUnsafeSlow(CHUNK_HEADROOM + n);
      const { bytesRead } = await fh.read(buf, CHUNK_HEADROOM, n, offset);
      if (bytesRead !== n) throw new UserError(`blob ${m.sha256} changed while uploading`);
      const chunk = buf.subarray(CHUNK_HEADROOM, CHUNK_HEADROOM + n);
      // A CRC-32 per chunk (cheap); the blob's sha256 is verified by the server at the end.
      const header: ChunkHeader = { sha256: m.sha256, size, offset };
      if (opts.chunkSha256) header.chunkSha256 = createHash('sha256').update(chunk).digest();
      else header.chunkCrc32 = crc32(chunk);
      counter.chunks++;
      if (opts.corruptChunk === counter.chunks) chunk.fill(0x5a, 0, Math.min(16, n));
      let message: Buffer | undefined;
      if (compress) {
        // Try a 16 KiB sample first: incompressible data (most captured files) costs little.
        const sample = chunk.subarray(0, 16 << 10);
        const z = deflateRawSync(sample, { level: 1 }).length < sample.length * 0.9 ? deflateRawSync(chunk, { level: 1 }) : undefined;
        if (z && z.length < n * 0.9) {
          message = encodeChunk({ ...header, compression: Compression.COMPRESSION_DEFLATE }, z);
          progress.wire += z.length;
          misses = 0;
        } else if (++misses >= 4) {
          compress = false;
        }
      }
      if (!message) {
        message = encodeChunkInPlace(buf, CHUNK_HEADROOM, n, header);
        progress.wire += n;
      }
      const ok = stream.write(message);
      offset += n;
      progress.sent += n;
      opts.onProgress?.(progress);
      if (!ok) await new Promise<void>((resolve) => {
        const done = (): void => {
          stream.off('drain', done);
          resolve();
        };
        stream.on('drain', done);
        void result.then(done, done);
      });
    }
    stream.end();
    const res = await result;
    if (!res.complete) {
      const e = new Error(`blob ${m.sha256} incomplete on the server (${res.offset} of ${size} bytes)`) as ServiceError;
      e.code = status.ABORTED;
      e.details = e.message;
      throw e;
    }
  } finally {
    await fh.close();
  }
}
