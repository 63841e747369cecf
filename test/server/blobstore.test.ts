// The blob stores: one suite run against the disk store and the S3 store (on a real
// S3-compatible server, OpenStack Swift: test/support/s3_server.ts), then what only one of them
// has: the disk store's write threads (chunk buffers may be moved there), the S3 store's cache.
import { createHash, randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeleteObjectCommand, ListMultipartUploadsCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import { BlobWriteError, type BlobStore } from '../../server/blobstore/blobstore.js';
import { DiskBlobStore } from '../../server/blobstore/disk.js';
import { S3BlobStore } from '../../server/blobstore/s3.js';
import { s3SkipReason, startS3Server, type S3Server } from '../support/s3_server.js';
import { tmpDir, until } from './helpers.js';

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
});

const MIB = 1 << 20;
/** S3's smallest part: a blob of three parts is sent in tests of a few seconds. */
const PART = 5 * MIB;

interface Backend {
  name: string;
  /** Whether an upload cut short keeps every byte written (disk) or whole parts only (S3). */
  exact: boolean;
  open(): Promise<BlobStore>;
  /** The same data in a new store instance, as after a restart of the server (and of the store). */
  restart(s: BlobStore): Promise<BlobStore>;
}

const open: BlobStore[] = [];
afterAll(async () => {
  for (const s of open.splice(0)) await s.close?.();
});

const disk: Backend = {
  name: 'disk',
  exact: true,
  open: async () => {
    const s = new DiskBlobStore(path.join(tmpDir('rewind-blobs-'), 'blobs'));
    open.push(s);
    return s;
  },
  restart: async (s) => {
    await s.close?.();
    const again = new DiskBlobStore((s as DiskBlobStore).root);
    open.push(again);
    return again;
  },
};

const s3Skip = s3SkipReason();
let swift: S3Server | undefined;
beforeAll(async () => {
  if (!s3Skip) swift = await startS3Server();
}, 300_000);
afterAll(async () => {
  await swift?.stop();
});
function s3Store(prefix: string, cacheBytes = 256 * MIB): S3BlobStore {
  const s = new S3BlobStore({ client: swift!.client(), bucket: swift!.bucket, prefix, cacheDir: path.join(tmpDir('rewind-cache-'), 'c'), cacheBytes, partSize: PART });
  open.push(s);
  return s;
}
let prefixes = 0;
const s3: Backend = {
  name: 's3',
  exact: false,
  open: async () => s3Store(`t${++prefixes}/`),
  restart: async (s) => {
    await s.close?.();
    await swift!.restart();
    return s3Store((s as S3BlobStore).prefix);
  },
};

/** The stored blob, as a replay session gets it. */
async function stored(s: BlobStore, h: string): Promise<Buffer> {
  const dest = path.join(tmpDir('rewind-got-'), h);
  await s.materialize(h, dest);
  return fs.readFileSync(dest);
}

async function writeRange(s: BlobStore, blob: Buffer, from: number, to: number, chunk = MIB): Promise<void> {
  const w = await s.openWriter(sha(blob), blob.length, from);
  for (let off = from; off < to; off += chunk) await w.write(Buffer.from(blob.subarray(off, Math.min(to, off + chunk))));
  if (to === blob.length) await w.finish();
  else w.close();
}

describe.each([
  { b: disk, skip: false },
  { b: s3, skip: Boolean(s3Skip) },
])('blob store: $b.name', ({ b, skip }) => {
  it.skipIf(skip)('stores exactly the blob from chunks of any size; it is released once stored', async () => {
    const s = await b.open();
    const blob = randomBytes(2 * PART + 3 * MIB + 12345);
    const h = sha(blob);
    const w = await s.openWriter(h, blob.length, 0);
    for (let off = 0, i = 0; off < blob.length; i++) {
      const n = Math.min(blob.length - off, [100, 70_001, MIB, 4 * MIB - 1][i % 4]!);
      await w.write(Buffer.from(blob.subarray(off, (off += n))));
    }
    expect(s.isBusy(h)).toBe(true);
    await w.finish();
    expect(s.isBusy(h)).toBe(false);
    expect(await s.has(h)).toBe(true);
    expect((await stored(s, h)).equals(blob)).toBe(true);
    // Small blobs and an empty one.
    for (const small of [randomBytes(1000), Buffer.alloc(0)]) {
      await writeRange(s, small, 0, small.length);
      expect((await stored(s, sha(small))).equals(small)).toBe(true);
    }
  });

  it.skipIf(skip)('resumes after a dropped writer from what the store holds; a reopen waits for writes in flight', async () => {
    const s = await b.open();
    const blob = randomBytes(2 * PART + 3 * MIB);
    const h = sha(blob);
    const written = 2 * PART + MIB;
    const w1 = await s.openWriter(h, blob.length, 0);
    for (let off = 0; off < written; off += MIB) await w1.write(Buffer.from(blob.subarray(off, off + MIB)));
    w1.close();
    await expect(w1.write(Buffer.alloc(1))).rejects.toThrow(/closed/);
    const held = await s.partialSize(h);
    expect(held).toBe(b.exact ? written : 2 * PART);
    await expect(s.openWriter(h, blob.length, held + 1)).rejects.toThrow(`server holds ${held} bytes`);
    await writeRange(s, blob, held, blob.length);
    expect((await stored(s, h)).equals(blob)).toBe(true);
    expect(await s.partialSize(h)).toBe(0);
  });

  it.skipIf(skip)('resumes after a restart of the server and the store (nothing in memory survives); a resumed blob is verified', async () => {
    let s = await b.open();
    const blob = randomBytes(2 * PART + 2 * MIB);
    const h = sha(blob);
    // The writer is never closed: its server died.
    const w = await s.openWriter(h, blob.length, 0);
    for (let off = 0; off < PART + 2 * MIB; off += MIB) await w.write(Buffer.from(blob.subarray(off, off + MIB)));
    // Once the store holds some of it (S3: the first part).
    await until('a part stored', async () => (await s.partialSize(h)) >= (b.exact ? PART + 2 * MIB : PART));
    s = await b.restart(s);
    const held = await s.partialSize(h);
    expect(held).toBe(b.exact ? PART + 2 * MIB : PART);
    await writeRange(s, blob, held, blob.length);
    expect(await s.has(h)).toBe(true);
    expect((await stored(s, h)).equals(blob)).toBe(true);

    // A resumed upload whose bytes do not match their name is refused (S3: after reading it back).
    const bad = randomBytes(2 * PART + MIB);
    const h2 = sha(randomBytes(10));
    const w2 = await s.openWriter(h2, bad.length, 0);
    for (let off = 0; off < 2 * PART; off += MIB) await w2.write(Buffer.from(bad.subarray(off, off + MIB)));
    w2.close();
    const held2 = await s.partialSize(h2);
    expect(held2).toBeGreaterThan(0);
    const w3 = await s.openWriter(h2, bad.length, held2);
    for (let off = held2; off < bad.length; off += MIB) await w3.write(Buffer.from(bad.subarray(off, Math.min(bad.length, off + MIB))));
    const err = await w3.finish().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BlobWriteError);
    expect((err as BlobWriteError).kind).toBe('hash');
    expect(await s.has(h2)).toBe(false);
    expect(await s.partialSize(h2)).toBe(0);
  });

  it.skipIf(skip)('a chunk that does not match its check is not stored, nor anything after it; the upload resumes from what is held', async () => {
    const s = await b.open();
    const blob = randomBytes(2 * PART + 2 * MIB);
    const h = sha(blob);
    const chunk = (i: number): Buffer => Buffer.from(blob.subarray(i * MIB, (i + 1) * MIB));
    const n = blob.length / MIB;
    const at = PART / MIB + 2; // the damaged chunk, inside the second part
    const w = await s.openWriter(h, blob.length, 0);
    for (let i = 0; i < at; i++) await w.write(chunk(i), i % 2 ? { crc32: crc32(chunk(i)) } : { sha256: createHash('sha256').update(chunk(i)).digest() });
    const damaged = chunk(at);
    const check = crc32(damaged);
    damaged[12345]! ^= 0x40;
    const results = await Promise.allSettled([
      w.write(damaged, { crc32: check }),
      ...Array.from({ length: n - at - 1 }, (_, k) => w.write(chunk(at + 1 + k), { crc32: crc32(chunk(at + 1 + k)) })),
    ]);
    const finish = await w.finish().catch((e: unknown) => e);
    const err = [...results.map((r) => (r.status === 'rejected' ? (r.reason as unknown) : undefined)), finish].find((e) => e !== undefined);
    expect(err).toBeInstanceOf(BlobWriteError);
    expect((err as BlobWriteError).kind).toBe('chunk');
    expect((err as BlobWriteError).message).toBe(`chunk at offset ${at * MIB} of blob ${h} does not match its CRC-32; re-send it`);
    w.close();
    const held = await s.partialSize(h);
    expect(held).toBe(b.exact ? at * MIB : PART);
    const w2 = await s.openWriter(h, blob.length, held);
    for (let i = held / MIB; i < n; i++) await w2.write(chunk(i), { crc32: crc32(chunk(i)) });
    await w2.finish();
    expect((await stored(s, h)).equals(blob)).toBe(true);
  });

  it.skipIf(skip)('a wrong offset, an oversized blob and a wrong hash are refused; a bad blob is not stored and can be sent again', async () => {
    const s = await b.open();
    for (const size of [200_000, 2 * PART + 100_000]) {
      const blob = randomBytes(size);
      const h = sha(blob);
      await expect(s.openWriter(h, blob.length, 5)).rejects.toThrow(/offset 5 does not match: server holds 0 bytes/);
      const w = await s.openWriter(h, blob.length, 0);
      const tooLarge = await w.write(Buffer.alloc(blob.length + 1)).catch((e: unknown) => e);
      expect(tooLarge).toBeInstanceOf(BlobWriteError);
      expect((tooLarge as BlobWriteError).kind).toBe('too-large');
      const bad = Buffer.from(blob);
      bad[150_000]! ^= 1;
      for (let off = 0; off < bad.length; off += MIB) await w.write(Buffer.from(bad.subarray(off, off + MIB)));
      const err = await w.finish().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(BlobWriteError);
      expect((err as BlobWriteError).kind).toBe('hash');
      expect(await s.has(h)).toBe(false);
      expect(await s.partialSize(h)).toBe(0);
      await writeRange(s, blob, 0, blob.length);
      expect((await stored(s, h)).equals(blob)).toBe(true);
    }
  });

  it.skipIf(skip)('one writer per blob: a second is refused as busy until the first is closed', async () => {
    const s = await b.open();
    const blob = randomBytes(2 * PART + MIB);
    const h = sha(blob);
    const w = await s.openWriter(h, blob.length, 0);
    await w.write(Buffer.from(blob.subarray(0, PART + MIB)));
    const busy = await s.openWriter(h, blob.length, 0).catch((e: unknown) => e);
    expect(busy).toBeInstanceOf(BlobWriteError);
    expect((busy as BlobWriteError).kind).toBe('busy');
    expect(s.isBusy(h)).toBe(true);
    w.close();
    const held = await s.partialSize(h);
    const w2 = await s.openWriter(h, blob.length, held);
    w2.close();
  });

  it.skipIf(skip)('delete removes a blob; sweepPartials removes stale unfinished uploads, never one being written', async () => {
    const s = await b.open();
    const blob = randomBytes(PART + MIB);
    const h = sha(blob);
    await writeRange(s, blob, 0, blob.length);
    expect(await s.has(h)).toBe(true);
    await stored(s, h); // cached (S3)
    await s.delete(h);
    expect(await s.has(h)).toBe(false);
    await expect(stored(s, h)).rejects.toThrow();
    await s.delete(h); // absent: a no-op

    const stale = randomBytes(2 * PART + MIB);
    const live = randomBytes(2 * PART + MIB);
    await writeRange(s, stale, 0, PART + MIB);
    const w = await s.openWriter(sha(live), live.length, 0);
    await w.write(Buffer.from(live.subarray(0, PART + MIB)));
    expect(await s.partialSize(sha(stale))).toBeGreaterThan(0);
    expect(await s.sweepPartials(60_000)).toBe(0); // nothing is a minute old
    // Everything not being written, even if touched "in the future" (S3 stores round times up to seconds).
    expect(await s.sweepPartials(-2000)).toBe(1);
    expect(await s.partialSize(sha(stale))).toBe(0);
    await w.write(Buffer.from(live.subarray(PART + MIB)));
    await w.finish();
    expect((await stored(s, sha(live))).equals(live)).toBe(true);
  });
});

describe.skipIf(Boolean(s3Skip))('S3BlobStore', () => {
  it('materialises into a cache bounded in bytes (least recently used go first), verified, one download for concurrent requests', async () => {
    const writer = await s3.open();
    const s = s3Store((writer as S3BlobStore).prefix, 3 * MIB + 1000);
    const blobs = [randomBytes(MIB), randomBytes(MIB), randomBytes(MIB), randomBytes(MIB)];
    for (const b of blobs) await writeRange(writer, b, 0, b.length);
    let gets = 0;
    s.client.middlewareStack.add(
      (next, ctx) => async (args) => {
        if (ctx.commandName === 'GetObjectCommand') gets++;
        return next(args);
      },
      { step: 'initialize' },
    );
    // Three sessions of one trace at once: one download.
    const dir = tmpDir('rewind-sessions-');
    await Promise.all([0, 1, 2].map((i) => s.materialize(sha(blobs[0]!), path.join(dir, `a${i}`))));
    expect(gets).toBe(1);
    for (let i = 0; i < 3; i++) expect(fs.readFileSync(path.join(dir, `a${i}`)).equals(blobs[0]!)).toBe(true);
    await s.materialize(sha(blobs[1]!), path.join(dir, 'b'));
    await s.materialize(sha(blobs[2]!), path.join(dir, 'c'));
    await s.materialize(sha(blobs[0]!), path.join(dir, 'a3')); // used again: now the newest
    expect(gets).toBe(3);
    await s.materialize(sha(blobs[3]!), path.join(dir, 'd')); // over the bound: blob 1 goes
    expect(s.cache.size).toBeLessThanOrEqual(3 * MIB + 1000);
    expect(s.cache.has(sha(blobs[1]!))).toBe(false);
    expect(s.cache.has(sha(blobs[0]!))).toBe(true);
    // A session keeps its copy after eviction.
    expect(fs.readFileSync(path.join(dir, 'b')).equals(blobs[1]!)).toBe(true);
    await s.materialize(sha(blobs[1]!), path.join(dir, 'b2'));
    expect(gets).toBe(5);

    // A blob altered in the store is refused, not cached.
    const evil = randomBytes(1000);
    await s.client.send(new PutObjectCommand({ Bucket: s.bucket, Key: s.keyOf(sha(blobs[2]!)), Body: evil }));
    await s.cache.remove(sha(blobs[2]!));
    await expect(s.materialize(sha(blobs[2]!), path.join(dir, 'c2'))).rejects.toThrow(/does not match its sha256/);
    expect(fs.existsSync(path.join(dir, 'c2'))).toBe(false);
    await s.client.send(new DeleteObjectCommand({ Bucket: s.bucket, Key: s.keyOf(sha(blobs[2]!)) }));
  });

  it('reuses part buffers only once their part is stored: blobs written at once, and one after another, read back exactly', async () => {
    const s = (await s3.open()) as S3BlobStore;
    const blobs = [0, 1, 2].map(() => randomBytes(4 * PART + 333));
    const write = async (blob: Buffer): Promise<void> => {
      const w = await s.openWriter(sha(blob), blob.length, 0);
      for (let off = 0; off < blob.length; off += MIB) await w.write(Buffer.from(blob.subarray(off, off + MIB)));
      await w.finish();
    };
    await Promise.all(blobs.slice(0, 2).map(write));
    await write(blobs[2]!);
    for (const b of blobs) expect((await stored(s, sha(b))).equals(b)).toBe(true);
  });

  it('a blob over one part goes through one multipart upload, aborted when its hash is wrong', async () => {
    const s = (await s3.open()) as S3BlobStore;
    const blob = randomBytes(2 * PART + 1);
    const w = await s.openWriter(sha(randomBytes(1)), blob.length, 0);
    for (let off = 0; off < blob.length; off += MIB) await w.write(Buffer.from(blob.subarray(off, off + MIB)));
    await expect(w.finish()).rejects.toThrow(/does not match its sha256/);
    const r = await s.client.send(new ListMultipartUploadsCommand({ Bucket: s.bucket, Prefix: s.prefix }));
    expect(r.Uploads ?? []).toEqual([]);
  });
});
