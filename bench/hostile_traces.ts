// Hostile traces (issue 11, acceptance 1): real recordings mutated (names, sizes, offsets,
// counts, every field of every record type, the stream's container, the manifest, blob bytes),
// each uploaded to a real server and replayed in its sandboxed worker, while the invariants are
// watched: health checks answered throughout, no worker past its memory bound, no canary file's
// content in any output, no INTERNAL or UNAVAILABLE answer, and at the end a catalogue that
// passes PRAGMA integrity_check and whose first traces still list and replay as before.
//
// test/server/hostile_fuzz.test.ts runs a CI-sized batch (a new seed each run);
// `node dist/bench/hostile_traces.js [--count N] [--seed S]` runs more (default 10000).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { status, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { EVENT_TYPES, encodeEventStream, parseEventStream, type EventRecord, type EventStream } from './event_stream.js';
import { call, connect, isServiceError, type Clients } from '../remote/client.js';
import { pushTrace } from '../remote/upload.js';
import { openRemoteDebugBridge } from '../remote/debug_bridge.js';
import { stubPath } from '../native/index.js';
import { ManifestError } from '../trace/manifest.js';
import { startServer } from '../server/server.js';
import { ListTracesRequest, type ListTracesResponse } from '../gen/rewind/catalog/v1/catalog.js';
import type { RunReplayResponse } from '../gen/rewind/replay/v1/replay.js';
import { Manifest as ManifestMessage } from '../gen/rewind/trace/v1/manifest.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = fs.existsSync(path.join(here, '..', 'package.json')) ? path.resolve(here, '..') : path.resolve(here, '..', '..');
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');

/** The recordings mutated: together they hold every record type. */
const BASES: { fixture: string; args: (dir: string) => string[] }[] = [
  { fixture: 'syscall_zoo', args: (dir) => [dir] }, // exec, syscalls with writes and file blobs, exit
  { fixture: 'rdtsc', args: () => [] }, // rdtsc
  { fixture: 'signal_rounds', args: () => [] }, // signals, preempt and run
  { fixture: 'sparse_small', args: (dir) => [dir] }, // sparse file blobs, a file and a memfd
];

const MEMORY_BOUND = 512 << 20;

/** The mutated manifest as the API's message, when its types allow (a size of "x" or 2^70 has none). */
function representable(raw: Record<string, unknown>): ManifestMessage | undefined {
  try {
    const msg = ManifestMessage.fromJSON(raw);
    ManifestMessage.encode(msg).finish();
    return msg;
  } catch {
    return undefined;
  }
}

export interface HostileOptions {
  count: number;
  seed: number;
  /**
   * Run mutations `from`..`count - 1` of the seed only (default 0): the earlier ones are made, to
   * bring the generator where it was, but not run. A long run split in parts, or resumed after
   * the mutation it reached, meets the same mutations as one run.
   */
  from?: number;
  /**
   * Mutations in flight at once (default 4): a mutation waits on its upload's round trips and
   * its worker's start as much as it computes, so more than one per core keeps both busy.
   */
  parallel?: number;
  /**
   * Every this many mutations (and at the end), the expensive checks: PRAGMA integrity_check and
   * the first traces listed and replayed byte for byte (default 500). The cheap ones (the
   * mutant's own answers, a first trace still served by GetTrace) run for every mutation.
   */
  checkEvery?: number;
  /** Only the recordings of these fixtures (default: all of BASES), to focus a run. */
  fixtures?: string[];
  /** Called with each progress line and each failure, as they happen. */
  log?: (line: string) => void;
}

export interface HostileReport {
  seed: number;
  mutations: number;
  refusedAtUpload: number;
  replayed: number;
  /** How uploads and replays ended: `upload:CODE`, `exit:N`, `replay:CODE`. */
  outcomes: Record<string, number>;
  /** How replays that failed said so: their last line, numbers and hex digits elided. */
  messages: Record<string, number>;
  /** Broken invariants, each with the mutation that broke it. */
  failures: string[];
  healthChecks: number;
  healthMaxMs: number;
  /** The most the event loop's thread ran during one health check (ms on a CPU). */
  healthMaxCpuMs: number;
  /** Confined replay workers whose whole view of the file system was looked at, from outside. */
  viewsChecked: number;
  /** Largest resident set of any process of a replay worker's sandbox. */
  maxWorkerRssBytes: number;
  memoryBoundBytes: number;
  integrity: string;
  /** The traces uploaded first still list and replay byte for byte as before the batch (at every full check). */
  originalsIntact: boolean;
  /** Full checks made (integrity and the first traces), the last after the final mutation. */
  fullChecks: number;
  ms: number;
  /** Where the time went, summed over the mutations (ms): set-up, upload, replay, delete, checks. */
  phaseMs: Record<string, number>;
}

interface Blob {
  sha256: string;
  size: number;
  role: string;
  path?: string;
}

export interface Base {
  dir: string;
  manifest: Record<string, unknown> & { blobs: Blob[] };
  events: EventStream;
}

export interface Mutant {
  what: string;
  manifest: Record<string, unknown> & { blobs: Blob[] };
  /** Blobs that differ from the base's: sha256 → bytes. */
  fresh: Map<string, Buffer>;
}

/** mulberry32: a small seeded generator, so a failing batch can be run again. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function flipBit(b: Buffer, at: number, bit: number): void {
  b.writeUInt8(b.readUInt8(at) ^ (1 << bit), at);
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

// ---------------------------------------------------------------------------------------------
// Fields of the records (docs/trace-format.md, "Records")

type Field = { off: number; kind: 'int'; size: 1 | 4 | 8 } | { off: number; kind: 'len' } | { off: number; kind: 'name' } | { off: number; kind: 'data'; len: number };

/** Every field of a record body, in order: integers, lengths and counts, names, data. */
function fieldsOf(body: Buffer): Field[] {
  const f: Field[] = [];
  let p = 1;
  const int = (size: 1 | 4 | 8, times = 1): void => {
    for (let i = 0; i < times; i++, p += size) f.push({ off: p, kind: 'int', size });
  };
  const count = (): number => {
    const n = body.readUInt32LE(p);
    f.push({ off: p, kind: 'len' });
    p += 4;
    return n;
  };
  const bytes = (kind: 'name' | 'data'): void => {
    const at = p;
    const n = count();
    f.push(kind === 'name' ? { off: at, kind } : { off: p, kind, len: n });
    p += n;
  };
  try {
    switch (body[0]) {
      case EVENT_TYPES.exec:
        int(4);
        bytes('name');
        bytes('data');
        for (let n = count(); n > 0; n--) {
          int(8, 2);
          int(4);
          int(1);
          int(8);
          bytes('name');
          bytes('name');
        }
        bytes('name');
        bytes('data');
        int(8);
        int(4);
        break;
      case EVENT_TYPES.syscall:
        int(4, 2);
        int(8, 7);
        int(1);
        for (let n = count(); n > 0; n--) {
          int(8);
          bytes('data');
        }
        bytes('name');
        int(8);
        break;
      case EVENT_TYPES.signal:
        int(4, 2);
        int(1);
        bytes('data');
        break;
      case EVENT_TYPES.rdtsc:
        int(4);
        int(8, 4);
        int(1);
        break;
      case EVENT_TYPES.exit:
        int(4, 2);
        break;
      case EVENT_TYPES.run:
        int(4);
        break;
      case EVENT_TYPES.preempt:
        int(4);
        bytes('data');
        int(8);
        for (let n = count(); n > 0; n--) int(8, 2);
        break;
    }
  } catch {
    // a body shorter than its fields say: mutate what was found
  }
  return f.filter((x) => x.off < body.length);
}

// ---------------------------------------------------------------------------------------------
// Mutations

class Mutator {
  constructor(
    private readonly r: () => number,
    private readonly hostileNames: string[],
  ) {}

  int(max: number): number {
    return Math.floor(this.r() * max);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }

  private u32(old: number): number {
    return this.pick([0, 1, old + 1, old - 1 >>> 0, 0x7fffffff, 0x80000000, 0xffffffff, 1 << 24, this.int(2 ** 32)]) >>> 0;
  }

  private u64(old: bigint): bigint {
    const v = this.pick([0n, 1n, old + 1n, old ^ (1n << BigInt(this.int(64))), 2n ** 47n, 2n ** 63n, 2n ** 64n - 1n, 0xffff_8000_0000_0000n, BigInt(this.int(2 ** 32))]);
    return BigInt.asUintN(64, v);
  }

  /** One field of one record, changed; the record's new body and what was done. */
  field(rec: EventRecord): { body: Buffer; what: string } {
    const fields = fieldsOf(rec.body);
    if (fields.length === 0) return { body: rec.body, what: 'nothing' };
    const f = this.pick(fields);
    const b = Buffer.from(rec.body);
    const where = `event ${rec.index} (type ${rec.type}) at +${f.off}`;
    switch (f.kind) {
      case 'int':
        if (f.size === 1) b[f.off] = this.pick([0, 1, 2, 3, 0x7f, 0x80, 0xff, this.int(256)]);
        else if (f.size === 4) b.writeUInt32LE(this.u32(b.readUInt32LE(f.off)), f.off);
        else b.writeBigUInt64LE(this.u64(b.readBigUInt64LE(f.off)), f.off);
        return { body: b, what: `${where}: int${f.size * 8}` };
      case 'len':
        b.writeUInt32LE(this.u32(b.readUInt32LE(f.off)), f.off);
        return { body: b, what: `${where}: length or count ${b.readUInt32LE(f.off)}` };
      case 'data':
        if (f.len > 0) flipBit(b, f.off + this.int(Math.min(f.len, b.length - f.off)), this.int(8));
        return { body: b, what: `${where}: data byte` };
      case 'name': {
        const old = b.readUInt32LE(f.off);
        const name = Buffer.from(this.pick(this.hostileNames), 'utf8');
        const len = Buffer.alloc(4);
        len.writeUInt32LE(name.length);
        const body = Buffer.concat([b.subarray(0, f.off), len, name, b.subarray(f.off + 4 + old)]);
        return { body, what: `${where}: name ${JSON.stringify(name.toString().slice(0, 60))}` };
      }
    }
  }

  /** Records removed, repeated, swapped or cut (written back as one chunk). */
  stream(s: EventStream): { stream: EventStream; what: string } {
    const recs = [...s.records];
    const i = this.int(recs.length);
    const op = this.int(4);
    if (op === 0 && recs.length > 1) recs.splice(i, 1);
    else if (op === 1) recs.splice(i, 0, recs[i]!);
    else if (op === 2 && i + 1 < recs.length) [recs[i], recs[i + 1]] = [recs[i + 1]!, recs[i]!];
    else if (op === 3) recs.length = Math.max(1, i);
    const what = ['delete', 'duplicate', 'swap', 'truncate'][op]!;
    return { stream: { version: s.version, records: recs, chunkCounts: [recs.length] }, what: `stream: ${what} at event ${i}` };
  }

  /** A header, index or trailer field of the encoded stream. */
  container(bytes: Buffer): { bytes: Buffer; what: string } {
    const b = Buffer.from(bytes);
    const indexOff = Number(b.readBigUInt64LE(b.length - 16));
    const spots: [string, number][] = [
      ['version', 4],
      ['chunk rawLen', 12],
      ['chunk compressedLen', 16],
      ['chunk count', 20],
      ['chunk firstEvent', 24],
      ['chunk crc', 32],
      ['index count', indexOff + 4],
      ['index offset', indexOff + 8],
      ['index first', indexOff + 16],
      ['index entry count', indexOff + 24],
      ['trailer offset', b.length - 16],
      ['trailer magic', b.length - 8],
    ];
    const [name, at] = this.pick(spots.filter(([, o]) => o + 4 <= b.length));
    b.writeUInt32LE(this.u32(b.readUInt32LE(at)), at);
    return { bytes: b, what: `container: ${name}` };
  }

  /**
   * A sparse file's encoding (core/sparse_blob.h: magic, u64 size, u64 count, count x {u64
   * offset, u64 length}, the extents' data) with its size, count or an extent changed, extents
   * unsorted, overlapping or repeated, its data cut or grown, or the whole cut anywhere.
   */
  sparse(enc: Buffer): { bytes: Buffer; what: string } {
    const HEAD = 32;
    const size = enc.readBigUInt64LE(16);
    let count = enc.readBigUInt64LE(24);
    const n = Number(count);
    const ext = Array.from({ length: n }, (_, k) => ({ offset: enc.readBigUInt64LE(HEAD + 16 * k), length: enc.readBigUInt64LE(HEAD + 16 * k + 8) }));
    let data = enc.subarray(HEAD + 16 * n);
    let newSize = size;
    const end = ext.length ? ext[ext.length - 1]!.offset + ext[ext.length - 1]!.length : 0n;
    let op = this.pick(['size', 'count', 'offset', 'length', 'unsorted', 'overlap', 'repeat', 'data', 'cut'] as const);
    // Unsorted and overlapping need two extents; one repeated overlaps itself.
    if (n < 2 && (op === 'unsorted' || op === 'overlap')) op = 'repeat';
    const k = op === 'overlap' ? 1 + this.int(n - 1) : this.int(Math.max(1, n));
    const e = ext[k];
    const huge = [2n ** 40n, 2n ** 40n + 1n, 2n ** 63n, 2n ** 64n - 1n];
    let what: string = op;
    switch (op) {
      case 'size':
        newSize = this.pick([0n, size - 1n, end - 1n, end, size + 1n, BigInt(data.length), ...huge]);
        what = `size ${newSize}`;
        break;
      case 'count':
        count = this.pick([0n, count - 1n, count + 1n, count * 2n, 2n ** 32n, 2n ** 60n, 2n ** 64n - 1n, BigInt(data.length) / 16n]);
        what = `count ${count}`;
        break;
      case 'offset':
        if (e) e.offset = this.pick([0n, e.offset - 1n, e.offset + 1n, size, size - e.length + 1n, 2n ** 64n - e.length + 1n, ...huge]);
        what = `extent ${k} offset ${e?.offset}`;
        break;
      case 'length':
        if (e) e.length = this.pick([0n, e.length - 1n, e.length + 1n, size, BigInt(data.length), BigInt(data.length) + 1n, 2n ** 64n - e.offset, ...huge]);
        what = `extent ${k} length ${e?.length}`;
        break;
      case 'unsorted':
        if (n > 1) [ext[k], ext[(k + 1) % n]] = [ext[(k + 1) % n]!, ext[k]!];
        break;
      case 'overlap':
        if (e) e.offset = ext[k - 1]!.offset + this.pick([0n, ext[k - 1]!.length - 1n]);
        break;
      case 'repeat':
        if (e) {
          ext.splice(k, 0, { ...e });
          count += 1n;
        }
        break;
      case 'data':
        data = this.pick([data.subarray(0, data.length - 1), data.subarray(0, this.int(data.length + 1)), Buffer.concat([data, Buffer.from('more')])]);
        what = `data cut or grown to ${data.length} bytes`;
        break;
      case 'cut':
        break;
    }
    const head = Buffer.alloc(HEAD + 16 * ext.length);
    enc.copy(head, 0, 0, 16);
    head.writeBigUInt64LE(BigInt.asUintN(64, newSize), 16);
    head.writeBigUInt64LE(BigInt.asUintN(64, count), 24);
    ext.forEach((x, j) => {
      head.writeBigUInt64LE(BigInt.asUintN(64, x.offset), HEAD + 16 * j);
      head.writeBigUInt64LE(BigInt.asUintN(64, x.length), HEAD + 16 * j + 8);
    });
    let bytes = Buffer.concat([head, data]);
    if (op === 'cut') {
      bytes = bytes.subarray(0, this.int(bytes.length));
      what = `cut to ${bytes.length} bytes`;
    }
    return { bytes, what };
  }

  /** One manifest field (the server's validator's turn). */
  manifest(m: Record<string, unknown> & { blobs: Blob[] }): string {
    const b = this.pick(m.blobs);
    const ops: [string, () => void][] = [
      ['blob size', () => (b.size = this.pick([0, b.size + 1, b.size - 1, 2 ** 53, -1, 2 ** 40 + 1]))],
      ['blob sha256', () => (b.sha256 = this.pick(['../../etc/passwd', 'f'.repeat(64), b.sha256.toUpperCase(), '']))],
      ['blob role', () => (b.role = this.pick(['events', 'file', 'sparse file', 'snapshot', '', 'x'.repeat(300)]))],
      ['complete', () => ((m.complete = false), (m.exit = null))],
      ['exit', () => (m.exit = { status: this.pick([2147483648, -1, 256, 3.5]), code: null, signal: null })],
      ['counts', () => (m.counts = { events: 2 ** 60, tasks: -1, syscalls: 'x', bytes: 1 })],
      ['argv', () => (m.argv = this.pick([[], ['\0'], 'x', [1, 2]]))],
      ['startTime', () => (m.startTime = this.pick(['', 'never', '+275760-09-13T00:00:00Z']))],
    ];
    const [what, apply] = this.pick(ops);
    apply();
    return `manifest: ${what}`;
  }
}

function setEventsOf(mt: Mutant, bytes: Buffer): void {
  const sha = sha256(bytes);
  mt.fresh.set(sha, bytes);
  for (const b of mt.manifest.blobs) if (b.role === 'events') Object.assign(b, { sha256: sha, size: bytes.length });
}

/**
 * The blob `old` of the mutant given other bytes, named consistently: by its new sha256 in the
 * manifest and in the events (the names in exec and mmap records), so that only replay can notice.
 */
function replaceBlobOf(base: Base, mt: Mutant, old: string, bytes: Buffer): void {
  const sha = sha256(bytes);
  mt.fresh.set(sha, bytes);
  for (const x of mt.manifest.blobs) if (x.sha256 === old) Object.assign(x, { sha256: sha, size: bytes.length });
  const records = base.events.records.map((r) => {
    let body = r.body;
    for (let at = body.indexOf(old); at >= 0; at = body.indexOf(old, at + sha.length)) {
      body = Buffer.concat([body.subarray(0, at), Buffer.from(sha), body.subarray(at + old.length)]);
    }
    return body === r.body ? r : { ...r, body };
  });
  setEventsOf(mt, encodeEventStream({ ...base.events, records }));
}

/** The base with one blob's bytes replaced (named consistently), as a mutant. */
export function withBlob(base: Base, old: string, bytes: Buffer, what: string): Mutant {
  const mt: Mutant = { what, manifest: structuredClone(base.manifest), fresh: new Map() };
  mt.manifest.id = randomUUID();
  replaceBlobOf(base, mt, old, bytes);
  return mt;
}

function mutate(base: Base, m: Mutator): Mutant {
  const manifest = structuredClone(base.manifest);
  manifest.id = randomUUID();
  const fresh = new Map<string, Buffer>();
  const setEvents = (bytes: Buffer): void => setEventsOf({ what: '', manifest, fresh }, bytes);
  const replaceBlob = (old: string, bytes: Buffer): void => {
    replaceBlobOf(base, { what: '', manifest, fresh }, old, bytes);
  };
  const sparse = manifest.blobs.filter((x) => x.role === 'sparse file');
  // A trace with sparse files: half its mutations are of their encodings.
  if (sparse.length > 0 && m.int(2) === 0) {
    const b = m.pick(sparse);
    const s = m.sparse(fs.readFileSync(path.join(base.dir, 'blobs', b.sha256)));
    replaceBlob(b.sha256, s.bytes);
    return { what: `sparse file ${b.path ?? ''}: ${s.what}`, manifest, fresh };
  }
  const kind = m.int(100);
  let what: string;

  if (kind < 62) {
    const rec = m.pick(base.events.records);
    const changed = m.field(rec);
    what = changed.what;
    const records = base.events.records.map((r) => (r === rec ? { ...r, body: changed.body } : r));
    setEvents(encodeEventStream({ ...base.events, records }));
  } else if (kind < 77) {
    const s = m.stream(base.events);
    what = s.what;
    setEvents(encodeEventStream(s.stream));
  } else if (kind < 87) {
    const c = m.container(encodeEventStream(base.events));
    what = c.what;
    setEvents(c.bytes);
  } else if (kind < 94) {
    what = m.manifest(manifest);
  } else {
    // A captured file or snapshot with other bytes, named consistently.
    const b = m.pick(manifest.blobs.filter((x) => x.role !== 'events'));
    const bytes = fs.readFileSync(path.join(base.dir, 'blobs', b.sha256));
    if (bytes.length > 0) flipBit(bytes, m.int(bytes.length), m.int(8));
    replaceBlob(b.sha256, bytes);
    what = `blob bytes: ${b.role} ${b.path ?? ''}`;
  }
  return { what, manifest, fresh };
}

/** The mutant as a trace directory: fresh blobs written, the others linked from the base. */
export function writeMutant(base: Base, mt: Mutant, dir: string): void {
  fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(mt.manifest));
  for (const b of mt.manifest.blobs) {
    if (typeof b.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(b.sha256)) continue;
    const dest = path.join(dir, 'blobs', b.sha256);
    if (fs.existsSync(dest)) continue;
    const bytes = mt.fresh.get(b.sha256);
    if (bytes) fs.writeFileSync(dest, bytes);
    else if (fs.existsSync(path.join(base.dir, 'blobs', b.sha256))) fs.linkSync(path.join(base.dir, 'blobs', b.sha256), dest);
  }
}

// ---------------------------------------------------------------------------------------------
// Watching the server

/** Every descendant of this process: the server's workers, their sandboxes and programs. */
function descendants(): number[] {
  const out: number[] = [];
  const walk = (pid: number, depth: number): void => {
    if (depth > 8) return;
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const tid of tids) {
      let kids = '';
      try {
        kids = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      } catch {
        // gone
      }
      for (const k of kids ? kids.split(/\s+/).map(Number) : []) {
        out.push(k);
        walk(k, depth + 1);
      }
    }
  };
  walk(process.pid, 0);
  return out;
}

function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0; // gone
  }
}

/**
 * What a confined replay worker sees of the file system, from outside (/proc/PID/root): paths
 * that are neither "/", /proc, the stub and the directories leading to it, nor one trace
 * directory (manifest.json, blobs/<sha256>, events.partial) and the directories leading to it.
 * Undefined when the worker is not confined yet (its root is still the host's) or is gone.
 */
function strayPaths(pid: number, stub: string): string[] | undefined {
  const root = `/proc/${pid}/root`;
  try {
    const ours = fs.statSync('/');
    const its = fs.statSync(root);
    if (its.dev === ours.dev && its.ino === ours.ino) return undefined;
    const seen: string[] = [];
    const visit = (rel: string): void => {
      seen.push(rel);
      if (rel === '/proc' || seen.length > 1000 || !fs.lstatSync(root + rel).isDirectory()) return;
      for (const e of fs.readdirSync(root + rel)) visit(path.posix.join(rel, e));
    };
    visit('/');
    const allowed = new Set(['/', '/proc']);
    const leadTo = (p: string): void => {
      for (let d = p; d !== '/'; d = path.dirname(d)) allowed.add(d);
    };
    leadTo(stub);
    const traces = seen.filter((p) => p.endsWith('/manifest.json')).map((p) => path.dirname(p));
    if (traces.length === 1) {
      const t = traces[0]!;
      leadTo(path.join(t, 'manifest.json'));
      leadTo(path.join(t, 'events.partial'));
      allowed.add(path.join(t, 'blobs'));
      for (const p of seen) if (path.dirname(p) === path.join(t, 'blobs') && /^[0-9a-f]{64}$/.test(path.basename(p))) allowed.add(p);
    }
    return seen.filter((p) => !allowed.has(p));
  } catch {
    return undefined; // it ended meanwhile
  }
}

function cmdlineOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
  } catch {
    return '';
  }
}

/**
 * A health check must be answered before the event loop's thread (the server's, shared with
 * this bench) has run for HEALTH_CPU_MS: a loop held by a request runs all that time. Its time
 * on a CPU, not the clock's, because on a shared, loaded machine the thread may wait seconds for
 * a CPU without the server being at fault; the clock bounds it too, more loosely.
 */
const HEALTH_CPU_MS = 2000;
const HEALTH_WALL_MS = 30_000;

/** Time the main thread has spent on a CPU (/proc schedstat), in ms. */
function mainThreadCpuMs(): number {
  return Number(fs.readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').split(' ')[0]) / 1e6;
}

/** grpc.health.v1.Health/Check for the whole server: SERVING is field 1 = 1. */
function healthCheck(c: Clients, deadlineMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    c.catalog.makeUnaryRequest<Buffer, Buffer>(
      '/grpc.health.v1.Health/Check',
      (b) => b,
      (b) => b,
      Buffer.alloc(0),
      { deadline: Date.now() + deadlineMs },
      (err, res) => resolve(!err && res !== undefined && res.equals(Buffer.from([0x08, 0x01]))),
    );
  });
}

interface ReplayResult {
  outcome: string;
  output: Buffer;
  /** The error's details, when the replay ended with one. */
  details?: string;
}

function replay(c: Clients, traceId: string): Promise<ReplayResult> {
  return new Promise((resolve) => {
    const out: Buffer[] = [];
    let size = 0;
    let exit: number | undefined;
    const s = c.replay.runReplay({ traceId }, c.metadata(), { deadline: Date.now() + 120_000 });
    s.on('data', (m: RunReplayResponse) => {
      const d = m.stdout ?? m.stderr;
      if (d && size < 4 << 20) {
        out.push(Buffer.from(d));
        size += d.length;
      }
      if (m.exit) exit = m.exit.status;
    });
    s.on('error', (e: ServiceError) => resolve({ outcome: `replay:${status[e.code]}`, output: Buffer.concat(out), details: e.details }));
    s.on('end', () => resolve({ outcome: `exit:${exit ?? 'none'}`, output: Buffer.concat(out) }));
  });
}

const UPLOAD_REFUSALS = new Set(['INVALID_ARGUMENT', 'DATA_LOSS', 'FAILED_PRECONDITION']);
/**
 * How a replay may end other than with an exit status: stopped idle or past its time
 * (DEADLINE_EXCEEDED), or its sandbox stopped at the CPU bound (ABORTED, killed by SIGXCPU and
 * then SIGKILL). A worker that crashes otherwise is a failure.
 */
function acceptableEnding(r: ReplayResult): boolean {
  if (r.outcome === 'replay:DEADLINE_EXCEEDED') return true;
  return r.outcome === 'replay:ABORTED' && /killed by SIG(XCPU|KILL)\b/.test(r.details ?? '');
}

function record(fixtures: string, work: string, only?: string[]): string[] {
  const dirs: string[] = [];
  for (const b of BASES.filter((x) => !only || only.includes(x.fixture))) {
    const exe = path.join(work, b.fixture);
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(fixtures, `${b.fixture}.c`)], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc ${b.fixture}: ${cc.stderr}`);
    const dir = path.join(work, `${b.fixture}.trace`);
    const scratch = fs.mkdtempSync(path.join(work, 'scratch-'));
    const r = spawnSync(process.execPath, [CLI, 'record', '-o', dir, '--', exe, ...b.args(scratch)], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, LANG: 'C', TZ: 'UTC', XDG_DATA_HOME: work, REWIND_CONFIG: '/nonexistent' },
      timeout: 120_000,
    });
    if (!fs.existsSync(path.join(dir, 'manifest.json'))) throw new Error(`recording ${b.fixture} failed: ${r.stderr}`);
    dirs.push(dir);
  }
  return dirs;
}

export function loadBase(dir: string): Base {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as Base['manifest'];
  const ev = manifest.blobs.find((b) => b.role === 'events')!;
  return { dir, manifest, events: parseEventStream(fs.readFileSync(path.join(dir, 'blobs', ev.sha256))) };
}

export async function runHostileBatch(opts: HostileOptions): Promise<HostileReport> {
  const t0 = Date.now();
  const log = opts.log ?? (() => {});
  // Each broken invariant is logged when it happens: a long run shows them as it goes.
  const fail = (what: string): void => {
    report.failures.push(what);
    log(`failure: ${what}`);
  };
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-hostile-'));
  const dataDir = path.join(work, 'server');
  const report: HostileReport = {
    seed: opts.seed,
    mutations: 0,
    refusedAtUpload: 0,
    replayed: 0,
    outcomes: {},
    messages: {},
    failures: [],
    healthChecks: 0,
    healthMaxMs: 0,
    healthMaxCpuMs: 0,
    viewsChecked: 0,
    maxWorkerRssBytes: 0,
    memoryBoundBytes: MEMORY_BOUND,
    integrity: '',
    originalsIntact: true,
    fullChecks: 0,
    ms: 0,
    phaseMs: {},
  };
  const timed = async <T>(phase: string, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      report.phaseMs[phase] = Math.round((report.phaseMs[phase] ?? 0) + performance.now() - t);
    }
  };
  const server = await startServer({
    dataDir,
    listen: '127.0.0.1:0',
    logger: pino({ level: 'silent' }),
    maxSessions: 10,
    // Long enough that a replay waiting for a CPU on a loaded machine is not taken for idle.
    idleTimeoutMs: 15_000,
    sandbox: { memoryBytes: MEMORY_BOUND, cpuSeconds: 20 },
  });
  const clients: Clients[] = [];
  const client = async (role: 'agent' | 'reader'): Promise<Clients> => {
    const c = connect({ server: server.address, token: (await server.catalog.tokens.create(role, '')).secret, tls: false });
    clients.push(c);
    return c;
  };
  // Canaries: files a worker must never read, named by some of the hostile names.
  // Their content is not in their names: a replay that names a file it was refused (a divergence
  // message quoting a mutated path) has not read it.
  const canary = `CANARY-${randomBytes(8).toString('hex')}`;
  const canaryFiles = [path.join(os.tmpdir(), `rewind-canary-${randomBytes(8).toString('hex')}`), path.join(dataDir, 'canary')];
  for (const f of canaryFiles) fs.writeFileSync(f, `${canary}\n`);

  const stub = stubPath();
  let watching = true;
  const watch = async (): Promise<void> => {
    const hc = await client('reader');
    for (let tick = 0; watching; tick++) {
      const start = performance.now();
      const ran = mainThreadCpuMs();
      const ok = await healthCheck(hc, HEALTH_WALL_MS);
      const ms = performance.now() - start;
      const cpu = mainThreadCpuMs() - ran;
      report.healthChecks++;
      report.healthMaxMs = Math.max(report.healthMaxMs, ms);
      report.healthMaxCpuMs = Math.max(report.healthMaxCpuMs, cpu);
      if (!ok || cpu > HEALTH_CPU_MS) fail(`health check ${ok ? 'answered' : 'failed'} after ${Math.round(ms)} ms, the event loop's thread having run ${Math.round(cpu)} ms meanwhile`);
      // The processes every third check (they take this process's time, which the server shares).
      for (const pid of tick % 3 === 0 ? descendants() : []) {
        report.maxWorkerRssBytes = Math.max(report.maxWorkerRssBytes, rssOf(pid));
        // A replay or debug worker, once confined: exactly its trace, the stub and /proc, no canary.
        if (!/(replay|debug)_worker\.js/.test(cmdlineOf(pid))) continue;
        const stray = strayPaths(pid, stub);
        if (stray === undefined) continue;
        report.viewsChecked++;
        if (stray.length > 0) fail(`replay worker ${pid} sees ${JSON.stringify(stray.slice(0, 5))} beyond its trace and the stub`);
        for (const c of canaryFiles) if (fs.existsSync(`/proc/${pid}/root${c}`)) fail(`replay worker ${pid} can reach canary ${c}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let watcher: Promise<void> | undefined;

  // Replay workers of mutants often live less than a watch's period: a debug worker, which lives
  // as long as its session, makes sure the watch has seen at least one worker confined.
  const heldOpenUntilSeen = async (traceId: string): Promise<void> => {
    const token = (await server.catalog.tokens.create('reader', '')).secret;
    const bridge = await openRemoteDebugBridge(traceId, { server: server.address, token, tls: false }, 0);
    const sock = net.connect(bridge.port, '127.0.0.1');
    sock.on('error', () => {});
    try {
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      sock.write("$?#3f");
      const deadline = Date.now() + 60_000;
      const seen = (): boolean => report.viewsChecked > 0 && /\$[ST][0-9a-f]{2}/.test(got);
      while (!seen() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      if (!seen()) fail(`a debug session's worker was not seen confined within 60 s (gdb got ${JSON.stringify(got.slice(0, 80))})`);
    } finally {
      sock.destroy();
      await bridge.close();
    }
  };

  const integrity = (): string => {
    // A connection of its own, read-only, beside the server's (WAL: it sees the last commit).
    const db = new Database(path.join(dataDir, 'catalog.sqlite'), { readonly: true });
    try {
      return (db.pragma('integrity_check', { simple: true }) as string) ?? '';
    } finally {
      db.close();
    }
  };

  try {
    // Recorded before the watch starts: spawnSync holds this process's event loop meanwhile.
    const bases = await timed('record', async () => record(path.join(REPO, 'test', 'fixtures'), work, opts.fixtures).map(loadBase));
    watcher = watch();
    const up = await client('agent');
    const checker = await client('reader');
    const originals: { id: string; result: ReplayResult }[] = [];
    for (const b of bases) {
      const id = (await pushTrace(up, b.dir)).traceId;
      originals.push({ id, result: await replay(checker, id) });
    }
    await heldOpenUntilSeen(originals[0]!.id);
    // The expensive checks: the catalogue's integrity, every first trace listed and replayed as
    // at the start (their blobs are shared with every mutant deleted since).
    const fullCheck = async (after: number): Promise<void> => {
      await timed('full check', async () => {
        report.fullChecks++;
        const verdict = integrity();
        report.integrity = verdict;
        if (verdict !== 'ok') fail(`after ${after} mutations: PRAGMA integrity_check says ${verdict}`);
        const listed: ListTracesResponse = await call(checker, checker.catalog.listTraces.bind(checker.catalog), ListTracesRequest.fromPartial({ limit: 10_000 }));
        const ids = new Set(listed.traces.map((t) => t.id));
        for (const o of originals) {
          const again = await replay(checker, o.id);
          if (!ids.has(o.id) || again.outcome !== o.result.outcome || !again.output.equals(o.result.output)) {
            report.originalsIntact = false;
            fail(`after ${after} mutations: trace ${o.id} recorded first no longer lists or replays as before (${again.outcome} vs ${o.result.outcome})`);
          }
        }
      });
    };
    const shas = bases.flatMap((b) => b.manifest.blobs.map((x) => x.sha256));
    const names = [
      '../../../../../../etc/passwd',
      `../../../../../../..${canaryFiles[0]}`,
      canaryFiles[0]!,
      canaryFiles[1]!,
      '../../canary',
      '/proc/self/environ',
      '',
      '.',
      '..',
      'a'.repeat(64),
      'A'.repeat(64),
      `${shas[0]}/../../manifest.json`,
      `ab\0cd`,
      'x'.repeat(10_000),
      ...shas,
    ];
    const m = new Mutator(rng(opts.seed), names);
    const admin = connect({ server: server.address, token: fs.readFileSync(server.adminTokenPath, 'utf8').trim(), tls: false });
    clients.push(admin);
    const checkEvery = opts.checkEvery ?? 500;
    let next = opts.from ?? 0;
    for (let i = 0; i < next; i++) mutate(bases[i % bases.length]!, m);
    let done = 0;
    // Blobs some lane is uploading: two mutants may share a new blob (the same events), and the
    // server answers a second stream for a blob being written ABORTED (busy), as it should.
    const uploading = new Map<string, Promise<void>>();
    const lane = async (n: number): Promise<void> => {
      const agent = await client('agent');
      const reader = await client('reader');
      for (let i = next++; i < opts.count; i = next++) {
        const base = bases[i % bases.length]!;
        const mt = mutate(base, m);
        const label = `#${i} of seed ${opts.seed} (${path.basename(base.dir)}): ${mt.what}`;
        const dir = path.join(work, `m${n}-${i}`);
        writeMutant(base, mt, dir);
        report.mutations++;
        const count = (k: string): void => {
          report.outcomes[k] = (report.outcomes[k] ?? 0) + 1;
        };
        let id: string | undefined;
        for (let busy = [...mt.fresh.keys()].map((k) => uploading.get(k)); busy.some(Boolean); busy = [...mt.fresh.keys()].map((k) => uploading.get(k))) {
          await Promise.all(busy);
        }
        let uploaded!: () => void;
        const held = new Promise<void>((resolve) => (uploaded = resolve));
        for (const k of mt.fresh.keys()) uploading.set(k, held);
        try {
          // The server's validator sees a mutated manifest as it is, as far as the message's types
          // carry it (the client's own checks come after; pushTrace prepares an intact one itself).
          const manifest = mt.what.startsWith('manifest:') ? representable(mt.manifest) : undefined;
          if (manifest) await timed('prepare', () => call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest }));
          id = (await timed('upload', () => pushTrace(agent, dir, { retries: 0, allowIncomplete: true }))).traceId;
        } catch (err) {
          const code = isServiceError(err) ? status[err.code] : undefined;
          if (code && UPLOAD_REFUSALS.has(code)) {
            report.refusedAtUpload++;
            count(`upload:${code}`);
          } else if (!code && (err instanceof ManifestError || (err instanceof Error && /trace .* (is incomplete|blob .* is)|is not a rewind trace|cut short/.test(err.message)))) {
            // The client's own checks refused it before the server saw it.
            report.refusedAtUpload++;
            count('upload:refused-by-client');
          } else {
            fail(`${label}: upload failed with ${code ?? (err as Error).message}`);
          }
        } finally {
          for (const k of mt.fresh.keys()) uploading.delete(k);
          uploaded();
        }
        if (id) {
          const r = await timed('replay', () => replay(reader, id!));
          report.replayed++;
          count(r.outcome);
          if (r.outcome !== 'exit:0') {
            const last = r.output.toString('utf8').trimEnd().split('\n').pop() ?? '';
            const key = last.replace(/\b(0x)?[0-9a-f]{6,}\b|\d+/g, 'N').slice(0, 120);
            report.messages[key] = (report.messages[key] ?? 0) + 1;
          }
          if (r.outcome.startsWith('replay:') && !acceptableEnding(r)) fail(`${label}: ${r.outcome} (${r.details ?? ''})`);
          if (r.output.includes(canary)) fail(`${label}: a canary file's content came out of the replay`);
          try {
            await timed('delete', () => call(admin, admin.catalog.deleteTrace.bind(admin.catalog), { id }));
          } catch (err) {
            fail(`${label}: deleting it failed: ${(err as Error).message}`);
          }
        }
        // The cheap catalogue check, every time: a first trace is still served whole.
        const o = originals[i % originals.length]!;
        try {
          const got = await timed('get', () => call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: o.id }));
          if (got.summary?.id !== o.id) fail(`${label}: afterwards GetTrace ${o.id} answered another trace`);
        } catch (err) {
          fail(`${label}: afterwards GetTrace ${o.id} failed: ${(err as Error).message}`);
        }
        fs.rmSync(dir, { recursive: true, force: true });
        done++;
        if (done % 100 === 0) {
          const rate = (done / (Date.now() - t0)) * 1000;
          log(`${done} mutations in ${Math.round((Date.now() - t0) / 1000)} s (${rate.toFixed(1)}/s), ${report.failures.length} failures, ${JSON.stringify(report.outcomes)}`);
        }
        if (done % checkEvery === 0 && next < opts.count) await fullCheck(done);
      }
    };
    await Promise.all(Array.from({ length: opts.parallel ?? 4 }, (_, n) => lane(n)));
    await fullCheck(done);
  } finally {
    watching = false;
    await watcher;
    for (const c of clients) c.close();
    await server.close();
    // Once more on the closed catalogue: what a restarted server would open.
    report.integrity = integrity();
    for (const f of canaryFiles) fs.rmSync(f, { force: true });
    fs.rmSync(work, { recursive: true, force: true });
    report.ms = Date.now() - t0;
  }
  if (report.maxWorkerRssBytes > MEMORY_BOUND) fail(`a worker process reached ${report.maxWorkerRssBytes} bytes resident, past its bound`);
  return report;
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const count = Number(flag('--count') ?? 10_000);
  const seed = Number(flag('--seed') ?? Date.now() % 2 ** 31);
  const num = (name: string): number | undefined => (flag(name) === undefined ? undefined : Number(flag(name)));
  // Failures go to this file as they happen (and progress to stderr), so a long run can be watched.
  const failureLog = flag('--failures');
  if (failureLog) fs.writeFileSync(failureLog, '');
  const report = await runHostileBatch({
    count,
    seed,
    from: num('--from'),
    parallel: num('--parallel'),
    checkEvery: num('--check-every'),
    fixtures: flag('--fixtures')?.split(','),
    log: (line) => {
      process.stderr.write(`${new Date().toISOString()} ${line}\n`);
      if (failureLog && line.startsWith('failure: ')) fs.appendFileSync(failureLog, `${line}\n`);
    },
  });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = report.failures.length === 0 && report.integrity === 'ok' && report.originalsIntact ? 0 : 1;
}
