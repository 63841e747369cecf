import fs from 'node:fs/promises';
import path from 'node:path';
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
 * stored more than `blobTtlMs` ago, and unfinished partial files untouched for `partialTtlMs`.
 */
export async function sweep(
  catalog: Catalog,
  store: BlobStore & { isBusy?: (sha: string) => boolean },
  partialDir: string | undefined,
  blobTtlMs: number,
  partialTtlMs: number,
  log?: Logger,
): Promise<SweepResult> {
  const res: SweepResult = { blobsRemoved: 0, bytesFreed: 0, partialsRemoved: 0 };
  for (const b of catalog.takeOrphanBlobs(Date.now() - blobTtlMs)) {
    if (catalog.hasBlob(b.sha256) || store.isBusy?.(b.sha256)) continue;
    await store.delete(b.sha256);
    res.blobsRemoved++;
    res.bytesFreed += b.size;
  }
  if (partialDir) {
    let names: string[] = [];
    try {
      names = await fs.readdir(partialDir);
    } catch {
      // no partial uploads
    }
    for (const n of names) {
      if (store.isBusy?.(n)) continue;
      const p = path.join(partialDir, n);
      try {
        const st = await fs.stat(p);
        if (Date.now() - st.mtimeMs > partialTtlMs) {
          await fs.rm(p, { force: true });
          res.partialsRemoved++;
        }
      } catch {
        // gone meanwhile
      }
    }
  }
  if (res.blobsRemoved || res.partialsRemoved) log?.info(res, 'removed leftovers of unfinished uploads');
  return res;
}
