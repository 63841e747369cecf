import type { Logger } from 'pino';
import type { BlobStore } from './blobstore/blobstore.js';
import type { Catalog } from './catalog/catalog.js';

export interface SweepResult {
  blobsRemoved: number;
  bytesFreed: number;
  partialsRemoved: number;
}

/**
 * Removes from the store a blob whose catalogue row is gone (no trace references it), under a
 * claim, so that no upload of it runs meanwhile on any server sharing the store. A blob an upload
 * holds or brought back stays: while claimed elsewhere its row is entered again (swept later if
 * still unreferenced), so the store never keeps a blob the catalogue forgot. True when removed.
 */
export async function removeBlob(catalog: Catalog, store: BlobStore, blob: { sha256: string; size: number }): Promise<boolean> {
  const claim = await catalog.blobs.claim(blob.sha256);
  if (claim === undefined) {
    await catalog.blobs.add(blob.sha256, blob.size);
    return false;
  }
  try {
    if (await catalog.blobs.has(blob.sha256)) return false;
    await store.delete(blob.sha256);
    return true;
  } finally {
    await catalog.blobs.release(blob.sha256, claim);
  }
}

/**
 * Removes what failed uploads leave behind: complete blobs no committed trace references,
 * stored more than `blobTtlMs` ago, and unfinished partial uploads untouched for `partialTtlMs`.
 */
export async function sweep(catalog: Catalog, store: BlobStore, blobTtlMs: number, partialTtlMs: number, log?: Logger): Promise<SweepResult> {
  const res: SweepResult = { blobsRemoved: 0, bytesFreed: 0, partialsRemoved: 0 };
  for (const b of await catalog.blobs.takeOrphans(Date.now() - blobTtlMs)) {
    if (!(await removeBlob(catalog, store, b))) continue;
    res.blobsRemoved++;
    res.bytesFreed += b.size;
  }
  res.partialsRemoved = await store.sweepPartials(partialTtlMs);
  if (res.blobsRemoved || res.partialsRemoved) log?.info(res, 'removed leftovers of unfinished uploads');
  return res;
}
