// `node dist/bench/main.js syscallbuf`: issue 14's rows that the syscall buffer moves (a loop
// of rdtsc, which it patches, rr's detach_threads: gettid through libc's syscall(), make, git,
// and two HTTP servers' throughput against an unrecorded client), each
// recorded with the buffer (the default) and without it (REWIND_SYSCALL_BUFFER=0), against native in the same
// run. Recording and replaying /bin/true is measured too and printed on its own line: the ratios
// are of the work itself, that fixed start-up (node, the CLI, the trace's files) taken off.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
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
  // Why a replay failed (a divergence): the row says so and the bench goes on to the others.
  failure?: string;
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
    let p: Timed;
    try {
      p = timed(`${name}: replay`, process.execPath, [cli, 'replay', trace], env);
    } catch (err) {
      const failure = (err instanceof Error ? err.message : String(err)).split('\n').slice(-1)[0];
      return { native: median(native), record: median(rec), replay: NaN, traceBytes: median(sizes), same: false, failure };
    } finally {
      rmSync(trace, { recursive: true, force: true });
    }
    rep.push(p.ms);
    same &&= p.stdout.equals(r.stdout);
    process.stderr.write('.');
  }
  return { native: median(native), record: median(rec), replay: median(rep), traceBytes: median(sizes), same };
}

/** A C project of 20 files with a Makefile, for `make -B -j2` (every file compiled each run). */
function makeProject(dir: string): void {
  mkdirSync(dir);
  const objects: string[] = [];
  for (let i = 0; i < 20; i++) {
    const fns = Array.from({ length: 40 }, (_, j) => `int f${i}_${j}(int x) { int s = 0; for (int k = 0; k < x; k++) s += k * ${j + 1} ^ (s >> 3); return s; }`);
    writeFileSync(join(dir, `m${i}.c`), `#include <stdio.h>\n${fns.join('\n')}\n`);
    objects.push(`m${i}.o`);
  }
  writeFileSync(join(dir, 'main.c'), 'int main(void) { return 0; }\n');
  writeFileSync(join(dir, 'Makefile'), `prog: main.o ${objects.join(' ')}\n\tcc -o $@ $^\n%.o: %.c\n\tcc -O1 -c -o $@ $<\n`);
}

/** A git repository of 5,000 committed files in 50 directories, for `git status`. */
function gitRepository(dir: string): void {
  mkdirSync(dir);
  for (let d = 0; d < 50; d++) {
    mkdirSync(join(dir, `d${d}`));
    for (let f = 0; f < 100; f++) writeFileSync(join(dir, `d${d}`, `f${f}.txt`), `file ${d}/${f}\n`);
  }
  const env = { ...process.env, GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'bench@localhost', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'bench@localhost' };
  for (const args of [['init', '-q'], ['add', '.'], ['commit', '-q', '-m', 'files']]) {
    const r = spawnSync('git', ['-C', dir, ...args], { env, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`git ${args[0]} failed:\n${r.stderr}`);
  }
}

const REQUESTS = 10_000;

/**
 * Seconds the unrecorded client took for REQUESTS answers from `server` (a command that gets the
 * port and REQUESTS as its last arguments): both run by one shell, which waits for both.
 */
function served(what: string, client: string, work: string, server: string[]): number {
  const port = String(20_000 + Math.floor(Math.random() * 30_000));
  const out = join(work, 'client.out');
  rmSync(out, { force: true });
  const script = '"$0" "$1" "$2" "$3" & c=$!; shift 3; "$@"; s=$?; wait $c || s=1; exit $s';
  timed(what, '/bin/sh', ['-c', script, client, port, String(REQUESTS), out, ...server, port, String(REQUESTS)]);
  return Number(readFileSync(out, 'utf8'));
}

interface Throughput {
  native: number;
  recorded: number;
  replay: number;
  traceBytes: number;
}

/** A server answering REQUESTS from the client, natively and recorded (the buffer on), and replayed. */
function measureServer(cli: string, work: string, name: string, client: string, cmd: string, args: string[]): Throughput {
  const native: number[] = [];
  const recorded: number[] = [];
  const rep: number[] = [];
  const sizes: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    native.push(served(`${name}: native`, client, work, [cmd, ...args]));
    const trace = join(work, `trace-${i}`);
    recorded.push(served(`${name}: record`, client, work, [process.execPath, cli, 'record', '-o', trace, '--', cmd, ...args]));
    sizes.push(dirSize(trace));
    rep.push(timed(`${name}: replay`, process.execPath, [cli, 'replay', trace]).ms);
    rmSync(trace, { recursive: true, force: true });
    process.stderr.write('.');
  }
  return { native: median(native), recorded: median(recorded), replay: median(rep), traceBytes: median(sizes) };
}

const NODE_SERVER = `import http from 'node:http';
const [port, count] = process.argv.slice(2).map(Number);
let served = 0;
const server = http.createServer((req, res) => {
  res.sendDate = false;
  res.writeHead(200, { 'Content-Length': '6' });
  res.end('hello\\n');
  if (++served === count) {
    console.log(\`served \${served}\`);
    server.close();
    server.closeAllConnections();
  }
});
server.listen(port, '127.0.0.1');
`;

function fmtMs(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`;
}

export function syscallBufferBench(cli: string, sources: string, print: (line: string) => void): number {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-sb-'));
  try {
    const compile = (name: string, extra: string[] = []): string => {
      const exe = join(work, name);
      const cc = spawnSync('gcc', ['-O1', ...extra, '-o', exe, join(sources, `${name}.c`)], { encoding: 'utf8' });
      if (cc.status !== 0) throw new Error(`gcc ${name}.c failed:\n${cc.stderr}`);
      return exe;
    };
    const reader = compile('read_heavy');
    const tsc = compile('rdtsc_loop');
    const threads = compile('threads_mutex', ['-pthread']);
    const gettid = compile('gettid_threads', ['-pthread']);
    const httpServer = compile('http_server');
    const httpClient = compile('http_client');
    const nodeServer = join(work, 'server.mjs');
    writeFileSync(nodeServer, NODE_SERVER);
    const data = join(work, 'data-100MB');
    const block = randomBytes(1 << 20);
    const fd = openSync(data, 'w');
    for (let done = 0; done < 100e6; done += block.length) writeSync(fd, block, 0, Math.min(block.length, 100e6 - done));
    closeSync(fd);
    const project = join(work, 'project');
    makeProject(project);
    const repository = join(work, 'repository');
    gitRepository(repository);
    const py = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
    const python = realpathSync(py.stdout.trim());
    const workloads: [string, string, string[]][] = [
      ['read 100 MB in 4 KiB reads', reader, [data]],
      ['python3 -c pass', python, ['-c', 'pass']],
      ['200,000 rdtsc in a loop', tsc, []],
      ['sh -c, 200 commands', '/bin/sh', ['-c', 'i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; echo ran $i']],
      ['4 threads around a mutex', threads, []],
      ['20 threads, syscall(gettid)', gettid, []],
      ['make -B -j2, 20 C files', 'make', ['-s', '-B', '-j2', '-C', project]],
      ['git status, 5,000 files', 'git', ['-C', repository, 'status', '--short']],
    ];
    process.stderr.write(`bench: median of ${RUNS} runs each `);
    const startOn = measure(cli, work, '/bin/true', '/bin/true', [], true);
    const startOff = measure(cli, work, '/bin/true', '/bin/true', [], false);
    const rows = workloads.map(([name, cmd, args]) => ({
      name,
      on: measure(cli, work, name, cmd, args, true),
      off: measure(cli, work, name, cmd, args, false),
    }));
    const servers = (
      [
        ['C server with epoll', httpServer, []],
        ['node http server', process.execPath, [nodeServer]],
      ] as [string, string, string[]][]
    ).map(([name, cmd, args]) => ({ name, t: measureServer(cli, work, name, httpClient, cmd, args) }));
    process.stderr.write('\n');
    print(
      `start-up (/bin/true): native ${fmtMs(startOn.native)}; record ${fmtMs(startOn.record)} with the buffer, ` +
        `${fmtMs(startOff.record)} without; replay ${fmtMs(startOn.replay)}, ${fmtMs(startOff.replay)}`,
    );
    print('ratios to native of the work itself (start-up taken off); buffer on | off');
    print('("noise": the work took no longer than the start-up varies between runs; see the raw times)');
    const ratio = (x: number, start: number, native: number, nativeStart: number): string =>
      Number.isNaN(x) ? 'failed' : x <= start ? 'noise' : `${((x - start) / Math.max(native - nativeStart, 0.001)).toFixed(2)}x`;
    let ok = true;
    for (const { name, on, off } of rows) {
      ok &&= on.same && off.same;
      print(
        `${name.padEnd(28)} native ${fmtMs(on.native).padStart(7)}  ` +
          `record ${ratio(on.record, startOn.record, on.native, startOn.native).padStart(7)} | ${ratio(off.record, startOff.record, off.native, startOff.native).padStart(7)}  ` +
          `replay ${ratio(on.replay, startOn.replay, on.native, startOn.native).padStart(7)} | ${ratio(off.replay, startOff.replay, off.native, startOff.native).padStart(7)}  ` +
          `(raw record ${fmtMs(on.record)} | ${fmtMs(off.record)}, replay ${fmtMs(on.replay)} | ${fmtMs(off.replay)}, trace ${(on.traceBytes / 1e6).toFixed(1)} MB | ${(off.traceBytes / 1e6).toFixed(1)} MB, ` +
          `${(on.traceBytes / 1e6 / (on.record / 1000)).toFixed(1)} MB per second recorded` +
          `${on.same && off.same ? '' : ', REPLAY OUTPUT DIFFERS'})`,
      );
      for (const failed of [on, off]) if (failed.failure) print(`  REPLAY FAILED (buffer ${failed === on ? 'on' : 'off'}): ${failed.failure}`);
    }
    print(`servers answering ${REQUESTS.toLocaleString('en')} requests from an unrecorded client on loopback, one after another; recorded with the buffer`);
    for (const { name, t } of servers) {
      print(
        `${name.padEnd(28)} native ${t.native.toFixed(2)} s  recorded ${t.recorded.toFixed(2)} s: throughput ${((100 * t.native) / t.recorded).toFixed(0)}% of native  ` +
          `(replay ${fmtMs(t.replay)}, trace ${(t.traceBytes / 1e6).toFixed(1)} MB)`,
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
