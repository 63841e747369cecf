// `npm run bench`: native, record and replay times, their ratios, and trace sizes, measured in
// one run through the real CLI. Each figure is the median of RUNS wall-clock runs; nothing is
// subtracted (process start-up, node start-up of the CLI, trace writing all count).
//
// Workloads (issues 2 and 3, "Performance"):
//   cpu-loop       a syscall-light CPU-bound loop in C (~1 s natively)
//   read-100MB     a C program reading a 100 MB temp file in 4 KiB read(2) calls
//   python-pass    python3 -c pass
//   threads-mutex  4 threads, mostly compute, a shared mutex (bench/threads_mutex.c); the
//                  program prints the longest run of rounds one thread finished while the
//                  others waited, natively and recorded (fairness)
//   sh-200         sh -c running 200 short commands (fork, exec, wait)
//   syscalls       200,000 getppid(2) calls (bench/syscall_loop.c): the recorder's cost per
//                  traced syscall, its two ptrace stops, printed on a line of its own
// The start-up of recording and replaying /bin/true is printed on its own line; trace bytes per
// second of recording is a column (issue 14).
// Then the debugger (issue 5, bench/debug.ts) and the service (issue 4, server/bench/service.ts).
// `positions [N]` (bench/positions.ts, not part of `all`) records and replays the positions
// corpus N times (default 100).
//
// `syscallbuf` (bench/syscall_buffer.ts, not part of `all`): issue 14's rows with the syscall
// buffer on and off, the start-up of /bin/true taken off.
//
// Usage: node dist/bench/main.js [engine|debug|service|all|positions [N]|syscallbuf]   (default: all)
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { positionsBench } from './positions.js';
import { syscallBufferBench } from './syscall_buffer.js';

const RUNS = 3;
const SYSCALLS = 200_000;
const TIMEOUT_MS = 600_000;

// dist/bench/main.js → the repository root; bench/main.ts works the same way.
const here = dirname(fileURLToPath(import.meta.url));
const REPO = existsSync(join(here, '..', 'package.json')) ? resolve(here, '..') : resolve(here, '..', '..');
const CLI = join(REPO, 'dist', 'cli', 'main.js');
const SOURCES = join(REPO, 'bench');

interface Timed {
  ms: number;
  status: number | null;
  stdout: Buffer;
  stderr: Buffer;
}

class BenchError extends Error {}

function timed(cmd: string, args: string[]): Timed {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    maxBuffer: 64 << 20,
    timeout: TIMEOUT_MS,
    killSignal: 'SIGKILL',
  });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.error) throw new BenchError(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return { ms, status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function check(what: string, r: Timed): Timed {
  if (r.status !== 0) {
    throw new BenchError(`${what} exited with ${r.status ?? 'a signal'}:\n${r.stderr.toString().trim()}`);
  }
  return r;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirSize(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

function gcc(work: string, name: string, extra: string[] = []): string {
  const out = join(work, name);
  const r = spawnSync('gcc', ['-O1', ...extra, '-o', out, join(SOURCES, `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`gcc ${name}.c failed:\n${r.stderr}`);
  return out;
}

function realPython(): string {
  // pyenv's python3 is a shell-script shim that forks; record the interpreter itself.
  const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`python3 is not usable: ${r.stderr}`);
  return realpathSync(r.stdout.trim());
}

function makeFile(path: string, bytes: number): void {
  // Random content repeated in 1 MiB blocks: no compressor shrinks it much (an honest trace size).
  const block = randomBytes(1 << 20);
  const fd = openSync(path, 'w');
  try {
    for (let done = 0; done < bytes; done += block.length) writeSync(fd, block, 0, Math.min(block.length, bytes - done));
  } finally {
    closeSync(fd);
  }
}

interface Row {
  name: string;
  native: number;
  record: number;
  replay: number;
  traceBytes: number;
  sameOutput: boolean;
  /** The last native and recorded stdout, for workloads that report something about the run. */
  nativeOut: string;
  recordedOut: string;
}

function measure(work: string, name: string, cmd: string, args: string[]): Row {
  const native: number[] = [];
  const rec: number[] = [];
  const rep: number[] = [];
  const sizes: number[] = [];
  let sameOutput = true;
  let nativeOut = '';
  let recordedOut = '';
  for (let i = 0; i < RUNS; i++) {
    const n = check(`${name}: native run`, timed(cmd, args));
    native.push(n.ms);
    nativeOut = n.stdout.toString();
    const trace = join(work, `${name}-trace-${i}`);
    const r = check(`${name}: rewind record`, timed(process.execPath, [CLI, 'record', '-o', trace, '--', cmd, ...args]));
    rec.push(r.ms);
    recordedOut = r.stdout.toString();
    sizes.push(dirSize(trace));
    const p = check(`${name}: rewind replay`, timed(process.execPath, [CLI, 'replay', trace]));
    rep.push(p.ms);
    if (!p.stdout.equals(r.stdout)) sameOutput = false;
    rmSync(trace, { recursive: true, force: true });
    process.stderr.write('.');
  }
  return {
    name,
    native: median(native),
    record: median(rec),
    replay: median(rep),
    traceBytes: median(sizes),
    sameOutput,
    nativeOut,
    recordedOut,
  };
}

/** Blob sizes by sha256, from a trace's manifest. */
function blobSizes(trace: string): Map<string, number> {
  const m = JSON.parse(readFileSync(join(trace, 'manifest.json'), 'utf8')) as { blobs: { sha256: string; size: number }[] };
  return new Map(m.blobs.map((b) => [b.sha256, b.size]));
}

/**
 * Issue 14, trace size: what a second recording of the same command adds to a store that holds
 * the first (blobs are stored once by their sha256), as a share of the first.
 */
function secondRecording(work: string, cmd: string, args: string[]): string {
  const traces = [0, 1].map((i) => {
    const trace = join(work, `dedup-${i}`);
    check('dedup: rewind record', timed(process.execPath, [CLI, 'record', '-o', trace, '--', cmd, ...args]));
    return blobSizes(trace);
  });
  const [first, second] = traces as [Map<string, number>, Map<string, number>];
  const firstBytes = [...first.values()].reduce((a, b) => a + b, 0);
  const added = [...second].filter(([sha]) => !first.has(sha)).reduce((a, [, size]) => a + size, 0);
  return `${fmtBytes(added)} of ${fmtBytes(firstBytes)} (${((100 * added) / firstBytes).toFixed(1)}%, goal < 5%)`;
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

function fmtBytes(b: number): string {
  if (b >= 1 << 20) return `${(b / (1 << 20)).toFixed(1)} MiB`;
  if (b >= 1 << 10) return `${(b / (1 << 10)).toFixed(1)} KiB`;
  return `${b} B`;
}

function table(rows: Row[]): string {
  const head = ['workload', 'native', 'record', 'replay', 'record/native', 'replay/native', 'trace size', 'trace/s recorded', 'replay output'];
  const body = rows.map((r) => [
    r.name,
    fmtMs(r.native),
    fmtMs(r.record),
    fmtMs(r.replay),
    `${(r.record / r.native).toFixed(2)}x`,
    `${(r.replay / r.native).toFixed(2)}x`,
    fmtBytes(r.traceBytes),
    `${fmtBytes(r.traceBytes / (r.record / 1000))}/s`,
    r.sameOutput ? 'same' : 'DIFFERS',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

function engineBench(): number {
  if (!existsSync(CLI)) {
    process.stderr.write(`bench: ${CLI} is missing; run npm run build first\n`);
    return 1;
  }
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-'));
  try {
    const cpu = gcc(work, 'cpu_loop');
    const reader = gcc(work, 'read_heavy');
    const threads = gcc(work, 'threads_mutex', ['-pthread']);
    const syscalls = gcc(work, 'syscall_loop');
    const data = join(work, 'data-100MB');
    makeFile(data, 100 * 1000 * 1000);
    const python = realPython();

    process.stderr.write(`bench: median of ${RUNS} runs each, wall clock, nothing subtracted `);
    const startUp = measure(work, 'start-up: /bin/true', '/bin/true', []);
    const rows = [
      measure(work, 'cpu-loop', cpu, []),
      measure(work, 'read-100MB-4KiB', reader, [data]),
      measure(work, 'python3 -c pass', python, ['-c', 'pass']),
      measure(work, 'threads-mutex (4 threads)', threads, []),
      measure(work, 'sh: 200 commands', '/bin/sh', ['-c', 'i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; echo ran $i']),
      measure(work, `syscalls: ${SYSCALLS / 1000}k getppid`, syscalls, [String(SYSCALLS)]),
    ];
    process.stderr.write('\n');
    process.stdout.write(`${table([startUp, ...rows])}\n`);
    const loop = rows.at(-1) as Row;
    const perCall = (x: number, start: number): string => `${(((x - start - (loop.native - startUp.native)) * 1000) / SYSCALLS).toFixed(2)} µs`;
    process.stdout.write(
      `per traced syscall (its two ptrace stops; start-up and native time taken off): record ${perCall(loop.record, startUp.record)}, replay ${perCall(loop.replay, startUp.replay)}\n`,
    );
    process.stdout.write(`second recording of python3 -c pass (through its shim when it has one) adds: ${secondRecording(work, 'python3', ['-c', 'pass'])}\n`);
    const fairness = rows.find((r) => r.name.startsWith('threads-mutex'));
    if (fairness) {
      process.stdout.write(`threads-mutex fairness, native: ${fairness.nativeOut.trim()}\n`);
      process.stdout.write(`threads-mutex fairness, recorded: ${fairness.recordedOut.trim()}\n`);
    }
    return rows.every((r) => r.sameOutput) ? 0 : 1;
  } catch (err) {
    if (!(err instanceof BenchError)) throw err;
    process.stderr.write(`\nbench: ${err.message}\n`);
    return 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

async function debugBench(): Promise<number> {
  const { runDebugBench } = await import('./debug.js');
  try {
    runDebugBench(CLI, SOURCES, (line) => process.stdout.write(`${line}\n`));
    return 0;
  } catch (err) {
    process.stderr.write(`bench: debugger benchmarks failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function goingBackBench(): Promise<number> {
  const { runGoingBackBench } = await import('./debug.js');
  try {
    runGoingBackBench(CLI, SOURCES, (line) => process.stdout.write(`${line}\n`));
    return 0;
  } catch (err) {
    process.stderr.write(`bench: going-back benchmarks failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function serviceBench(): Promise<number> {
  // Loaded only when asked for, so the engine figures never depend on the server code.
  const { runServiceBench } = await import('../server/bench/service.js');
  try {
    await runServiceBench({ print: (line) => process.stdout.write(`${line}\n`) });
    return 0;
  } catch (err) {
    process.stderr.write(`bench: service benchmarks failed: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

async function main(): Promise<number> {
  const which = process.argv[2] ?? 'all';
  if (!['engine', 'debug', 'going-back', 'service', 'all', 'positions', 'syscallbuf'].includes(which)) {
    process.stderr.write('usage: node dist/bench/main.js [engine|debug|going-back|service|all|positions [N]|syscallbuf]\n');
    return 2;
  }
  if (which === 'going-back') return goingBackBench();
  if (which === 'syscallbuf') {
    process.stdout.write('syscall buffer: record and replay through the CLI, with the buffer and without\n');
    return syscallBufferBench(CLI, SOURCES, (line) => process.stdout.write(`${line}\n`));
  }
  if (which === 'positions') {
    const runs = Number(process.argv[3] ?? 100);
    process.stdout.write(`positions: ${runs} recordings of each program, each replayed\n`);
    return positionsBench(REPO, CLI, runs, (line) => process.stdout.write(`${line}\n`));
  }
  let status = 0;
  if (which === 'engine' || which === 'all') {
    process.stdout.write('engine: record and replay through the CLI\n');
    status |= engineBench();
  }
  if (which === 'debug' || which === 'all') {
    process.stdout.write('\ndebugger: the engine\'s debug session on recordings of ~1 s and ~10 s\n');
    status |= await debugBench();
  }
  if (which === 'service' || which === 'all') {
    process.stdout.write('\nservice\n');
    status |= await serviceBench();
  }
  return status;
}

process.exitCode = await main();
