import path from 'node:path';
import type { BlobStore } from './blobstore.js';
import { DiskBlobStore } from './disk.js';

export interface BlobStoreOptions {
  /** s3://BUCKET/PREFIX; without it, blobs are kept in DATA/blobs. */
  blobs?: string;
  s3Endpoint?: string;
  /** Bound of DATA/blob-cache, where blobs fetched from S3 are kept for replay. */
  blobCacheBytes?: number;
}

/** The blob store the options name; the S3 SDK is loaded only for an S3 store. */
export async function openBlobStore(dataDir: string, opts: BlobStoreOptions): Promise<BlobStore> {
  if (opts.blobs === undefined) return new DiskBlobStore(path.join(dataDir, 'blobs'));
  const { S3BlobStore } = await import('./s3.js');
  return S3BlobStore.open(opts.blobs, {
    endpoint: opts.s3Endpoint,
    cacheDir: path.join(dataDir, 'blob-cache'),
    cacheBytes: opts.blobCacheBytes ?? 10 * 2 ** 30,
  });
}
