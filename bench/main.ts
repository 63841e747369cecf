// `npm run bench`: native, record and replay times, their ratios, and trace sizes, measured in
// one run through the real CLI. Each figure is the median of RUNS wall-clock runs; nothing is
// subtracted (process start-up, node start-up of the CLI, trace writing all count).
//
// Workloads (issue 2, "Performance"):
//   cpu-loop     a syscall-light CPU-bound loop in C (~1 s natively)
//   read-100MB   a C program reading a 100 MB temp file in 4 KiB read(2) calls
//   python-pass  python3 -c pass
// Then the service benchmarks of issue 4 (server/bench/service.ts: upload, dedup, ls latency).
//
// Usage: node dist/bench/main.js [engine|service|all]   (default: all)
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, realpathSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const RUNS = 3;
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

function gcc(work: string, name: string): string {
  const out = join(work, name);
  const r = spawnSync('gcc', ['-O1', '-o', out, join(SOURCES, `${name}.c`)], { encoding: 'utf8' });
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
}

function measure(work: string, name: string, cmd: string, args: string[]): Row {
  const native: number[] = [];
  const rec: number[] = [];
  const rep: number[] = [];
  const sizes: number[] = [];
  let sameOutput = true;
  for (let i = 0; i < RUNS; i++) {
    const n = check(`${name}: native run`, timed(cmd, args));
    native.push(n.ms);
    const trace = join(work, `${name}-trace-${i}`);
    const r = check(`${name}: rewind record`, timed(process.execPath, [CLI, 'record', '-o', trace, '--', cmd, ...args]));
    rec.push(r.ms);
    sizes.push(dirSize(trace));
    const p = check(`${name}: rewind replay`, timed(process.execPath, [CLI, 'replay', trace]));
    rep.push(p.ms);
    if (!p.stdout.equals(r.stdout)) sameOutput = false;
    rmSync(trace, { recursive: true, force: true });
    process.stderr.write('.');
  }
  return { name, native: median(native), record: median(rec), replay: median(rep), traceBytes: median(sizes), sameOutput };
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
  const head = ['workload', 'native', 'record', 'replay', 'record/native', 'replay/native', 'trace size', 'replay output'];
  const body = rows.map((r) => [
    r.name,
    fmtMs(r.native),
    fmtMs(r.record),
    fmtMs(r.replay),
    `${(r.record / r.native).toFixed(2)}x`,
    `${(r.replay / r.native).toFixed(2)}x`,
    fmtBytes(r.traceBytes),
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
    const data = join(work, 'data-100MB');
    makeFile(data, 100 * 1000 * 1000);
    const python = realPython();

    process.stderr.write(`bench: median of ${RUNS} runs each, wall clock, nothing subtracted `);
    const rows = [
      measure(work, 'cpu-loop', cpu, []),
      measure(work, 'read-100MB-4KiB', reader, [data]),
      measure(work, 'python3 -c pass', python, ['-c', 'pass']),
    ];
    process.stderr.write('\n');
    process.stdout.write(`${table(rows)}\n`);
    return rows.every((r) => r.sameOutput) ? 0 : 1;
  } catch (err) {
    if (!(err instanceof BenchError)) throw err;
    process.stderr.write(`\nbench: ${err.message}\n`);
    return 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
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
  if (!['engine', 'service', 'all'].includes(which)) {
    process.stderr.write('usage: node dist/bench/main.js [engine|service|all]\n');
    return 2;
  }
  let status = 0;
  if (which !== 'service') {
    process.stdout.write('engine: record and replay through the CLI\n');
    status |= engineBench();
  }
  if (which !== 'engine') {
    process.stdout.write('\nservice\n');
    status |= await serviceBench();
  }
  return status;
}

process.exitCode = await main();
