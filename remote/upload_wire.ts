// Hand-written wire codec for rewind.upload.v1.UploadBlobRequest, the one message that carries
// bulk data. The generated ts-proto code copies `data` twice on encode (into a growing writer,
// then out of it) and once on decode; at hundreds of MB/s those copies (and the page faults of
// their fresh buffers) are a large part of an upload's CPU time. The bytes on the wire are plain
// protobuf: any decoder reads them (the tests check against the generated code).
import { BinaryReader } from '@bufbuild/protobuf/wire';
import type { UploadBlobRequest } from '../gen/rewind/upload/v1/upload.js';

/**
 * Trailer of an UploadBlob refused with ABORTED because another upload (on any server sharing the
 * catalogue) or a removal holds the blob: the client waits for it rather than counting a failure.
 */
export const BLOB_BUSY_TRAILER = 'rewind-blob-busy';

/** Room to leave before a chunk's data for encodeChunkInPlace (the largest possible header). */
export const CHUNK_HEADROOM = 256;

export interface ChunkHeader {
  sha256: string;
  size: number;
  offset: number;
  /** Raw 32 bytes, or empty. */
  chunkSha256?: Uint8Array;
  compression?: number;
  chunkCrc32?: number;
}

function varintLength(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

function putVarint(buf: Buffer, pos: number, v: number): number {
  while (v >= 0x80) {
    buf[pos++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[pos++] = v;
  return pos;
}

function headerLength(h: ChunkHeader, dataLength: number): number {
  let n = 2 + Buffer.byteLength(h.sha256, 'latin1');
  if (h.size !== 0) n += 1 + varintLength(h.size);
  if (h.offset !== 0) n += 1 + varintLength(h.offset);
  if (h.chunkSha256 && h.chunkSha256.length > 0) n += 1 + varintLength(h.chunkSha256.length) + h.chunkSha256.length;
  if (h.compression) n += 1 + varintLength(h.compression);
  if (h.chunkCrc32 !== undefined) n += 1 + varintLength(h.chunkCrc32);
  if (dataLength > 0) n += 1 + varintLength(dataLength);
  return n;
}

/** Writes every field but data's bytes (data goes last: field order is free in protobuf). */
function putHeader(buf: Buffer, pos: number, h: ChunkHeader, dataLength: number): number {
  if (!/^[0-9a-f]*$/.test(h.sha256) || h.sha256.length > 127) throw new Error(`bad sha256 ${JSON.stringify(h.sha256)}`);
  buf[pos++] = 10;
  buf[pos++] = h.sha256.length;
  pos += buf.write(h.sha256, pos, 'latin1');
  if (h.size !== 0) {
    buf[pos++] = 16;
    pos = putVarint(buf, pos, h.size);
  }
  if (h.offset !== 0) {
    buf[pos++] = 24;
    pos = putVarint(buf, pos, h.offset);
  }
  if (h.chunkSha256 && h.chunkSha256.length > 0) {
    buf[pos++] = 42;
    pos = putVarint(buf, pos, h.chunkSha256.length);
    buf.set(h.chunkSha256, pos);
    pos += h.chunkSha256.length;
  }
  if (h.compression) {
    buf[pos++] = 48;
    pos = putVarint(buf, pos, h.compression);
  }
  if (h.chunkCrc32 !== undefined) {
    buf[pos++] = 56;
    pos = putVarint(buf, pos, h.chunkCrc32);
  }
  if (dataLength > 0) {
    buf[pos++] = 34;
    pos = putVarint(buf, pos, dataLength);
  }
  return pos;
}

/**
 * Encodes a chunk whose data already lies in `buf` at [dataStart, dataStart + dataLength),
 * writing the header into the room before it (at least CHUNK_HEADROOM bytes): no copy of the
 * data. Returns the encoded message, a view of `buf`.
 */
export function encodeChunkInPlace(buf: Buffer, dataStart: number, dataLength: number, h: ChunkHeader): Buffer {
  const start = dataStart - headerLength(h, dataLength);
  if (start < 0) throw new Error('not enough room before the chunk for its header');
  const end = putHeader(buf, start, h, dataLength);
  if (end !== dataStart) throw new Error('chunk header length mismatch');
  return buf.subarray(start, dataStart + dataLength);
}

/** Encodes a chunk with its data in a buffer of its own (one copy). */
export function encodeChunk(h: ChunkHeader, data: Uint8Array): Buffer {
  const n = headerLength(h, data.length);
  const buf = Buffer.allocUnsafe(n + data.length);
  putHeader(buf, 0, h, data.length);
  buf.set(data, n);
  return buf;
}

/** Decodes an UploadBlobRequest; `data` and `chunkSha256` are views of `input`, not copies. */
export function decodeUploadBlobRequest(input: Uint8Array): UploadBlobRequest {
  const view = (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const reader = new BinaryReader(input);
  const m: UploadBlobRequest = { sha256: '', size: 0n, offset: 0n, data: Buffer.alloc(0), chunkSha256: Buffer.alloc(0), compression: 0, chunkCrc32: undefined };
  while (reader.pos < reader.len) {
    const tag = reader.uint32();
    switch (tag) {
      case 10:
        m.sha256 = reader.string();
        continue;
      case 16:
        m.size = BigInt(reader.uint64());
        continue;
      case 24:
        m.offset = BigInt(reader.uint64());
        continue;
      case 34:
        m.data = view(reader.bytes());
        continue;
      case 42:
        m.chunkSha256 = view(reader.bytes());
        continue;
      case 48:
        m.compression = reader.int32();
        continue;
      case 56:
        m.chunkCrc32 = reader.uint32();
        continue;
    }
    if ((tag & 7) === 4 || tag === 0) break;
    reader.skip(tag & 7);
  }
  return m;
}
