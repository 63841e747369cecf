// The disk blob store on its own: writes and hashes go through write threads, chunk buffers may
// be moved there; whatever shape the chunks have, the stored bytes must be exactly the blob.
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlobWriteError } from '../../server/blobstore/blobstore.js';
import { DiskBlobStore } from '../../server/blobstore/disk.js';
import { tmpDir } from './helpers.js';

const stores: DiskBlobStore[] = [];
function store(): DiskBlobStore {
  const s = new DiskBlobStore(path.join(tmpDir('rewind-blobs-'), 'blobs'));
  stores.push(s);
  return s;
}
afterAll(async () => {
  for (const s of stores) await s.close();
});
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('DiskBlobStore', () => {
  it('stores exactly the blob whatever the chunks are: pooled views, views into big buffers, own buffers', async () => {
    const s = store();
    const blob = randomBytes((3 << 20) + 12345);
    const w = await s.openWriter(sha(blob), blob.length, 0);
    let off = 0;
    const take = (n: number): Uint8Array => blob.subarray(off, (off += n));
    // A small Buffer from the shared pool (a view of an 8 KiB ArrayBuffer).
    const small = Buffer.from(take(100));
    expect(small.buffer.byteLength).toBeGreaterThan(small.length);
    await w.write(small);
    // A view in the middle of a buffer much larger than itself: must be copied, not moved.
    const big = Buffer.alloc(4 << 20, 7);
    const piece = take(1 << 20);
    Buffer.from(piece).copy(big, 1000);
    const view = big.subarray(1000, 1000 + piece.length);
    await w.write(view);
    expect(big.buffer.byteLength).toBe(4 << 20); // not detached
    // A chunk that owns its buffer (like a decoded gRPC message): moved to the write thread.
    const own = Buffer.alloc((1 << 20) + 90);
    Buffer.from(take(1 << 20)).copy(own, 90);
    const ownView = own.subarray(90);
    await w.write(ownView);
    expect(own.buffer.byteLength).toBe(0); // detached: it was moved, not copied
    // The rest in odd sizes.
    while (off < blob.length) await w.write(Buffer.from(take(Math.min(blob.length - off, 70_001))));
    expect(s.isBusy(sha(blob))).toBe(true);
    await w.finish();
    // Released as soon as it is stored (a DeleteTrace right after the commit must not skip it).
    expect(s.isBusy(sha(blob))).toBe(false);
    expect(fs.readFileSync(s.pathOf(sha(blob))).equals(blob)).toBe(true);
  });

  it('resumes a partial blob (hashing what it holds) after close; a reopen waits for queued writes', async () => {
    const s = store();
    const blob = randomBytes(5 << 20);
    const h = sha(blob);
    const w1 = await s.openWriter(h, blob.length, 0);
    for (let i = 0; i < 3; i++) await w1.write(Buffer.from(blob.subarray(i << 20, (i + 1) << 20)));
    w1.close();
    await expect(w1.write(Buffer.alloc(1))).rejects.toThrow(/closed/);
    // Reopened at once: the store waits until the first writer's bytes are all on disk.
    const w2 = await s.openWriter(h, blob.length, 3 << 20);
    expect(await s.partialSize(h)).toBe(3 << 20);
    await w2.write(Buffer.from(blob.subarray(3 << 20)));
    await w2.finish();
    expect(fs.readFileSync(s.pathOf(h)).equals(blob)).toBe(true);
  });

  it('a chunk that does not match its check is not written, nor anything queued after it; the upload resumes there', async () => {
    const s = store();
    const blob = randomBytes(6 << 20);
    const h = sha(blob);
    const chunk = (i: number): Buffer => Buffer.from(blob.subarray(i << 20, (i + 1) << 20));
    const w = await s.openWriter(h, blob.length, 0);
    await w.write(chunk(0), { crc32: crc32(chunk(0)) });
    await w.write(chunk(1), { sha256: createHash('sha256').update(chunk(1)).digest() });
    // Chunk 2 arrives damaged (its check was computed on the right bytes); 3 to 5 are queued behind it.
    const damaged = chunk(2);
    const check = crc32(damaged);
    damaged[12345]! ^= 0x40;
    const results = await Promise.allSettled([
      w.write(damaged, { crc32: check }),
      w.write(chunk(3), { crc32: crc32(chunk(3)) }),
      w.write(chunk(4)),
      w.write(chunk(5)),
    ]);
    const finish = await w.finish().catch((e: unknown) => e);
    const err = [...results.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : undefined)), finish].find((e) => e !== undefined);
    expect(err).toBeInstanceOf(BlobWriteError);
    expect((err as BlobWriteError).kind).toBe('chunk');
    expect((err as BlobWriteError).message).toBe(`chunk at offset ${2 << 20} of blob ${h} does not match its CRC-32; re-send it`);
    expect(await s.partialSize(h)).toBe(2 << 20);
    const w2 = await s.openWriter(h, blob.length, 2 << 20);
    for (let i = 2; i < 6; i++) await w2.write(chunk(i), { crc32: crc32(chunk(i)) });
    await w2.finish();
    expect(fs.readFileSync(s.pathOf(h)).equals(blob)).toBe(true);
  });

  it('a wrong offset, an oversized blob and a wrong hash are refused; a bad blob is not published', async () => {
    const s = store();
    const blob = randomBytes(200_000);
    const h = sha(blob);
    await expect(s.openWriter(h, blob.length, 5)).rejects.toThrow(/offset 5 does not match: server holds 0 bytes/);
    const w = await s.openWriter(h, blob.length, 0);
    await expect(s.openWriter(h, blob.length, 0)).rejects.toThrow(/being uploaded by another stream/);
    await expect(w.write(Buffer.alloc(blob.length + 1))).rejects.toBeInstanceOf(BlobWriteError);
    const bad = Buffer.from(blob);
    bad[150_000]! ^= 1;
    await w.write(bad);
    const err = await w.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobWriteError);
    expect((err as BlobWriteError).kind).toBe('hash');
    expect(fs.existsSync(s.pathOf(h))).toBe(false);
    expect(await s.partialSize(h)).toBe(0);
    // The blob can be uploaded again from the start.
    const again = await s.openWriter(h, blob.length, 0);
    await again.write(Buffer.from(blob));
    await again.finish();
    expect(fs.readFileSync(s.pathOf(h)).equals(blob)).toBe(true);
  });
});
