// The event stream (native/src/core/event_stream.cc, docs/trace-format.md), parsed just enough
// to tamper with it consistently. Shared by the test suites (test/support/traces.ts) and the
// hostile-trace bench, which is compiled with the product and so cannot import the tests.
import { deflateSync, inflateSync } from 'node:zlib';
import { loadEngine } from '../native/index.js';

// The layout: "RWEV" u32 version, chunks (32-byte header: magic "CHNK",
// rawLen, compressedLen, count, u64 firstEvent, check of the compressed bytes, codec) of
// compressed records (u32 length, u8 type, ...), then "INDX" u32 n, n × {u64 offset,
// u64 firstEvent, u32 count, u32 pad}, then a trailer {u64 indexOffset, "RWEVEND!"}.

const CHUNK_MAGIC = 0x4b4e4843;
const INDEX_MAGIC = 0x58444e49;
/** Chunks are zstd (codec 1) from stream version 4 on, zlib (0) before; Node 20 has no zstd, the engine does. */
const zstdSince = 4;
export const EVENT_TYPES = { exec: 1, syscall: 2, signal: 3, rdtsc: 4, exit: 5, run: 6, preempt: 7 } as const;

export interface EventRecord {
  /** Index of the event in the whole stream (0-based). */
  index: number;
  type: number;
  /** The encoded record without its length prefix (type byte first). */
  body: Buffer;
}

export interface EventStream {
  version: number;
  records: EventRecord[];
  /** Events per chunk, to write the stream back with the same chunking. */
  chunkCounts: number[];
}

function formatError(why: string): Error {
  return new Error(`test harness cannot parse the event stream (${why}); has the format changed? see docs/trace-format.md`);
}

export function parseEventStream(file: Buffer): EventStream {
  if (file.length < 8 || file.toString('latin1', 0, 4) !== 'RWEV') throw formatError('no RWEV magic');
  const version = file.readUInt32LE(4);
  const records: EventRecord[] = [];
  const chunkCounts: number[] = [];
  let off = 8;
  while (off + 4 <= file.length) {
    const magic = file.readUInt32LE(off);
    if (magic === INDEX_MAGIC) break;
    if (magic !== CHUNK_MAGIC) throw formatError(`bad chunk magic at ${off}`);
    const rawLen = file.readUInt32LE(off + 4);
    const compressedLen = file.readUInt32LE(off + 8);
    const count = file.readUInt32LE(off + 12);
    const compressed = file.subarray(off + 32, off + 32 + compressedLen);
    const raw = version >= zstdSince ? loadEngine().zstdDecompress(compressed, rawLen) : inflateSync(compressed);
    if (raw.length !== rawLen) throw formatError(`chunk at ${off} inflates to ${raw.length}, header says ${rawLen}`);
    let p = 0;
    for (let i = 0; i < count; i++) {
      const len = raw.readUInt32LE(p);
      const body = Buffer.from(raw.subarray(p + 4, p + 4 + len));
      records.push({ index: records.length, type: body.readUInt8(0), body });
      p += 4 + len;
    }
    if (p !== raw.length) throw formatError(`chunk at ${off} has trailing bytes`);
    chunkCounts.push(count);
    off += 32 + compressedLen;
  }
  return { version, records, chunkCounts };
}

export function encodeEventStream(s: EventStream): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(8);
  head.write('RWEV', 0, 'latin1');
  head.writeUInt32LE(s.version, 4);
  parts.push(head);
  let offset = 8;
  const index: { offset: number; first: number; count: number }[] = [];
  let next = 0;
  for (const count of s.chunkCounts) {
    const recs = s.records.slice(next, next + count);
    const raw = Buffer.concat(
      recs.flatMap((r) => {
        const len = Buffer.alloc(4);
        len.writeUInt32LE(r.body.length);
        return [len, r.body];
      }),
    );
    const compressed = s.version >= zstdSince ? loadEngine().zstdCompress(raw) : deflateSync(raw, { level: 1 });
    const h = Buffer.alloc(32);
    h.writeUInt32LE(CHUNK_MAGIC, 0);
    h.writeUInt32LE(raw.length, 4);
    h.writeUInt32LE(compressed.length, 8);
    h.writeUInt32LE(count, 12);
    h.writeBigUInt64LE(BigInt(next), 16);
    h.writeUInt32LE(loadEngine().chunkCheck(compressed, s.version), 24);
    h.writeUInt32LE(s.version >= zstdSince ? 1 : 0, 28);
    parts.push(h, compressed);
    index.push({ offset, first: next, count });
    offset += 32 + compressed.length;
    next += count;
  }
  const ih = Buffer.alloc(8);
  ih.writeUInt32LE(INDEX_MAGIC, 0);
  ih.writeUInt32LE(index.length, 4);
  parts.push(ih);
  for (const e of index) {
    const b = Buffer.alloc(24);
    b.writeBigUInt64LE(BigInt(e.offset), 0);
    b.writeBigUInt64LE(BigInt(e.first), 8);
    b.writeUInt32LE(e.count, 16);
    parts.push(b);
  }
  const trailer = Buffer.alloc(16);
  trailer.writeBigUInt64LE(BigInt(offset), 0);
  trailer.write('RWEVEND!', 8, 'latin1');
  parts.push(trailer);
  return Buffer.concat(parts);
}

