import { UploadServiceService } from '../../gen/rewind/upload/v1/upload.js';
import { inflateRawSync } from 'node:zlib';
import { status, type ServerReadableStream } from '@grpc/grpc-js';
import type { BlobStore, BlobWriter } from '../blobstore/blobstore.js';
import { BlobWriteError } from '../blobstore/blobstore.js';
import { SHA256_HEX } from '../../trace/ids.js';
import type { Catalog } from '../catalog/catalog.js';
import type { UploadQuota } from '../quota.js';
import { RpcError, invalidArgument } from '../errors.js';
import { distinctBlobs, type Manifest } from '../../trace/manifest.js';
import { manifestFromMessage, type ManifestMessage } from '../../trace/manifest_message.js';
import { redactEnv } from '../../trace/redact.js';
import { RefusedRequest } from '../request_limits.js';
import { clientStream, unary, type AuthDeps, type RpcContext } from '../rpc.js';
import type { ServerStats } from '../stats.js';
import type {
  CommitUploadRequest,
  CommitUploadResponse,
  MissingBlob,
  PrepareUploadRequest,
  PrepareUploadResponse,
  UploadBlobRequest,
  UploadBlobResponse,
  UploadServiceServer,
} from '../../gen/rewind/upload/v1/upload.js';
import { Compression } from '../../gen/rewind/upload/v1/upload.js';

export interface UploadDeps extends AuthDeps {
  catalog: Catalog;
  store: BlobStore;
  stats: ServerStats;
  quota: UploadQuota;
}

export const MAX_CHUNK = 4 << 20;

/** The manifest of an upload, checked; a trace cut short must bring its event stream. */
function uploadedManifest(msg: ManifestMessage | undefined): Manifest {
  if (!msg) throw invalidArgument('the request carries no manifest');
  const m = manifestFromMessage(msg, 'server');
  if (!m.complete && !m.blobs.some((b) => b.role === 'events')) {
    throw invalidArgument('an incomplete trace (its recording was cut short) must carry the events it holds as a blob with role "events"');
  }
  return m;
}

const MAX_LABELS = 64;

/** Labels of a trace or a job: a few short key=value pairs (each listing page carries them). */
export function validateLabels(labels: Record<string, string>): Record<string, string> {
  const n = Object.keys(labels).length;
  if (n > MAX_LABELS) throw invalidArgument(`too many labels (${n}): at most ${MAX_LABELS}`);
  for (const [k, v] of Object.entries(labels)) {
    if (!/^[A-Za-z0-9_.\-/]{1,128}$/.test(k)) throw invalidArgument(`bad label key ${JSON.stringify(k)}: use letters, digits, _ . - / (at most 128)`);
    if (v.length > 1024) throw invalidArgument(`label ${k} is longer than 1024 characters`);
  }
  return labels;
}

export function uploadService(deps: UploadDeps): UploadServiceServer {
  const { catalog, store, stats } = deps;
  return {
    prepareUpload: unary<PrepareUploadRequest, PrepareUploadResponse>(deps, UploadServiceService.prepareUpload, async (req, ctx) => {
      const m = uploadedManifest(req.manifest);
      const blobs = distinctBlobs(m);
      let total = 0n;
      let present = 0n;
      for (const s of blobs.values()) total += BigInt(s);
      if (await catalog.traces.has(m.id)) {
        return { traceId: m.id, missing: [], totalBytes: total, presentBytes: total, alreadyCommitted: true };
      }
      await deps.quota.checkTrace(ctx.token, blobs);
      const missing: MissingBlob[] = [];
      for (const [sha, size] of blobs) {
        if (await catalog.blobs.has(sha)) {
          present += BigInt(size);
        } else {
          const held = Math.min(await store.partialSize(sha), size);
          missing.push({ sha256: sha, size: BigInt(size), offset: BigInt(held) });
        }
      }
      return { traceId: m.id, missing, totalBytes: total, presentBytes: present, alreadyCommitted: false };
    }),

    uploadBlob: clientStream<UploadBlobRequest, UploadBlobResponse>(deps, UploadServiceService.uploadBlob, (call, ctx) => receiveBlob(call, ctx, deps)),

    commitUpload: unary<CommitUploadRequest, CommitUploadResponse>(deps, UploadServiceService.commitUpload, async (req, ctx) => {
      const m = uploadedManifest(req.manifest);
      const labels = validateLabels(req.labels);
      // Defence in depth, for a client that did not redact: no rewind token enters the catalogue.
      const stored = { ...m, env: redactEnv(m.env, true) };
      const created = await catalog.traces.commit({ manifest: stored, manifestJson: JSON.stringify(stored), labels, tokenId: ctx.token.id });
      if (created) {
        stats.tracesCommitted++;
        ctx.log.info({ trace: m.id, host: m.host.hostname, token: ctx.token.name }, 'trace committed');
      }
      return { traceId: m.id, created };
    }),
  };
}

/** One blob per stream: chunks must arrive in order starting at the offset the server holds. */
function receiveBlob(call: ServerReadableStream<UploadBlobRequest, UploadBlobResponse>, ctx: RpcContext, deps: UploadDeps): Promise<UploadBlobResponse> {
  const { catalog, store, stats, quota } = deps;
  const { token } = ctx;
  return new Promise((resolve, reject) => {
    let writer: BlobWriter | undefined;
    /** This stream's claim on the blob in the catalogue: no other server writes it meanwhile. */
    let claim: string | undefined;
    let sha = '';
    let size = 0;
    let settled = false;
    let chain: Promise<void> = Promise.resolve();
    let pending = 0;

    const fail = (err: unknown): void => {
      if (settled) return;
      settled = true;
      call.removeAllListeners('data');
      // Keep what was written for a resume, once the write in flight (if any) is done; the client
      // hears of the failure after that, so the prepare it sends next sees every byte held.
      void chain
        .then(() => writer?.close())
        .then(release)
        .finally(() => reject(err));
    };
    /** Gives up the claim once the writer's parts are all stored (so the next writer sees them). */
    const release = async (): Promise<void> => {
      if (claim === undefined) return;
      const c = claim;
      claim = undefined;
      // Not released, the claim holds the blob until this server stops (its lease then lapses).
      await catalog.blobs.release(sha, c).catch((err: unknown) => ctx.log.warn({ err, blob: sha }, 'releasing the claim on a blob failed'));
    };
    const done = (res: UploadBlobResponse): void => {
      if (settled) return;
      settled = true;
      resolve(res);
    };

    const handle = async (msg: UploadBlobRequest | RefusedRequest): Promise<void> => {
      if (settled) return;
      if (msg instanceof RefusedRequest) throw new RpcError(msg.code, msg.details); // it did not decode
      if (!writer) {
        sha = msg.sha256;
        if (!SHA256_HEX.test(sha)) throw invalidArgument(`bad blob sha256 ${JSON.stringify(sha)}`);
        quota.checkBlobSize(msg.size, sha);
        size = Number(msg.size);
        if (await catalog.blobs.has(sha)) {
          call.removeAllListeners('data');
          done({ sha256: sha, offset: BigInt(size), complete: true });
          return;
        }
        await quota.begin(token, sha, size, Math.min(Number(msg.offset), size));
        // One writer of a blob across the servers on this catalogue (and one store): another
        // server's upload of it, or a sweep removing it, makes this one wait (ABORTED: retry).
        claim = await catalog.blobs.claim(sha);
        if (claim === undefined) throw new BlobWriteError('busy', `blob ${sha} is being uploaded (or removed) by another server; try again`, 0);
        if (await catalog.blobs.has(sha)) {
          // Stored by the writer that held the claim before.
          call.removeAllListeners('data');
          await release();
          done({ sha256: sha, offset: BigInt(size), complete: true });
          return;
        }
        writer = await store.openWriter(sha, size, Number(msg.offset));
      }
      if (msg.sha256 !== sha || Number(msg.size) !== size) throw invalidArgument('one UploadBlob stream carries one blob');
      if (Number(msg.offset) !== writer.offset) {
        throw new RpcError(status.FAILED_PRECONDITION, `chunk offset ${msg.offset} does not match: server holds ${writer.offset} bytes of ${sha}`);
      }
      if (msg.data.length > MAX_CHUNK) throw invalidArgument(`chunk larger than ${MAX_CHUNK} bytes`);
      const wire = msg.data.length;
      let data: Uint8Array = msg.data;
      if (msg.compression === Compression.COMPRESSION_DEFLATE) {
        try {
          data = inflateRawSync(msg.data, { maxOutputLength: MAX_CHUNK });
        } catch (err) {
          stats.chunksRejected++;
          throw new RpcError(status.DATA_LOSS, `chunk at offset ${msg.offset} of blob ${sha} does not inflate: ${(err as Error).message}`);
        }
      } else if (msg.compression !== Compression.COMPRESSION_UNSPECIFIED) {
        throw invalidArgument(`unknown chunk compression ${msg.compression}`);
      }
      const decoded = data.length;
      // The write thread checks the chunk against its sha256 / CRC-32 before writing it; a
      // mismatch (DATA_LOSS) surfaces here or at a later write or finish. May detach data's buffer.
      try {
        await writer.write(data, { crc32: msg.chunkCrc32, sha256: msg.chunkSha256 });
      } catch (err) {
        if (err instanceof BlobWriteError && err.kind === 'chunk') stats.chunksRejected++;
        throw err;
      }
      stats.bytesReceived += wire;
      stats.blobBytesReceived += decoded;
    };

    call.on('data', (msg: UploadBlobRequest | RefusedRequest) => {
      pending++;
      if (pending > 8) call.pause();
      chain = chain
        .then(() => handle(msg))
        .catch(fail)
        .finally(() => {
          pending--;
          if (pending <= 2) call.resume();
        });
    });
    call.on('end', () => {
      chain = chain
        .then(async () => {
          if (settled) return;
          if (!writer) throw invalidArgument('empty UploadBlob stream');
          if (writer.offset === size) {
            try {
              await writer.finish();
            } catch (err) {
              // A chunk refused by its check, or the whole blob by its sha256.
              if (err instanceof BlobWriteError && (err.kind === 'chunk' || err.kind === 'hash')) stats.chunksRejected++;
              throw err;
            }
            await catalog.blobs.add(sha, size);
            await release();
            stats.blobsCompleted++;
            done({ sha256: sha, offset: BigInt(size), complete: true });
          } else {
            const offset = writer.offset;
            await writer.close();
            await release();
            done({ sha256: sha, offset: BigInt(offset), complete: false });
          }
        })
        .catch(fail);
    });
    call.on('error', fail);
    call.on('cancelled', () => fail(new RpcError(status.CANCELLED, 'cancelled')));
  });
}
