// Issue 11, finding 1: a trace is untrusted input. The names of the blobs it holds (the exec
// snapshot, each mapped file of an exec, each mmap of a file) must never reach outside the
// trace's blob directory, links must not be followed, and a blob must hold what its name says.
import { createHash } from 'node:crypto';
import { readFileSync, symlinkSync, rmSync, writeFileSync } from 'node:fs';
import { deflateSync, inflateSync } from 'node:zlib';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

/** Where an exec record keeps its blob names: each file region's blob, then the snapshot's. */
function execBlobFields(r: EventRecord): { files: { start: number; end: number }[]; snapshot: { start: number; end: number } } {
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
  return { files, snapshot: f.str() };
}

/** A syscall record's blob (the captured file of an mmap): its last field. */
function syscallBlobField(r: EventRecord): { start: number; end: number } {
  const f = new Fields(r.body, 1 + 4 + 4 + 48 + 8 + 1);
  const writes = f.u32();
  for (let i = 0; i < writes; i++) {
    f.skip(8);
    f.str();
  }
  return f.str();
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
      const exec = records[0]!;
      replaceField(exec, execBlobFields(exec).snapshot, '../../../../../../../../dev/zero');
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

/** The exec snapshot as stored: "RWSN", u64 raw size, u32 runs, runs {u64 offset, u64 length}, zlib of the runs' bytes. */
interface StoredSnapshot {
  size: bigint;
  runs: { offset: bigint; length: bigint }[];
  data: Buffer;
}

function parseSnapshot(b: Buffer): StoredSnapshot {
  expect(b.toString('latin1', 0, 4)).toBe('RWSN');
  const n = b.readUInt32LE(12);
  const runs = Array.from({ length: n }, (_, i) => ({ offset: b.readBigUInt64LE(16 + 16 * i), length: b.readBigUInt64LE(24 + 16 * i) }));
  return { size: b.readBigUInt64LE(4), runs, data: inflateSync(b.subarray(16 + 16 * n)) };
}

function encodeSnapshot(s: StoredSnapshot): Buffer {
  const head = Buffer.alloc(16 + 16 * s.runs.length);
  head.write('RWSN', 0, 'latin1');
  head.writeBigUInt64LE(s.size, 4);
  head.writeUInt32LE(s.runs.length, 12);
  s.runs.forEach((r, i) => {
    head.writeBigUInt64LE(r.offset, 16 + 16 * i);
    head.writeBigUInt64LE(r.length, 24 + 16 * i);
  });
  return Buffer.concat([head, deflateSync(s.data)]);
}

/** Swaps the trace's first exec snapshot for `content`, consistently: blob name, manifest, exec record. */
function replaceSnapshot(dir: string, records: EventRecord[], content: Buffer): void {
  const exec = records[0]!;
  const field = execBlobFields(exec).snapshot;
  const old = exec.body.toString('utf8', field.start + 4, field.end);
  const name = createHash('sha256').update(content).digest('hex');
  writeFileSync(blobPath(dir, name), content);
  replaceField(exec, field, name);
  const path = join(dir, 'manifest.json');
  const m = JSON.parse(readFileSync(path, 'utf8')) as Manifest;
  m.blobs.push({ sha256: name, size: content.length, role: 'snapshot' });
  expect(m.blobs.some((b) => b.sha256 === old)).toBe(true);
  writeFileSync(path, JSON.stringify(m));
}

function firstSnapshot(dir: string, records: EventRecord[]): Buffer {
  const field = execBlobFields(records[0]!).snapshot;
  return readFileSync(blobPath(dir, records[0]!.body.toString('utf8', field.start + 4, field.end)));
}

describe('exec snapshots (stored without their zero pages, compressed)', () => {
  it('a snapshot whose sizes or runs do not hold is refused, whatever its name says', async () => {
    for (const damage of [
      (s: StoredSnapshot) => void (s.size += 4096n),
      (s: StoredSnapshot) => void (s.runs[0]!.offset = s.size),
      (s: StoredSnapshot) => void (s.runs[0]!.length = 1n << 62n),
      (s: StoredSnapshot) => void s.runs.push({ ...s.runs[0]! }),
      (s: StoredSnapshot) => void (s.data = s.data.subarray(1)),
    ]) {
      const dir = await recordMmap();
      editEvents(dir, (records) => {
        const s = parseSnapshot(firstSnapshot(dir, records));
        damage(s);
        replaceSnapshot(dir, records, encodeSnapshot(s));
      });
      await expectRefused(dir, /the exec snapshot is damaged: /);
    }
  });

  it('an event stream of version 2, whose snapshots were stored raw, still replays byte for byte', async () => {
    const data = join(tempDir('rewind-data-'), 'data.txt');
    writeFileSync(data, 'the recorded data file\n');
    const rec = await record(exe, [data]);
    expectRecorded(rec, 0);
    const stream = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
    expect(stream.version).toBe(3);
    stream.version = 2;
    const s = parseSnapshot(firstSnapshot(rec.traceDir, stream.records));
    const raw = Buffer.alloc(Number(s.size));
    let at = 0;
    for (const r of s.runs) {
      s.data.copy(raw, Number(r.offset), at, at + Number(r.length));
      at += Number(r.length);
    }
    replaceSnapshot(rec.traceDir, stream.records, raw);
    replaceEventsBlob(rec.traceDir, encodeEventStream(stream));
    expectSameRun(rec, await replay(rec.traceDir));
  });
});
