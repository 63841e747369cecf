// Issue 11, finding 1: a trace is untrusted input. The names of the blobs it holds (the exec
// snapshot, each mapped file of an exec, each mmap of a file) must never reach outside the
// trace's blob directory, links must not be followed, and a blob must hold what its name says.
import { createHash } from 'node:crypto';
import { readFileSync, symlinkSync, rmSync, writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../native/index.js';
import {
  type Manifest,
  type EventRecord,
  blobPath,
  cleanupTemps,
  compile,
  encodeEventStream,
  EVENT_TYPES,
  eventsBlob,
  expectCleanFailure,
  expectRecorded,
  expectSameRun,
  parseEventStream,
  readManifest,
  record,
  replaceEventsBlob,
  replay,
  requireCli,
  syscallBlobField,
  tempDir,
} from './harness.js';

afterAll(cleanupTemps);

const SECRET = 'CANARY-SECRET-0123456789';

/** Reads the length-prefixed fields of a record body, to find and replace its blob names. */
class Fields {
  constructor(
    readonly body: Buffer,
    public at = 0,
  ) {}
  skip(n: number): void {
    this.at += n;
  }
  u32(): number {
    const v = this.body.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }
  /** Skips a `bytes`/`string` field and returns where it was. */
  str(): { start: number; end: number } {
    const start = this.at;
    this.at += 4 + this.body.readUInt32LE(start);
    return { start, end: this.at };
  }
}

function encodedString(s: string): Buffer {
  const text = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(text.length);
  return Buffer.concat([len, text]);
}

function replaceField(r: EventRecord, field: { start: number; end: number }, value: string): void {
  r.body = Buffer.concat([r.body.subarray(0, field.start), encodedString(value), r.body.subarray(field.end)]);
}

/** Where an exec record keeps the blob names of its file regions. */
function execBlobFields(r: EventRecord): { files: { start: number; end: number }[] } {
  const f = new Fields(r.body, 1 + 4);
  f.str(); // exe
  f.str(); // regs
  const n = f.u32();
  const files = [];
  for (let i = 0; i < n; i++) {
    f.skip(8 + 8 + 4);
    const source = r.body.readUInt8(f.at);
    f.skip(1 + 8);
    const blob = f.str();
    f.str(); // name
    if (source === 1) files.push(blob);
  }
  return { files };
}

/** An exec record's regions and snapshot blob (docs/trace-format.md), to rewrite them. */
interface ExecRegion {
  start: bigint;
  end: bigint;
  prot: number;
  source: number;
  offset: bigint;
  blob: string;
  name: string;
}
interface ExecRecord {
  head: Buffer; // type, tid, exe, regs
  regions: ExecRegion[];
  snapshot: string;
  tail: Buffer; // auxv, start_brk, cpu
}

function parseExec(r: EventRecord): ExecRecord {
  const f = new Fields(r.body, 1 + 4);
  f.str(); // exe
  f.str(); // regs
  const head = r.body.subarray(0, f.at);
  const text = (): string => {
    const { start, end } = f.str();
    return r.body.toString('utf8', start + 4, end);
  };
  const regions: ExecRegion[] = [];
  for (let i = f.u32(); i > 0; i--) {
    const start = r.body.readBigUInt64LE(f.at);
    const end = r.body.readBigUInt64LE(f.at + 8);
    const prot = r.body.readUInt32LE(f.at + 16);
    const source = r.body.readUInt8(f.at + 20);
    const offset = r.body.readBigUInt64LE(f.at + 21);
    f.skip(29);
    regions.push({ start, end, prot, source, offset, blob: text(), name: text() });
  }
  const snapshot = text();
  return { head, regions, snapshot, tail: r.body.subarray(f.at) };
}

function writeExec(r: EventRecord, x: ExecRecord): void {
  const parts = [x.head];
  const n = Buffer.alloc(4);
  n.writeUInt32LE(x.regions.length);
  parts.push(n);
  for (const g of x.regions) {
    const fixed = Buffer.alloc(29);
    fixed.writeBigUInt64LE(g.start, 0);
    fixed.writeBigUInt64LE(g.end, 8);
    fixed.writeUInt32LE(g.prot, 16);
    fixed.writeUInt8(g.source, 20);
    fixed.writeBigUInt64LE(g.offset, 21);
    parts.push(fixed, encodedString(g.blob), encodedString(g.name));
  }
  parts.push(encodedString(x.snapshot), x.tail);
  r.body = Buffer.concat(parts);
}

/** The exec's first region stored as a snapshot of its own (source 0: version 4 on). */
function snapshotRegion(x: ExecRecord): ExecRegion {
  const region = x.regions.find((g) => g.source === 0);
  if (!region) throw new Error('the exec has no snapshot region');
  return region;
}

/** Rewrites the trace's event stream with `edit` applied to its records. */
function editEvents(traceDir: string, edit: (records: EventRecord[]) => void): void {
  const stream = parseEventStream(readFileSync(eventsBlob(traceDir).path));
  edit(stream.records);
  replaceEventsBlob(traceDir, encodeEventStream(stream));
}

let exe: string;
let canary: string;

beforeAll(() => {
  requireCli();
  exe = compile('mmap_file');
  canary = join(tempDir('rewind-canary-'), 'canary.txt');
  writeFileSync(canary, `${SECRET}\n`);
});

async function recordMmap(): Promise<string> {
  const data = join(tempDir('rewind-data-'), 'data.txt');
  writeFileSync(data, 'the recorded data file\n');
  const rec = await record(exe, [data]);
  expectRecorded(rec, 0);
  return rec.traceDir;
}

function mmapOfFile(records: EventRecord[]): EventRecord {
  const withBlob = records.filter((r) => r.type === EVENT_TYPES.syscall && syscallBlobField(r).end - syscallBlobField(r).start > 4);
  const last = withBlob.at(-1);
  if (!last) throw new Error('the recording has no mmap of a captured file');
  return last;
}

/** Replay fails with `message`: 125 when the engine refuses the trace, 1 for a bad manifest. */
async function expectRefused(traceDir: string, message: RegExp, status = 125): Promise<void> {
  const rep = await replay(traceDir);
  expectCleanFailure(rep, message);
  expect(rep.status).toBe(status);
  expect(rep.stdout.toString('latin1') + rep.stderr.toString('latin1')).not.toContain(SECRET);
}

describe('blob names from a trace', () => {
  it('an mmap whose blob name walks out of the blob directory is refused', async () => {
    const dir = await recordMmap();
    editEvents(dir, (records) => {
      const r = mmapOfFile(records);
      replaceField(r, syscallBlobField(r), relative(join(dir, 'blobs'), canary));
    });
    await expectRefused(dir, /invalid blob "\.\.\/.*canary\.txt" \(a blob name is 64 hex digits\)/);
  });

  it('an exec region whose blob name is an absolute path is refused', async () => {
    const dir = await recordMmap();
    editEvents(dir, (records) => {
      const exec = records[0]!;
      replaceField(exec, execBlobFields(exec).files[0]!, canary);
    });
    await expectRefused(dir, /invalid blob ".*canary\.txt"/);
  });

  it('an exec snapshot named by a path is refused', async () => {
    const dir = await recordMmap();
    editEvents(dir, (records) => {
      const exec = parseExec(records[0]!);
      snapshotRegion(exec).blob = '../../../../../../../../dev/zero';
      writeExec(records[0]!, exec);
    });
    await expectRefused(dir, /invalid blob "\.\.\/.*dev\/zero"/);
  });

  it('a manifest whose blob name is a path is refused', async () => {
    const dir = await recordMmap();
    const path = join(dir, 'manifest.json');
    const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
    m.blobs.find((b) => b.role === 'events')!.sha256 = relative(join(dir, 'blobs'), canary);
    writeFileSync(path, JSON.stringify(m));
    await expectRefused(dir, /malformed manifest: "blobs\[\d+\]\.sha256" must be 64 lowercase hex digits/, 1);
  });

  it('a blob that is a link is not followed', async () => {
    const dir = await recordMmap();
    const file = readManifest(dir).blobs.find((b) => b.role === 'file' && b.path?.endsWith('data.txt'));
    if (!file) throw new Error('the data file is not among the blobs');
    rmSync(blobPath(dir, file.sha256));
    symlinkSync(canary, blobPath(dir, file.sha256));
    await expectRefused(dir, /blob [0-9a-f]{64} is a link/);
  });

  it('a damaged blob is noticed before replay uses it', async () => {
    const dir = await recordMmap();
    const file = readManifest(dir).blobs.find((b) => b.role === 'file' && b.path?.endsWith('data.txt'));
    if (!file) throw new Error('the data file is not among the blobs');
    const path = blobPath(dir, file.sha256);
    const content = readFileSync(path);
    content[0] = content[0]! ^ 1;
    rmSync(path);
    writeFileSync(path, content);
    await expectRefused(dir, /blob [0-9a-f]{64} is damaged/);
  });
});

/** A region's snapshot as stored: "RWSZ", u64 raw size, u32 runs, runs {u64 offset, u64 length}, zstd of the runs' bytes. */
interface StoredSnapshot {
  size: bigint;
  runs: { offset: bigint; length: bigint }[];
  data: Buffer;
}

function parseSnapshot(b: Buffer): StoredSnapshot {
  expect(b.toString('latin1', 0, 4)).toBe('RWSZ');
  const n = b.readUInt32LE(12);
  const runs = Array.from({ length: n }, (_, i) => ({ offset: b.readBigUInt64LE(16 + 16 * i), length: b.readBigUInt64LE(24 + 16 * i) }));
  const total = runs.reduce((sum, r) => sum + Number(r.length), 0);
  return { size: b.readBigUInt64LE(4), runs, data: loadEngine().zstdDecompress(b.subarray(16 + 16 * n), total) };
}

function snapshotHead(magic: string, size: bigint, runs: { offset: bigint; length: bigint }[]): Buffer {
  const head = Buffer.alloc(16 + 16 * runs.length);
  head.write(magic, 0, 'latin1');
  head.writeBigUInt64LE(size, 4);
  head.writeUInt32LE(runs.length, 12);
  runs.forEach((r, i) => {
    head.writeBigUInt64LE(r.offset, 16 + 16 * i);
    head.writeBigUInt64LE(r.length, 24 + 16 * i);
  });
  return head;
}

function encodeSnapshot(s: StoredSnapshot): Buffer {
  return Buffer.concat([snapshotHead('RWSZ', s.size, s.runs), loadEngine().zstdCompress(s.data)]);
}

/** The raw bytes a stored snapshot stands for. */
function expand(s: StoredSnapshot): Buffer {
  const raw = Buffer.alloc(Number(s.size));
  let at = 0;
  for (const r of s.runs) {
    s.data.copy(raw, Number(r.offset), at, at + Number(r.length));
    at += Number(r.length);
  }
  return raw;
}

/** Stores `content` as a snapshot blob of the trace, returning its name. */
function addSnapshotBlob(dir: string, content: Buffer): string {
  const name = createHash('sha256').update(content).digest('hex');
  writeFileSync(blobPath(dir, name), content);
  const path = join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  m.blobs.push({ sha256: name, size: content.length, role: 'snapshot' });
  writeFileSync(path, JSON.stringify(m));
  return name;
}

/** Applies `edit` to the first snapshot region of the first exec and to its stored snapshot. */
function editSnapshot(dir: string, edit: (s: StoredSnapshot, region: ExecRegion) => void): void {
  editEvents(dir, (records) => {
    const exec = parseExec(records[0]!);
    const region = snapshotRegion(exec);
    const s = parseSnapshot(readFileSync(blobPath(dir, region.blob)));
    edit(s, region);
    region.blob = addSnapshotBlob(dir, encodeSnapshot(s));
    writeExec(records[0]!, exec);
  });
}

/**
 * Rewrites a recording as an older stream version wrote it: one snapshot per exec of all its
 * source-0 regions one after another, raw (version 2) or zlib "RWSN" (3), and zlib chunks.
 */
function downgrade(dir: string, version: 2 | 3): void {
  const stream = parseEventStream(readFileSync(eventsBlob(dir).path));
  expect(stream.version).toBe(5); // its records are version 4's: only the chunks' check differs
  stream.version = version;
  for (const r of stream.records.filter((x) => x.type === EVENT_TYPES.exec)) {
    const exec = parseExec(r);
    const parts: Buffer[] = [];
    let offset = 0n;
    for (const region of exec.regions.filter((g) => g.source === 0)) {
      parts.push(expand(parseSnapshot(readFileSync(blobPath(dir, region.blob)))));
      region.offset = offset;
      region.blob = '';
      offset += region.end - region.start;
    }
    const whole = Buffer.concat(parts);
    const stored =
      version === 2 ? whole : Buffer.concat([snapshotHead('RWSN', BigInt(whole.length), [{ offset: 0n, length: BigInt(whole.length) }]), deflateSync(whole)]);
    exec.snapshot = addSnapshotBlob(dir, stored);
    writeExec(r, exec);
  }
  replaceEventsBlob(dir, encodeEventStream(stream));
}

describe('exec snapshots (a blob per region, without its zero pages, compressed)', () => {
  it('a snapshot whose sizes or runs do not hold is refused, whatever its name says', async () => {
    for (const damage of [
      (s: StoredSnapshot) => void (s.size += 4096n),
      (s: StoredSnapshot) => void (s.runs[0]!.offset = s.size),
      (s: StoredSnapshot) => void (s.runs[0]!.length = 1n << 62n),
      (s: StoredSnapshot) => void s.runs.push({ ...s.runs[0]! }),
      (s: StoredSnapshot) => void (s.data = s.data.subarray(1)),
    ]) {
      const dir = await recordMmap();
      editSnapshot(dir, damage);
      await expectRefused(dir, /the exec snapshot is damaged: /);
    }
  });

  it('a small snapshot that claims gigabytes is refused before anything is allocated (a decompression bomb)', async () => {
    const dir = await recordMmap();
    editSnapshot(dir, (s, region) => {
      // A region of 4 GiB, all of it data, in a frame of a few bytes that claims it all.
      const size = 4n << 30n;
      region.end = region.start + size;
      s.size = size;
      s.runs = [{ offset: 0n, length: size }];
      s.data = Buffer.alloc(16);
    });
    await expectRefused(dir, /the exec snapshot is damaged: it claims 4294967296 bytes that are not zero, more than the 1024 MiB/);
  });

  it('an event chunk whose frame holds another length than its header names is refused', async () => {
    const dir = await recordMmap();
    const file = encodeEventStream(parseEventStream(readFileSync(eventsBlob(dir).path)));
    file.writeUInt32LE(file.readUInt32LE(8 + 4) + 1, 8 + 4); // the first chunk's raw length
    replaceEventsBlob(dir, file);
    await expectRefused(dir, /cannot decompress the chunk holding event 0 to the \d+ bytes its header names/);
  });

  it('an event stream of version 4 (chunks checked by crc32) still replays byte for byte, and a chunk whose crc32 fails is refused', async () => {
    const data = join(tempDir('rewind-data-'), 'data.txt');
    writeFileSync(data, 'the recorded data file\n');
    const rec = await record(exe, [data]);
    expectRecorded(rec, 0);
    const stream = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
    stream.version = 4;
    const file = encodeEventStream(stream);
    replaceEventsBlob(rec.traceDir, file);
    expectSameRun(rec, await replay(rec.traceDir));
    file.writeUInt32LE((file.readUInt32LE(8 + 24) ^ 1) >>> 0, 8 + 24); // the first chunk's check (^ makes it signed)
    replaceEventsBlob(rec.traceDir, file);
    await expectRefused(rec.traceDir, /checksum mismatch in the chunk holding event 0/);
  });

  for (const version of [2, 3] as const) {
    it(`an event stream of version ${version} (zlib chunks, ${version === 2 ? 'raw snapshots' : 'one zlib snapshot per exec'}) still replays byte for byte`, async () => {
      const data = join(tempDir('rewind-data-'), 'data.txt');
      writeFileSync(data, 'the recorded data file\n');
      const rec = await record(exe, [data]);
      expectRecorded(rec, 0);
      downgrade(rec.traceDir, version);
      expectSameRun(rec, await replay(rec.traceDir));
    });
  }
});
