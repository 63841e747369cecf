// Trace directories as the tests read and tamper with them: the manifest as plain JSON, blobs,
// and the event stream's container format (docs/trace-format.md).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32, deflateSync, inflateSync } from 'node:zlib';

export interface BlobEntry {
  sha256: string;
  size: number;
  role: string;
  path?: string;
}

export interface Manifest {
  format?: string;
  version: number;
  id?: string;
  argv?: string[];
  exit?: { status: number; code: number | null; signal: number | string | null };
  counts?: { events: number; tasks: number; syscalls: number; bytes: number };
  blobs: BlobEntry[];
  [key: string]: unknown;
}

export function readManifest(traceDir: string): Manifest {
  return JSON.parse(readFileSync(join(traceDir, 'manifest.json'), 'utf8')) as Manifest;
}

export function blobPath(traceDir: string, sha256: string): string {
  return join(traceDir, 'blobs', sha256);
}

/** The events blob of a trace. */
export function eventsBlob(traceDir: string): { entry: BlobEntry; path: string } {
  const m = readManifest(traceDir);
  const entry = m.blobs.find((b) => b.role === 'events');
  if (!entry) throw new Error(`no blob with role "events" in ${traceDir}/manifest.json`);
  return { entry, path: blobPath(traceDir, entry.sha256) };
}

export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Total size in bytes of every file under a directory. */
export function dirSize(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirSize(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** Lines of a buffer as text. */
export function lines(b: Buffer): string[] {
  return b.toString('utf8').split('\n').filter((l) => l.length > 0);
}

// ---------------------------------------------------------------------------------------------
// The event stream (native/src/core/event_stream.cc, docs/trace-format.md), parsed just enough
// to tamper with it consistently: "RWEV" u32 version, chunks (32-byte header: magic "CHNK",
// rawLen, compressedLen, count, u64 firstEvent, crc32 of the compressed bytes, reserved) of
// zlib-compressed records (u32 length, u8 type, ...), then "INDX" u32 n, n × {u64 offset,
// u64 firstEvent, u32 count, u32 pad}, then a trailer {u64 indexOffset, "RWEVEND!"}.

const CHUNK_MAGIC = 0x4b4e4843;
const INDEX_MAGIC = 0x58444e49;
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
    const raw = inflateSync(file.subarray(off + 32, off + 32 + compressedLen));
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
    const compressed = deflateSync(raw, { level: 1 });
    const h = Buffer.alloc(32);
    h.writeUInt32LE(CHUNK_MAGIC, 0);
    h.writeUInt32LE(raw.length, 4);
    h.writeUInt32LE(compressed.length, 8);
    h.writeUInt32LE(count, 12);
    h.writeBigUInt64LE(BigInt(next), 16);
    h.writeUInt32LE(crc32(compressed), 24);
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

/** A syscall record's number and arguments (body: type u8, tid u32, nr i32, args 6 × u64, ...). */
export function syscallOf(r: EventRecord): { nr: number; args: bigint[] } {
  if (r.type !== EVENT_TYPES.syscall) throw new Error(`event ${r.index} is not a syscall`);
  const args: bigint[] = [];
  for (let i = 0; i < 6; i++) args.push(r.body.readBigUInt64LE(9 + 8 * i));
  return { nr: r.body.readInt32LE(5), args };
}

export function setSyscallNr(r: EventRecord, nr: number): void {
  if (r.type !== EVENT_TYPES.syscall) throw new Error(`event ${r.index} is not a syscall`);
  r.body.writeInt32LE(nr, 5);
}

/**
 * Replaces a trace's events blob with new content as a consistent trace would hold it: the blob
 * is renamed to its new sha256 and the manifest's entry (sha256, size) is updated.
 */
export function replaceEventsBlob(traceDir: string, content: Buffer): void {
  const manifestPath = join(traceDir, 'manifest.json');
  const m = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const entry = m.blobs.find((b) => b.role === 'events');
  if (!entry) throw new Error(`no events blob in ${manifestPath}`);
  rmSync(blobPath(traceDir, entry.sha256));
  entry.sha256 = sha256(content);
  entry.size = content.length;
  writeFileSync(blobPath(traceDir, entry.sha256), content);
  writeFileSync(manifestPath, `${JSON.stringify(m, null, 2)}\n`);
}

/**
 * The write syscalls a recording still running (or cut short) has flushed to events.partial so
 * far; none while its first chunk is not complete. (The recorder flushes at least every 100 ms.)
 */
export function flushedWrites(traceDir: string): number {
  let stream: EventStream;
  try {
    stream = parseEventStream(readFileSync(join(traceDir, 'events.partial')));
  } catch {
    return 0; // not there yet, or a chunk half written
  }
  return stream.records.filter((r) => r.type === EVENT_TYPES.syscall && syscallOf(r).nr === 1).length;
}
