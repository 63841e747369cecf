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
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { status, type ServiceError } from '@grpc/grpc-js';
import { pino } from 'pino';
import { EVENT_TYPES, encodeEventStream, parseEventStream, type EventRecord, type EventStream } from './event_stream.js';
import { call, connect, isServiceError, type Clients } from '../remote/client.js';
import { pushTrace } from '../remote/upload.js';
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
  /** Mutations in flight at once (default 2: one per core). */
  parallel?: number;
  log?: (line: string) => void;
}

export interface HostileReport {
  seed: number;
  mutations: number;
  refusedAtUpload: number;
  replayed: number;
  /** How uploads and replays ended: `upload:CODE`, `exit:N`, `replay:CODE`. */
  outcomes: Record<string, number>;
  /** Broken invariants, each with the mutation that broke it. */
  failures: string[];
  healthChecks: number;
  healthMaxMs: number;
  /** Largest resident set of any process of a replay worker's sandbox. */
  maxWorkerRssBytes: number;
  memoryBoundBytes: number;
  integrity: string;
  /** The traces uploaded first still list and replay byte for byte as before the batch. */
  originalsIntact: boolean;
  ms: number;
}

interface Blob {
  sha256: string;
  size: number;
  role: string;
  path?: string;
}

interface Base {
  dir: string;
  manifest: Record<string, unknown> & { blobs: Blob[] };
  events: EventStream;
}

interface Mutant {
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

  /** One manifest field (the server's validator's turn). */
  manifest(m: Record<string, unknown> & { blobs: Blob[] }): string {
    const b = this.pick(m.blobs);
    const ops: [string, () => void][] = [
      ['blob size', () => (b.size = this.pick([0, b.size + 1, b.size - 1, 2 ** 53, -1, 2 ** 40 + 1]))],
      ['blob sha256', () => (b.sha256 = this.pick(['../../etc/passwd', 'f'.repeat(64), b.sha256.toUpperCase(), '']))],
      ['blob role', () => (b.role = this.pick(['events', 'file', 'snapshot', '', 'x'.repeat(300)]))],
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

function mutate(base: Base, m: Mutator): Mutant {
  const manifest = structuredClone(base.manifest);
  manifest.id = randomUUID();
  const fresh = new Map<string, Buffer>();
  const setEvents = (bytes: Buffer): void => {
    const sha = sha256(bytes);
    fresh.set(sha, bytes);
    for (const b of manifest.blobs) if (b.role === 'events') Object.assign(b, { sha256: sha, size: bytes.length });
  };
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
    const sha = sha256(bytes);
    fresh.set(sha, bytes);
    for (const x of manifest.blobs) if (x.sha256 === b.sha256) Object.assign(x, { sha256: sha });
    what = `blob bytes: ${b.role} ${b.path ?? ''}`;
  }
  return { what, manifest, fresh };
}

/** The mutant as a trace directory: fresh blobs written, the others linked from the base. */
function writeMutant(base: Base, mt: Mutant, dir: string): void {
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

/** Resident memory of every descendant of this process (the server's workers and their programs). */
function maxDescendantRss(): number {
  let max = 0;
  const walk = (pid: number, depth: number): void => {
    if (depth > 8) return;
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      return;
    }
    for (const tid of tids) {
      let kids: string;
      try {
        kids = fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      } catch {
        continue;
      }
      for (const k of kids ? kids.split(/\s+/).map(Number) : []) {
        try {
          const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${k}/status`, 'utf8'));
          if (m) max = Math.max(max, Number(m[1]) * 1024);
        } catch {
          // gone
        }
        walk(k, depth + 1);
      }
    }
  };
  walk(process.pid, 0);
  return max;
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
    s.on('error', (e: ServiceError) => resolve({ outcome: `replay:${status[e.code]}`, output: Buffer.concat(out) }));
    s.on('end', () => resolve({ outcome: `exit:${exit ?? 'none'}`, output: Buffer.concat(out) }));
  });
}

const UPLOAD_REFUSALS = new Set(['INVALID_ARGUMENT', 'DATA_LOSS', 'FAILED_PRECONDITION']);
const REPLAY_ENDINGS = new Set(['ABORTED', 'DEADLINE_EXCEEDED']);

function record(fixtures: string, work: string): string[] {
  const dirs: string[] = [];
  for (const b of BASES) {
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

function loadBase(dir: string): Base {
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
    failures: [],
    healthChecks: 0,
    healthMaxMs: 0,
    maxWorkerRssBytes: 0,
    memoryBoundBytes: MEMORY_BOUND,
    integrity: '',
    originalsIntact: false,
    ms: 0,
  };
  const server = await startServer({
    dataDir,
    listen: '127.0.0.1:0',
    logger: pino({ level: 'silent' }),
    maxSessions: 4,
    idleTimeoutMs: 5000,
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

  let watching = true;
  const watch = async (): Promise<void> => {
    const hc = await client('reader');
    while (watching) {
      const start = performance.now();
      const ok = await healthCheck(hc, 2000);
      const ms = performance.now() - start;
      report.healthChecks++;
      report.healthMaxMs = Math.max(report.healthMaxMs, ms);
      if (!ok) fail(`health check failed after ${Math.round(ms)} ms`);
      report.maxWorkerRssBytes = Math.max(report.maxWorkerRssBytes, maxDescendantRss());
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  let watcher: Promise<void> | undefined;

  try {
    // Recorded before the watch starts: spawnSync holds this process's event loop meanwhile.
    const bases = record(path.join(REPO, 'test', 'fixtures'), work).map(loadBase);
    watcher = watch();
    const up = await client('agent');
    const originals: { id: string; result: ReplayResult }[] = [];
    for (const b of bases) {
      const id = (await pushTrace(up, b.dir)).traceId;
      originals.push({ id, result: await replay(await client('reader'), id) });
    }
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
    let next = 0;
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
        try {
          // The server's validator sees the manifest as mutated, as far as the message's types carry
          // it (the client's own checks come after).
          const manifest = representable(mt.manifest);
          if (manifest) await call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest });
          id = (await pushTrace(agent, dir, { retries: 0, allowIncomplete: true })).traceId;
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
        }
        if (id) {
          const r = await replay(reader, id);
          report.replayed++;
          count(r.outcome);
          if (r.outcome.startsWith('replay:') && !REPLAY_ENDINGS.has(r.outcome.slice(7))) fail(`${label}: ${r.outcome}`);
          if (r.output.includes(canary)) fail(`${label}: a canary file's content came out of the replay`);
          try {
            await call(admin, admin.catalog.deleteTrace.bind(admin.catalog), { id });
          } catch (err) {
            fail(`${label}: deleting it failed: ${(err as Error).message}`);
          }
        }
        fs.rmSync(dir, { recursive: true, force: true });
        if ((i + 1) % 100 === 0) log(`${i + 1} mutations, ${report.failures.length} failures`);
      }
    };
    await Promise.all(Array.from({ length: opts.parallel ?? 2 }, (_, n) => lane(n)));

    // The first traces: still listed, still replayed exactly as at the start.
    const rd = await client('reader');
    const listed: ListTracesResponse = await call(rd, rd.catalog.listTraces.bind(rd.catalog), ListTracesRequest.fromPartial({ limit: 10_000 }));
    const ids = new Set(listed.traces.map((t) => t.id));
    report.originalsIntact = true;
    for (const o of originals) {
      const again = await replay(rd, o.id);
      if (!ids.has(o.id) || again.outcome !== o.result.outcome || !again.output.equals(o.result.output)) {
        report.originalsIntact = false;
        fail(`trace ${o.id} recorded first no longer lists or replays as before (${again.outcome} vs ${o.result.outcome})`);
      }
    }
  } finally {
    watching = false;
    await watcher;
    for (const c of clients) c.close();
    await server.close();
    const db = new Database(path.join(dataDir, 'catalog.sqlite'), { readonly: true });
    report.integrity = (db.pragma('integrity_check', { simple: true }) as string) ?? '';
    db.close();
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
  const report = await runHostileBatch({ count, seed, log: (l) => process.stderr.write(`${l}\n`) });
  process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  process.exitCode = report.failures.length === 0 && report.integrity === 'ok' && report.originalsIntact ? 0 : 1;
}
