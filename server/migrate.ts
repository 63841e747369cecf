// `rewind server migrate`: moves a single-machine server's catalogue (DATA/catalog.sqlite) and
// blobs (DATA/blobs) to the shared stores several servers use (docs/deploy.md). It only adds to
// the target and can be run again: what the target holds is skipped, a blob cut off half-way
// resumes from what the store holds, and the source's traces, tokens and blobs stay as they are.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { DiskBlobStore } from './blobstore/disk.js';
import type { BlobStore } from './blobstore/blobstore.js';
import { openBlobStore } from './blobstore/open.js';
import { openCatalog, SqliteCatalog, type Catalog, type NewTrace, type RoleName, type StoredToken } from './catalog/catalog.js';
import { parseManifest } from '../trace/manifest.js';
import { UserError } from '../trace/user_error.js';

export interface MigrateOptions {
  /** The data directory of the server whose catalogue and blobs move (that server stopped). */
  from: string;
  /** The target catalogue (postgres://… or a SQLite file); default: the source's own (only blobs move). */
  catalog?: string;
  /** The target blob store (s3://BUCKET/PREFIX); default: the source's own (only the catalogue moves). */
  blobs?: string;
  s3Endpoint?: string;
  /** Called as blobs are copied and traces committed. */
  progress?: (p: MigrateProgress) => void;
}

export interface MigrateProgress {
  step: 'blobs' | 'traces';
  done: number;
  total: number;
  /** Bytes copied so far (blobs). */
  bytes?: number;
}

export interface MigrateSummary {
  blobs: { total: number; copied: number; bytesCopied: number };
  tokens: { total: number; added: number };
  traces: { total: number; added: number };
}

/** Bytes read from a source blob per write into the target. */
const CHUNK = 8 << 20;
/** Traces committed per transaction. */
const BATCH = 200;

interface SourceTrace {
  id: string;
  labels: string;
  manifest: string;
  uploaded_ms: number;
  token_id: string;
}

export async function migrate(opts: MigrateOptions): Promise<MigrateSummary> {
  const from = path.resolve(opts.from);
  const file = path.join(from, 'catalog.sqlite');
  if (!fs.existsSync(file)) throw new UserError(`${from} has no catalog.sqlite: not the data directory of a rewind server`);
  if (!opts.catalog && !opts.blobs) throw new UserError('say where to: --catalog postgres://… and/or --blobs s3://…');
  // Brings an older server's schema up to date (as starting that server would), then reads it.
  await new SqliteCatalog(file).close();
  const source = new Database(file, { readonly: true, fileMustExist: true });
  const sourceBlobs = new DiskBlobStore(path.join(from, 'blobs'));
  let target: Catalog | undefined;
  let store: BlobStore | undefined;
  // The S3 store's read cache, which a migration does not use, goes here rather than into the source.
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-migrate-'));
  try {
    const blobs = source.prepare('SELECT sha256, size FROM blobs WHERE refcount > 0 ORDER BY sha256').all() as { sha256: string; size: number }[];
    for (const b of blobs) {
      if (!fs.existsSync(sourceBlobs.pathOf(b.sha256))) throw new UserError(`blob ${b.sha256} is in the catalogue but not in ${path.join(from, 'blobs')}: the source is damaged`);
    }
    const summary: MigrateSummary = { blobs: { total: blobs.length, copied: 0, bytesCopied: 0 }, tokens: { total: 0, added: 0 }, traces: { total: 0, added: 0 } };
    if (opts.blobs) {
      store = await openBlobStore(scratch, { blobs: opts.blobs, s3Endpoint: opts.s3Endpoint });
      for (const [i, b] of blobs.entries()) {
        if (!(await store.has(b.sha256))) {
          summary.blobs.bytesCopied += await copyBlob(sourceBlobs.pathOf(b.sha256), b, store);
          summary.blobs.copied++;
        }
        opts.progress?.({ step: 'blobs', done: i + 1, total: blobs.length, bytes: summary.blobs.bytesCopied });
      }
    }
    if (opts.catalog) {
      target = await openCatalog(from, opts.catalog);
      // Every token keeps working: the same ids and the same hashes of the same secrets.
      const tokens = (source.prepare('SELECT id, name, role, hash, created_ms, revoked_ms FROM tokens').all() as RawStored[]).map(toStored);
      summary.tokens = { total: tokens.length, added: await target.tokens.addStored(tokens) };
      const created = source.prepare("SELECT value FROM meta WHERE key = 'admin_token_created'").get() as { value: string } | undefined;
      if (created) await target.meta.setOnce('admin_token_created', created.value);
      for (const b of blobs) await target.blobs.add(b.sha256, b.size);
      const total = (source.prepare('SELECT count(*) AS n FROM traces').get() as { n: number }).n;
      summary.traces.total = total;
      let batch: NewTrace[] = [];
      let done = 0;
      const flush = async (): Promise<void> => {
        summary.traces.added += await target!.traces.commitMany(batch);
        done += batch.length;
        batch = [];
        opts.progress?.({ step: 'traces', done, total });
      };
      for (const t of source.prepare('SELECT id, labels, manifest, uploaded_ms, token_id FROM traces ORDER BY rowid').iterate() as IterableIterator<SourceTrace>) {
        batch.push({
          manifest: parseManifest(t.manifest, `trace ${t.id} of the source catalogue`),
          manifestJson: t.manifest,
          labels: JSON.parse(t.labels) as Record<string, string>,
          tokenId: t.token_id,
          uploadedMs: t.uploaded_ms,
        });
        if (batch.length === BATCH) await flush();
      }
      if (batch.length > 0) await flush();
    }
    return summary;
  } finally {
    source.close();
    await sourceBlobs.close();
    await store?.close?.();
    await target?.close();
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}

interface RawStored {
  id: string;
  name: string;
  role: RoleName;
  hash: string;
  created_ms: number;
  revoked_ms: number | null;
}

const toStored = (r: RawStored): StoredToken => ({ id: r.id, name: r.name, role: r.role, hash: r.hash, createdMs: r.created_ms, revokedMs: r.revoked_ms });

/** Copies one blob into the store, from what it holds of it already; returns the bytes sent. */
async function copyBlob(file: string, b: { sha256: string; size: number }, store: BlobStore): Promise<number> {
  const start = await store.partialSize(b.sha256);
  const writer = await store.openWriter(b.sha256, b.size, start);
  const fh = await fsp.open(file, 'r');
  try {
    for (let offset = start; offset < b.size; ) {
      const chunk = Buffer.allocUnsafe(Math.min(CHUNK, b.size - offset));
      const { bytesRead } = await fh.read(chunk, 0, chunk.length, offset);
      if (bytesRead === 0) throw new UserError(`blob ${b.sha256} in the source is shorter than its ${b.size} bytes`);
      await writer.write(bytesRead === chunk.length ? chunk : chunk.subarray(0, bytesRead));
      offset += bytesRead;
    }
    await writer.finish(); // verifies the sha256: a damaged source blob is refused here
    return b.size - start;
  } finally {
    await writer.close();
    await fh.close();
  }
}
