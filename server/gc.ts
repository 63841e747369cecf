import type { Logger } from 'pino';
import type { BlobStore } from './blobstore/blobstore.js';
import type { Catalog } from './catalog/catalog.js';

export interface SweepResult {
  blobsRemoved: number;
  bytesFreed: number;
  partialsRemoved: number;
}

/**
 * Removes what failed uploads leave behind: complete blobs no committed trace references,
 * stored more than `blobTtlMs` ago, and unfinished partial uploads untouched for `partialTtlMs`.
 */
export async function sweep(catalog: Catalog, store: BlobStore, blobTtlMs: number, partialTtlMs: number, log?: Logger): Promise<SweepResult> {
  const res: SweepResult = { blobsRemoved: 0, bytesFreed: 0, partialsRemoved: 0 };
  for (const b of await catalog.blobs.takeOrphans(Date.now() - blobTtlMs)) {
    if ((await catalog.blobs.has(b.sha256)) || store.isBusy(b.sha256)) continue;
    await store.delete(b.sha256);
    res.blobsRemoved++;
    res.bytesFreed += b.size;
  }
  res.partialsRemoved = await store.sweepPartials(partialTtlMs);
  if (res.blobsRemoved || res.partialsRemoved) log?.info(res, 'removed leftovers of unfinished uploads');
  return res;
}
