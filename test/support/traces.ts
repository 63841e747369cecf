// Trace directories as the tests read and tamper with them: the manifest as plain JSON, blobs,
// and the event stream's container format (docs/trace-format.md).
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

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

// The event stream's container format: one codec for the suites and the hostile-trace bench.
export { EVENT_TYPES, encodeEventStream, parseEventStream, type EventRecord, type EventStream } from '../../bench/event_stream.js';
import { EVENT_TYPES, encodeEventStream, parseEventStream, type EventRecord, type EventStream } from '../../bench/event_stream.js';

/** A syscall record's number and arguments (body: type u8, tid u32, nr i32, args 6 × u64, ...). */
export function syscallOf(r: EventRecord): { nr: number; args: bigint[] } {
  if (r.type !== EVENT_TYPES.syscall) throw new Error(`event ${r.index} is not a syscall`);
  const args: bigint[] = [];
  for (let i = 0; i < 6; i++) args.push(r.body.readBigUInt64LE(9 + 8 * i));
  return { nr: r.body.readInt32LE(5), args };
}

// A syscall record: type u8, tid u32, nr i32, 6 × u64 args, i64 result, u8 echo, u32 n writes,
// n × {u64 address, u32 length, data}, string blob, u64 hash of the data sent, u32 child, u8
// filtered, u64 shared file, u64 its size, u32 n file writes, n × {u64 offset, u32 length, data}
// (docs/trace-format.md).
/** Where the data of a syscall record's first write starts. */
export const FIRST_WRITE_DATA = 1 + 4 + 4 + 48 + 8 + 1 + 4 + 8 + 4;
/** From the hash of the data sent to the end of a record that changes no shared file. */
export const FROM_SENT_HASH = 8 + 4 + 1 + 8 + 8 + 4;

export function syscallResult(r: EventRecord): bigint {
  return r.body.readBigInt64LE(57);
}

/** The first syscall record of number `nr` that `test` accepts. */
export function findSyscall(records: EventRecord[], nr: number, test: (args: bigint[], r: EventRecord) => boolean): EventRecord {
  const found = records.find((r) => r.type === EVENT_TYPES.syscall && syscallOf(r).nr === nr && test(syscallOf(r).args, r));
  if (!found) throw new Error(`no syscall ${nr} record as wanted in the trace`);
  return found;
}

/** Runs the stream of a trace through `change` and puts it back as a consistent trace. */
export function tamperEvents(traceDir: string, change: (records: EventRecord[]) => EventRecord): EventRecord {
  const stream = parseEventStream(readFileSync(eventsBlob(traceDir).path));
  const target = change(stream.records);
  replaceEventsBlob(traceDir, encodeEventStream(stream));
  return target;
}

/** Where a syscall record's blob field (the captured file of an mmap) lies: after its writes. */
export function syscallBlobField(r: EventRecord): { start: number; end: number } {
  if (r.type !== EVENT_TYPES.syscall) throw new Error(`event ${r.index} is not a syscall`);
  let at = 9 + 48 + 8 + 1; // tid, nr, args, result, echo
  const writes = r.body.readUInt32LE(at);
  at += 4;
  for (let i = 0; i < writes; i++) at += 8 + 4 + r.body.readUInt32LE(at + 8);
  return { start: at, end: at + 4 + r.body.readUInt32LE(at) };
}

/** Where a syscall record's `filtered` byte is: after the blob, `sent` (u64) and `child` (u32). */
export function filteredOffset(r: EventRecord): number {
  return syscallBlobField(r).end + 8 + 4;
}

export function filteredOf(r: EventRecord): number {
  return r.body.readUInt8(filteredOffset(r));
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
