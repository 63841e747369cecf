// What one token may store: the traces it committed, plus the blobs it is uploading or uploaded
// without committing a trace that names them yet. The second part lives in memory (a restart
// forgets it; those leftovers expire: docs/api.md, "Storage").
import { status } from '@grpc/grpc-js';
import type { BlobStore } from './blobstore/blobstore.js';
import type { Catalog, TokenRow } from './catalog/catalog.js';
import { invalidArgument, RpcError } from './errors.js';
import { formatBytes } from '../trace/format.js';

export interface UploadLimits {
  /** The largest blob the server takes. */
  maxBlobBytes: number;
  /** Bytes a token may store (0: no quota). */
  quotaBytes: number;
}

export const DEFAULT_UPLOAD_LIMITS: UploadLimits = { maxBlobBytes: 64 * 2 ** 30, quotaBytes: 1024 * 2 ** 30 };

export class UploadQuota {
  /** Per token: blobs begun (sha256 → size) that no committed trace references yet. */
  private readonly pending = new Map<string, Map<string, number>>();

  constructor(
    private readonly catalog: Catalog,
    private readonly store: BlobStore,
    readonly limits: UploadLimits,
  ) {}

  checkBlobSize(size: number | bigint, sha256: string): void {
    if (size > this.limits.maxBlobBytes) {
      throw invalidArgument(`blob ${sha256} of ${size} bytes is larger than this server takes (${this.limits.maxBlobBytes} bytes)`);
    }
  }

  /** Refuses a trace that would take the token past its quota (its blobs begun already count once). */
  async checkTrace(token: TokenRow, blobs: Map<string, number>): Promise<void> {
    let bytes = 0;
    for (const [sha, size] of blobs) {
      this.checkBlobSize(size, sha);
      if (!this.pending.get(token.id)?.has(sha)) bytes += size;
    }
    await this.check(token, bytes);
  }

  /** Throws RESOURCE_EXHAUSTED when `bytes` more would take the token past its quota. */
  private async check(token: TokenRow, bytes: number): Promise<void> {
    const quota = this.limits.quotaBytes;
    if (quota <= 0 || token.role === 'admin') return;
    const used = (await this.catalog.traces.bytesUploadedBy(token.id)) + (await this.pendingBytes(token.id));
    if (used + bytes > quota) {
      throw new RpcError(
        status.RESOURCE_EXHAUSTED,
        `upload quota of token ${token.name} exceeded: it stores ${formatBytes(used)} of ${formatBytes(quota)}, and this needs ${formatBytes(bytes)} more; ask an admin to delete traces or raise --upload-quota`,
      );
    }
  }

  /** A blob the token starts (or resumes) uploading: counted until a trace names it or it is gone. */
  async begin(token: TokenRow, sha256: string, size: number, offset: number): Promise<void> {
    const mine = this.pending.get(token.id);
    if (!mine?.has(sha256)) await this.check(token, size - offset);
    if (!mine) this.pending.set(token.id, new Map([[sha256, size]]));
    else mine.set(sha256, size);
  }

  private async pendingBytes(tokenId: string): Promise<number> {
    const mine = this.pending.get(tokenId);
    if (!mine) return 0;
    let total = 0;
    for (const [sha, size] of mine) {
      const gone = !(await this.catalog.blobs.has(sha)) && !this.store.isBusy(sha) && (await this.store.partialSize(sha)) === 0;
      if (gone || (await this.catalog.blobs.isReferenced(sha))) mine.delete(sha);
      else total += size;
    }
    if (mine.size === 0) this.pending.delete(tokenId);
    return total;
  }
}
