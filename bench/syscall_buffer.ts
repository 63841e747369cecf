// `node dist/bench/main.js syscallbuf`: issue 14's rows that the syscall buffer moves (a loop
// of rdtsc, which it patches, and rr's detach_threads: gettid through libc's syscall()), each
// recorded with the buffer (the default) and without it (REWIND_SYSCALL_BUFFER=0), against native in the same
// run. Recording and replaying /bin/true is measured too and printed on its own line: the ratios
// are of the work itself, that fixed start-up (node, the CLI, the trace's files) taken off.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdtempSync, openSync, readdirSync, realpathSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = 3;

interface Timed {
  ms: number;
  stdout: Buffer;
}

function timed(what: string, cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Timed {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 << 20, timeout: 600_000, env });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.error || r.status !== 0) {
    throw new Error(`${what}: ${r.error?.message ?? `exit ${r.status}`}\n${r.stderr.toString().trim()}`);
  }
  return { ms, stdout: r.stdout };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    total += e.isDirectory() ? dirSize(p) : e.isFile() ? statSync(p).size : 0;
  }
  return total;
}

interface Measured {
  native: number;
  record: number;
  replay: number;
  traceBytes: number;
  same: boolean;
}

function measure(cli: string, work: string, name: string, cmd: string, args: string[], buffer: boolean): Measured {
  const env = { ...process.env, REWIND_SYSCALL_BUFFER: buffer ? '1' : '0' };
  const native: number[] = [];
  const rec: number[] = [];
  const rep: number[] = [];
  const sizes: number[] = [];
  let same = true;
  for (let i = 0; i < RUNS; i++) {
    native.push(timed(`${name}: native`, cmd, args).ms);
    const trace = join(work, `trace-${i}`);
    const r = timed(`${name}: record`, process.execPath, [cli, 'record', '-o', trace, '--', cmd, ...args], env);
    rec.push(r.ms);
    sizes.push(dirSize(trace));
    const p = timed(`${name}: replay`, process.execPath, [cli, 'replay', trace], env);
    rep.push(p.ms);
    same &&= p.stdout.equals(r.stdout);
    rmSync(trace, { recursive: true, force: true });
    process.stderr.write('.');
  }
  return { native: median(native), record: median(rec), replay: median(rep), traceBytes: median(sizes), same };
}

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

export function syscallBufferBench(cli: string, sources: string, print: (line: string) => void): number {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-sb-'));
  try {
    const reader = join(work, 'read_heavy');
    const cc = spawnSync('gcc', ['-O1', '-o', reader, join(sources, 'read_heavy.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc read_heavy.c failed:\n${cc.stderr}`);
    const tsc = join(work, 'rdtsc_loop');
    const cc2 = spawnSync('gcc', ['-O1', '-o', tsc, join(sources, 'rdtsc_loop.c')], { encoding: 'utf8' });
    if (cc2.status !== 0) throw new Error(`gcc rdtsc_loop.c failed:\n${cc2.stderr}`);
    const threads = join(work, 'threads_mutex');
    const cc3 = spawnSync('gcc', ['-O1', '-pthread', '-o', threads, join(sources, 'threads_mutex.c')], { encoding: 'utf8' });
    if (cc3.status !== 0) throw new Error(`gcc threads_mutex.c failed:\n${cc3.stderr}`);
    const gettid = join(work, 'gettid_threads');
    const cc4 = spawnSync('gcc', ['-O1', '-pthread', '-o', gettid, join(sources, 'gettid_threads.c')], { encoding: 'utf8' });
    if (cc4.status !== 0) throw new Error(`gcc gettid_threads.c failed:\n${cc4.stderr}`);
    const data = join(work, 'data-100MB');
    const block = randomBytes(1 << 20);
    const fd = openSync(data, 'w');
    for (let done = 0; done < 100e6; done += block.length) writeSync(fd, block, 0, Math.min(block.length, 100e6 - done));
    closeSync(fd);
    const py = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
    const python = realpathSync(py.stdout.trim());
    const workloads: [string, string, string[]][] = [
      ['read 100 MB in 4 KiB reads', reader, [data]],
      ['python3 -c pass', python, ['-c', 'pass']],
      ['200,000 rdtsc in a loop', tsc, []],
      ['sh -c, 200 commands', '/bin/sh', ['-c', 'i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; echo ran $i']],
      ['4 threads around a mutex', threads, []],
      ['20 threads, syscall(gettid)', gettid, []],
    ];
    process.stderr.write(`bench: median of ${RUNS} runs each `);
    const startOn = measure(cli, work, '/bin/true', '/bin/true', [], true);
    const startOff = measure(cli, work, '/bin/true', '/bin/true', [], false);
    const rows = workloads.map(([name, cmd, args]) => ({
      name,
      on: measure(cli, work, name, cmd, args, true),
      off: measure(cli, work, name, cmd, args, false),
    }));
    process.stderr.write('\n');
    print(
      `start-up (/bin/true): native ${fmtMs(startOn.native)}; record ${fmtMs(startOn.record)} with the buffer, ` +
        `${fmtMs(startOff.record)} without; replay ${fmtMs(startOn.replay)}, ${fmtMs(startOff.replay)}`,
    );
    print('ratios to native of the work itself (start-up taken off); buffer on | off');
    const ratio = (x: number, start: number, native: number, nativeStart: number): string =>
      `${(Math.max(x - start, 0) / Math.max(native - nativeStart, 0.001)).toFixed(2)}x`;
    let ok = true;
    for (const { name, on, off } of rows) {
      ok &&= on.same && off.same;
      print(
        `${name.padEnd(28)} native ${fmtMs(on.native).padStart(7)}  ` +
          `record ${ratio(on.record, startOn.record, on.native, startOn.native).padStart(7)} | ${ratio(off.record, startOff.record, off.native, startOff.native).padStart(7)}  ` +
          `replay ${ratio(on.replay, startOn.replay, on.native, startOn.native).padStart(7)} | ${ratio(off.replay, startOff.replay, off.native, startOff.native).padStart(7)}  ` +
          `(raw record ${fmtMs(on.record)} | ${fmtMs(off.record)}, trace ${(on.traceBytes / 1e6).toFixed(1)} MB | ${(off.traceBytes / 1e6).toFixed(1)} MB` +
          `${on.same && off.same ? '' : ', REPLAY OUTPUT DIFFERS'})`,
      );
    }
    return ok ? 0 : 1;
  } catch (err) {
    process.stderr.write(`\nbench: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
