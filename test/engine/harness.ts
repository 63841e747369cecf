// Shared helpers for the engine suites: compile C fixtures, run programs natively, record and
// replay them through the real CLI (`node dist/cli/main.js`), and compare byte for byte.
//
// Everything runs as a child process with a hard timeout (the whole process group is killed),
// so a hung tracer or tracee fails the test instead of hanging the suite.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants as fsConstants,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32, deflateSync, inflateSync } from 'node:zlib';
import { expect } from 'vitest';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(REPO, 'test', 'fixtures');
export const CLI = join(REPO, 'dist', 'cli', 'main.js');

/** Default time limit for one child process (record, replay or native run). */
export const RUN_TIMEOUT_MS = 45_000;

export interface RunResult {
  /** What was run, for failure messages. */
  command: string;
  stdout: Buffer;
  stderr: Buffer;
  /** Exit status as a shell reports it: the exit code, or 128+N when killed by signal N. */
  status: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  ms: number;
}

export interface RunOptions {
  /** Bytes for stdin; without it stdin is /dev/null. */
  input?: string | Buffer;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

function signalNumber(sig: NodeJS.Signals): number {
  const n = (osConstants.signals as Record<string, number | undefined>)[sig];
  return n ?? 0;
}

/** A stable environment: the C locale, no colours, nothing from the test runner that matters. */
export function baseEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, LC_ALL: 'C', LANG: 'C', TZ: 'UTC', NO_COLOR: '1' };
  delete env.REWIND_TRACE_DIR;
  delete env.REWIND_DEBUG;
  return { ...env, ...extra };
}

/** Runs a command to completion in its own process group; kills the group on timeout. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const command = [cmd, ...args].map((a) => (/[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const timeoutMs = opts.timeoutMs ?? RUN_TIMEOUT_MS;
  const started = Date.now();
  return new Promise((resolvePromise, reject) => {
    const child = spawn(cmd, [...args], {
      cwd: opts.cwd,
      env: opts.env ?? baseEnv(),
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      detached: true,
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, timeoutMs);
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    if (opts.input !== undefined && child.stdin) {
      child.stdin.on('error', () => {
        /* the program may exit without reading all of its input */
      });
      child.stdin.end(opts.input);
    }
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({
        command,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        status: code ?? (signal ? 128 + signalNumber(signal) : -1),
        signal,
        timedOut,
        ms: Date.now() - started,
      });
    });
  });
}

/** Formats a result for assertion messages. */
export function describeRun(r: RunResult): string {
  const cut = (b: Buffer): string => {
    const s = b.toString('utf8');
    return s.length > 2000 ? `${s.slice(0, 2000)}… (${b.length} bytes)` : s;
  };
  return `$ ${r.command}\nstatus ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}${
    r.timedOut ? ' TIMED OUT' : ''
  } in ${r.ms} ms\n--- stdout ---\n${cut(r.stdout)}\n--- stderr ---\n${cut(r.stderr)}`;
}

// ---------------------------------------------------------------------------------------------
// Temp directories

const temps: string[] = [];

/** A fresh temp directory, removed by cleanupTemps() (call it from afterAll) or at exit. */
export function tempDir(prefix = 'rewind-engine-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

export function cleanupTemps(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanupTemps);

// ---------------------------------------------------------------------------------------------
// Compiling fixtures

export interface CompileOptions {
  /** Link statically (-static). */
  static?: boolean;
  /** Link as a static PIE (-static-pie), so even a static binary is moved by ASLR. */
  staticPie?: boolean;
  /** Extra gcc arguments (libraries, -pthread, -Wl,...). */
  extra?: string[];
  /** Output directory; a fresh temp directory by default. */
  outDir?: string;
  /** Output file name; the fixture name (plus "-static") by default. */
  outName?: string;
  /** Source files relative to test/fixtures; `<name>.c` by default. */
  sources?: string[];
}

/** Compiles test/fixtures/<name>.c with gcc -O1 into a temp directory; returns the binary. */
export function compile(name: string, opts: CompileOptions = {}): string {
  const outDir = opts.outDir ?? tempDir(`rewind-${name}-`);
  const suffix = opts.static ? '-static' : opts.staticPie ? '-static-pie' : '';
  const out = join(outDir, opts.outName ?? `${name}${suffix}`);
  const sources = (opts.sources ?? [`${name}.c`]).map((s) => join(FIXTURES, s));
  const args = ['-O1', '-g', '-Wall', '-Wextra', '-o', out, ...sources];
  if (opts.static) args.push('-static');
  if (opts.staticPie) args.push('-static-pie');
  args.push(...(opts.extra ?? []));
  return gcc(args, out);
}

/** Runs gcc with the given arguments and fails loudly with its diagnostics. */
export function gcc(args: string[], out: string): string {
  const r = spawnSync('gcc', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`gcc ${args.join(' ')} failed (status ${r.status}):\n${r.stderr}${r.error?.message ?? ''}`);
  }
  return out;
}

/** Finds an executable on PATH (like `command -v`), resolving symlinks. */
export function which(name: string): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      if (statSync(p).isFile()) return realpathSync(p);
    } catch {
      /* not here */
    }
  }
  throw new Error(`${name} not found on PATH`);
}

/** The real python3 binary (pyenv installs a shell-script shim that forks). */
export function realPython(): string {
  const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 not usable: ${r.stderr}`);
  return realpathSync(r.stdout.trim());
}

/**
 * Whether a command creates another thread or process, as strace sees it. Used only to decide what
 * to expect from a real program (record, or a "not supported yet" refusal); never to skip.
 */
export function spawnsTasks(cmd: string, args: string[], cwd?: string): boolean {
  const log = join(tempDir('rewind-strace-'), 'log');
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=clone,clone3,fork,vfork', '-o', log, cmd, ...args], {
    cwd,
    env: baseEnv(),
    stdio: 'ignore',
    timeout: 30_000,
  });
  if (r.error) throw new Error(`strace not usable: ${r.error.message}`);
  const text = readFileSync(log, 'utf8');
  return /\b(clone3?|v?fork)\(/.test(text);
}

// ---------------------------------------------------------------------------------------------
// The CLI

export function cliBuilt(): boolean {
  return existsSync(CLI);
}

/** Fails with an explanation when dist/cli/main.js is missing (never skips silently). */
export function requireCli(): void {
  if (!cliBuilt()) {
    throw new Error(`the rewind CLI is not built: ${CLI} is missing (run npm run build)`);
  }
}

/** Runs `rewind ARGS...`. */
export function rewind(args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [CLI, ...args], opts);
}

export interface Recording extends RunResult {
  traceDir: string;
  /** The program's own stderr: the record stderr without rewind's trailing trace-path line(s). */
  programStderr: Buffer;
}

/**
 * Strips rewind's own trailing lines (the trace path at the end) from record's stderr, leaving
 * what the program itself wrote.
 */
export function stripRewindLines(stderr: Buffer, traceDir: string): Buffer {
  const marks = new Set([traceDir]);
  try {
    marks.add(realpathSync(traceDir));
  } catch {
    /* the trace may not exist (failed record) */
  }
  let text = stderr.toString('latin1');
  for (;;) {
    const body = text.endsWith('\n') ? text.slice(0, -1) : text;
    const nl = body.lastIndexOf('\n');
    const last = body.slice(nl + 1);
    if (body.length === 0) break;
    const ours = last.startsWith('rewind') || [...marks].some((m) => last.includes(m));
    if (!ours) break;
    text = nl < 0 ? '' : body.slice(0, nl + 1);
  }
  return Buffer.from(text, 'latin1');
}

/** `rewind record -o DIR -- PROGRAM ARGS...`; DIR is a fresh temp path unless given. */
export async function record(
  program: string,
  args: readonly string[] = [],
  opts: RunOptions & { traceDir?: string } = {},
): Promise<Recording> {
  const traceDir = opts.traceDir ?? join(tempDir('rewind-trace-'), 'trace');
  const r = await rewind(['record', '-o', traceDir, '--', program, ...args], opts);
  return { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
}

/** `rewind replay DIR`; stdin is a different, fixed text unless given, to show it is not read. */
export function replay(traceDir: string, opts: RunOptions = {}): Promise<RunResult> {
  return rewind(['replay', traceDir], { input: 'REPLAY STDIN MUST NOT BE READ\n', ...opts });
}

/** Asserts that record succeeded in the sense of producing a trace (whatever the program's status). */
export function expectRecorded(rec: Recording, expectedStatus?: number): void {
  expect(rec.timedOut, describeRun(rec)).toBe(false);
  expect(existsSync(join(rec.traceDir, 'manifest.json')), `no manifest.json in ${rec.traceDir}\n${describeRun(rec)}`).toBe(
    true,
  );
  if (expectedStatus !== undefined) expect(rec.status, describeRun(rec)).toBe(expectedStatus);
}

/** Replay stdout, stderr and status must equal the recorded run's, byte for byte. */
export function expectSameRun(rec: Recording, rep: RunResult): void {
  const ctx = `record:\n${describeRun(rec)}\n\nreplay:\n${describeRun(rep)}`;
  expect(rep.timedOut, ctx).toBe(false);
  // Compare as latin1 strings: one byte per character, and readable diffs on failure.
  expect(rep.stdout.toString('latin1'), `replay stdout differs\n${ctx}`).toBe(rec.stdout.toString('latin1'));
  expect(rep.stderr.toString('latin1'), `replay stderr differs\n${ctx}`).toBe(rec.programStderr.toString('latin1'));
  expect(rep.status, `replay status differs\n${ctx}`).toBe(rec.status);
}

/** Records then replays a program, asserts byte equality, and returns both runs. */
export async function recordReplay(
  program: string,
  args: readonly string[] = [],
  opts: RunOptions & { expectStatus?: number; replayInput?: string | Buffer } = {},
): Promise<{ rec: Recording; rep: RunResult }> {
  const rec = await record(program, args, opts);
  expectRecorded(rec, opts.expectStatus);
  const rep = await replay(rec.traceDir, opts.replayInput === undefined ? {} : { input: opts.replayInput });
  expectSameRun(rec, rep);
  return { rec, rep };
}

/** Asserts a command failed cleanly: non-zero, no timeout, a message, and no stack trace. */
export function expectCleanFailure(r: RunResult, message: RegExp): void {
  const ctx = describeRun(r);
  expect(r.timedOut, `timed out\n${ctx}`).toBe(false);
  expect(r.status, `expected a non-zero exit\n${ctx}`).not.toBe(0);
  expect(r.signal, `killed by a signal\n${ctx}`).toBeNull();
  const err = r.stderr.toString('utf8');
  expect(err, ctx).toMatch(message);
  expect(err, `stack trace on stderr\n${ctx}`).not.toMatch(/^\s+at .*(:\d+:\d+\)?|<anonymous>)$/m);
  expect(err, `internal error instead of a clear message\n${ctx}`).not.toMatch(/internal error|Segmentation fault|core dumped/i);
}

// ---------------------------------------------------------------------------------------------
// Trace directories

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
