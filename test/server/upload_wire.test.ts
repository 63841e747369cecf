// The hand-written codec of UploadBlobRequest (remote/upload_wire.ts) against the generated
// ts-proto code: both must read each other's bytes exactly.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushTrace } from '../../remote/upload.js';
import { CHUNK_HEADROOM, decodeUploadBlobRequest, encodeChunk, encodeChunkInPlace, type ChunkHeader } from '../../remote/upload_wire.js';
import { UploadBlobRequest } from '../../gen/rewind/upload/v1/upload.js';
import { makeTrace, sha256, startTestServer, type TestServer } from './helpers.js';

const SHA = 'ab'.repeat(32);
const headers: ChunkHeader[] = [
  { sha256: SHA, size: 0, offset: 0 },
  { sha256: SHA, size: 1, offset: 0, chunkCrc32: 0 },
  { sha256: SHA, size: 5 * 2 ** 32 + 7, offset: 2 ** 40 + 3, chunkCrc32: 0xffffffff },
  { sha256: SHA, size: 300, offset: 127, chunkSha256: randomBytes(32), compression: 1 },
  { sha256: SHA, size: 2 ** 53 - 1, offset: 2 ** 53 - 2, chunkCrc32: 128 },
];

function expected(h: ChunkHeader, data: Buffer): UploadBlobRequest {
  return {
    sha256: h.sha256,
    size: BigInt(h.size),
    offset: BigInt(h.offset),
    data,
    chunkSha256: Buffer.from(h.chunkSha256 ?? []),
    compression: h.compression ?? 0,
    chunkCrc32: h.chunkCrc32,
  };
}

describe('UploadBlobRequest wire codec', () => {
  it('the generated decoder reads what encodeChunk and encodeChunkInPlace write', () => {
    for (const h of headers) {
      for (const data of [Buffer.alloc(0), randomBytes(1), randomBytes(200), randomBytes(70_000)]) {
        expect(UploadBlobRequest.decode(encodeChunk(h, data))).toEqual(expected(h, data));
        const buf = Buffer.alloc(CHUNK_HEADROOM + data.length, 0xee);
        data.copy(buf, CHUNK_HEADROOM);
        const msg = encodeChunkInPlace(buf, CHUNK_HEADROOM, data.length, h);
        expect(msg.buffer).toBe(buf.buffer); // not copied
        expect(UploadBlobRequest.decode(msg)).toEqual(expected(h, data));
      }
    }
  });

  it('decodeUploadBlobRequest reads what the generated encoder writes, without copying data', () => {
    for (const h of headers) {
      const data = randomBytes(4096);
      const bytes = Buffer.from(UploadBlobRequest.encode(expected(h, data)).finish());
      const m = decodeUploadBlobRequest(bytes);
      expect(m).toEqual(expected(h, data));
      expect(m.data.buffer).toBe(bytes.buffer);
    }
    // Unknown fields are skipped.
    const withUnknown = Buffer.concat([Buffer.from([0x78, 0x05, 0x82, 0x01, 0x02, 0x61, 0x62]), encodeChunk(headers[2]!, Buffer.from('xyz'))]);
    expect(decodeUploadBlobRequest(withUnknown)).toEqual(expected(headers[2]!, Buffer.from('xyz')));
  });

  it('refuses a header that does not fit the room left for it', () => {
    expect(() => encodeChunkInPlace(Buffer.alloc(10), 5, 5, headers[2]!)).toThrow(/not enough room/);
  });
});

describe('pushTrace over the hand-written codec', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer();
  });
  afterAll(async () => {
    await ts.close();
  });

  it('a blob whose bytes the server all holds, unfinished (killed before storing it), is finished on the next push', async () => {
    const agent = ts.client(await ts.token('agent'));
    const data = randomBytes(600_000);
    const t = makeTrace({ blobs: [{ data, role: 'events' }] });
    const sha = sha256(data);
    // What a server killed between the last byte and storing the blob leaves behind.
    fs.writeFileSync(path.join(ts.dataDir, 'blobs', '.partial', sha), data);
    const res = await pushTrace(agent, t.dir, { retries: 0 });
    expect(res.created).toBe(true);
    expect(res.blobBytesSent).toBe(0);
    const stored = path.join(ts.dataDir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha);
    expect(fs.readFileSync(stored).equals(data)).toBe(true);
    expect(fs.existsSync(path.join(ts.dataDir, 'blobs', '.partial', sha))).toBe(false);
  });

  it('with chunk_sha256 instead of CRC-32, a corrupted chunk is rejected and re-sent', async () => {
    const agent = ts.client(await ts.token('agent'));
    const t = makeTrace({ blobs: [{ data: randomBytes(3 << 20), role: 'events' }] });
    const retries: string[] = [];
    const res = await pushTrace(agent, t.dir, { chunkSha256: true, corruptChunk: 2, backoffMs: 10, onRetry: (e) => retries.push(e.message) });
    expect(retries).toHaveLength(1);
    expect(retries[0]).toMatch(/does not match its sha256; re-send it/);
    expect(res.created).toBe(true);
    expect(ts.server.stats.chunksRejected).toBe(1);
  });
});
