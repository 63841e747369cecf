// The debugger's figures (issue 5, "Performance"): on recordings of about 1 s and 10 s of
// execution, the time to the first stop at main, to reverse-continue from the end to a
// breakpoint near the start, to reverse-stepi from there, and to continue forwards to the end.
// The session is the engine's own (what the gdb server drives), in this process.
//
// Going back skips the windows between checkpoints whose code coverage (per page) shows that
// the breakpoint's page did not run there, so its cost depends on the program's layout: it is
// measured with setup() on the loop's page (every window must be replayed) and on a page of its
// own.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadEngine, stubPath, type DebugSession } from '../native/index.js';

interface DebugRow {
  layout: string;
  seconds: number;
  native: number;
  toMain: number;
  toEnd: number;
  reverseContinue: number;
  windows: { windowsReplayed: number; windowsSkipped: number };
  reverseStepi: number;
  forwardToEnd: number;
}

function symbol(exe: string, name: string): bigint {
  const line = execFileSync('nm', [exe], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.endsWith(` ${name}`));
  if (!line) throw new Error(`${name} is not in ${exe}`);
  return BigInt(`0x${line.split(' ')[0]}`);
}

function ms(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function expectReason(what: string, got: string, want: string): void {
  if (got !== want) throw new Error(`${what}: stopped for ${got}, expected ${want}`);
}

/** Records `exe args` into `trace`. */
function recordTrace(cli: string, trace: string, exe: string, args: string[]): void {
  const rec = spawnSync(process.execPath, [cli, 'record', '-o', trace, '--', exe, ...args], { stdio: 'ignore' });
  if (rec.status !== 0) throw new Error(`recording ${exe} ${args.join(' ')} failed`);
}

function openSession(trace: string): DebugSession {
  const manifest = JSON.parse(readFileSync(join(trace, 'manifest.json'), 'utf8')) as { blobs: { sha256: string; role: string }[] };
  const events = manifest.blobs.find((b) => b.role === 'events');
  if (!events) throw new Error('the trace has no event stream');
  return loadEngine().debug({ traceDir: trace, eventsPath: join(trace, 'blobs', events.sha256), stubPath: stubPath(), stdoutFd: -1, stderrFd: -1 });
}

function measureDebug(cli: string, work: string, layout: string, exe: string, seconds: number): DebugRow {
  let t = process.hrtime.bigint();
  const native = spawnSync(exe, [String(seconds)], { stdio: 'ignore' });
  if (native.status !== 0) throw new Error(`${exe} failed natively`);
  const nativeMs = ms(t);
  const trace = join(work, `debug-${seconds}s`);
  recordTrace(cli, trace, exe, [String(seconds)]);

  t = process.hrtime.bigint();
  const s = openSession(trace);
  try {
    const main = symbol(exe, 'main');
    s.setBreakpoint(main);
    expectReason('continue to main', s.resume({ reverse: false, step: false }).reason, 'breakpoint');
    const toMain = ms(t);
    s.removeBreakpoint(main);
    t = process.hrtime.bigint();
    expectReason('continue to the end', s.resume({ reverse: false, step: false }).reason, 'end');
    const toEnd = ms(t);
    s.setBreakpoint(symbol(exe, 'setup'));
    t = process.hrtime.bigint();
    expectReason('reverse-continue', s.resume({ reverse: true, step: false }).reason, 'breakpoint');
    const reverseContinue = ms(t);
    const windows = s.stats();
    t = process.hrtime.bigint();
    expectReason('reverse-stepi', s.resume({ reverse: true, step: true }).reason, 'step');
    const reverseStepi = ms(t);
    t = process.hrtime.bigint();
    expectReason('forwards to the end', s.resume({ reverse: false, step: false }).reason, 'breakpoint');
    expectReason('forwards to the end', s.resume({ reverse: false, step: false }).reason, 'end');
    const forwardToEnd = ms(t);
    return { layout, seconds, native: nativeMs, toMain, toEnd, reverseContinue, windows, reverseStepi, forwardToEnd };
  } finally {
    s.close();
    rmSync(trace, { recursive: true, force: true });
  }
}

function fmt(ms: number): string {
  return ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(1)} ms`;
}

/**
 * Going back in a recording of 4 threads (bench/threads_mutex.c, about 1 s of CPU): checkpoints
 * are taken among the threads, so a step back from the end or a seek to the middle replays from
 * a nearby checkpoint, not from the start.
 */
function measureThreads(cli: string, work: string, sources: string, print: (line: string) => void): void {
  const exe = join(work, 'threads_mutex');
  const cc = spawnSync('gcc', ['-O2', '-pthread', '-o', exe, join(sources, 'threads_mutex.c')], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc threads_mutex.c failed:\n${cc.stderr}`);
  const trace = join(work, 'threads');
  recordTrace(cli, trace, exe, []);
  const s = openSession(trace);
  try {
    let t = process.hrtime.bigint();
    expectReason('continue to the end', s.resume({ reverse: false, step: false }).reason, 'end');
    const toEnd = ms(t);
    t = process.hrtime.bigint();
    expectReason('reverse-stepi', s.resume({ reverse: true, step: true }).reason, 'step');
    const stepBack = ms(t);
    const middle = Math.floor(s.when().events / 2);
    t = process.hrtime.bigint();
    s.seek(middle);
    const seekBack = ms(t);
    print(
      `threads (4, ~1 s): continue to end ${fmt(toEnd)}, reverse-stepi from the end ${fmt(stepBack)}, ` +
        `monitor seek back to the middle ${fmt(seekBack)}; ${s.stats().checkpoints} checkpoints`,
    );
  } finally {
    s.close();
    rmSync(trace, { recursive: true, force: true });
  }
}

/** The address range of a source line's code (all its line-table entries, which are contiguous here). */
function lineRange(exe: string, line: number, next: number): { start: bigint; end: bigint } {
  const at = (n: number): bigint => {
    const out = execFileSync('gdb', ['-batch', '-nx', '-ex', `info line going_back.c:${n}`, exe], { encoding: 'utf8' });
    const m = /starts at address (0x[0-9a-f]+)/.exec(out);
    if (!m) throw new Error(`no address for line ${n}: ${out}`);
    return BigInt(m[1]!);
  };
  return { start: at(line), end: at(next) };
}

/** The 1-based line of `mark:NAME` in a source file. */
function markedLine(source: string, mark: string): number {
  const i = readFileSync(source, 'utf8').split('\n').findIndex((l) => l.includes(`mark:${mark} `));
  if (i < 0) throw new Error(`no mark:${mark} in ${source}`);
  return i + 1;
}

const RDI = 112;
const RIP = 128;

/**
 * Going back where users go back most (issue 13.5), each against forward replay of the window it
 * crosses, in the same run, on test/fixtures/going_back.c (40 rounds of 100 calls of tick(), a
 * write to `hot` in each, then a one-line loop of 3M iterations): reverse-continue to a
 * breakpoint whose condition (evaluated in the replay) is true six rounds back, the first and
 * the next reverse-continue on a watchpoint on `hot`, and `next` (a range step) over the loop.
 */
function measureGoingBack(cli: string, work: string, sources: string, print: (line: string) => void): void {
  const source = join(sources, '..', 'test', 'fixtures', 'going_back.c');
  const exe = join(work, 'going_back');
  const cc = spawnSync('gcc', ['-O1', '-g', '-no-pie', '-o', exe, source], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`gcc going_back.c failed:\n${cc.stderr}`);
  const rounds = 40;
  const trace = join(work, 'going-back');
  recordTrace(cli, trace, exe, [String(rounds)]);
  const oneLine = lineRange(exe, markedLine(source, 'one_line'), markedLine(source, 'after_loop'));
  // The machine is shared: each figure is the median of three sessions.
  const runs = [0, 1, 2].map(() => goingBackOnce(trace, exe, rounds, oneLine));
  rmSync(trace, { recursive: true, force: true });
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[1]!;
  const rows = runs[0]!.map(([what], i) => [what, median(runs.map((r) => r[i]![1])), median(runs.map((r) => r[i]![2]))] as const);
  const width = Math.max(...rows.map(([what]) => what.length));
  print(`${'going back (issue 13.5), median of 3'.padEnd(width)}  ${'time'.padStart(9)}  ${'forwards'.padStart(9)}  ratio  target <= 1.5`);
  for (const [what, took, forward] of rows) {
    const ratio = took / forward;
    print(`${what.padEnd(width)}  ${fmt(took).padStart(9)}  ${fmt(forward).padStart(9)}  ${ratio.toFixed(2).padStart(5)}  ${ratio <= 1.5 ? 'met' : 'missed'}`);
  }
}

/** One session of measureGoingBack's: [what, time, forward replay of the same window]. */
function goingBackOnce(trace: string, exe: string, rounds: number, oneLine: { start: bigint; end: bigint }): [string, number, number][] {
  const s = openSession(trace);
  const rows: [string, number, number][] = [];
  const timed = <T>(f: () => T): [T, number] => {
    const t = process.hrtime.bigint();
    const r = f();
    return [r, ms(t)];
  };
  const reg = (offset: number): bigint => s.registers(s.pid).general.readBigUInt64LE(offset);
  try {
    s.setBreakpoint(oneLine.start);
    expectReason('continue to the one-line loop', s.resume({ reverse: false, step: false }).reason, 'breakpoint');
    // round == K && i == 50, as gdb compiles it at tick's entry (round in edi, i in esi).
    const k = rounds - 6;
    const condition = Buffer.from([0x26, 0, 5, 0x16, 32, 0x22, k, 0x13, 0x26, 0, 4, 0x16, 32, 0x22, 50, 0x13, 0x0f, 0x27]);
    const tick = symbol(exe, 'tick');
    s.setBreakpoint(tick, [condition]);
    const [back, backMs] = timed(() => s.resume({ reverse: true, step: false }));
    expectReason('reverse-continue to the conditional breakpoint', back.reason, 'breakpoint');
    if (reg(RDI) !== BigInt(k)) throw new Error(`the conditional breakpoint stopped in round ${reg(RDI)}, not ${k}`);
    const [, forwardMs] = timed(() => expectReason('continue back to the loop', s.resume({ reverse: false, step: false }).reason, 'breakpoint'));
    rows.push(['reverse-continue to a conditional breakpoint six rounds (600 calls) back', backMs, forwardMs]);
    s.removeBreakpoint(tick);

    const hot = symbol(exe, 'hot');
    s.setWatchpoint('write', hot, 8);
    const [first, firstMs] = timed(() => s.resume({ reverse: true, step: false }));
    expectReason('first reverse-continue on the watchpoint', first.reason, 'watchpoint');
    const [next, nextMs] = timed(() => s.resume({ reverse: true, step: false }));
    expectReason('next reverse-continue on the watchpoint', next.reason, 'watchpoint');
    // Stopped before the write (going back, a watchpoint stops before its instruction): the
    // first stop forwards is that write's.
    expectReason('continue over the write', s.resume({ reverse: false, step: false }).reason, 'watchpoint');
    const [, nextForwardMs] = timed(() => expectReason('continue to the last write', s.resume({ reverse: false, step: false }).reason, 'watchpoint'));
    const [, firstForwardMs] = timed(() => expectReason('continue to the loop', s.resume({ reverse: false, step: false }).reason, 'breakpoint'));
    rows.push(['first reverse-continue on a watchpoint written at every pass', firstMs, firstForwardMs]);
    rows.push(['next reverse-continue on it', nextMs, nextForwardMs]);
    s.removeWatchpoint('write', hot, 8);

    const [stepped, stepMs] = timed(() => s.resume({ reverse: false, step: true, range: oneLine }));
    expectReason('next over the one-line loop', stepped.reason, 'step');
    if (reg(RIP) !== oneLine.end) throw new Error(`next stopped at 0x${reg(RIP).toString(16)}, not at the next line`);
    expectReason('reverse-continue to the loop', s.resume({ reverse: true, step: false }).reason, 'breakpoint');
    s.removeBreakpoint(oneLine.start);
    s.setBreakpoint(oneLine.end);
    const [, loopForwardMs] = timed(() => expectReason('continue over the loop', s.resume({ reverse: false, step: false }).reason, 'breakpoint'));
    rows.push(['next over a one-line loop of 3M iterations (range stepping)', stepMs, loopForwardMs]);
  } finally {
    s.close();
  }
  return rows;
}

export function runGoingBackBench(cli: string, sources: string, print: (line: string) => void): void {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-back-'));
  try {
    measureGoingBack(cli, work, sources, print);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

export function runDebugBench(cli: string, sources: string, print: (line: string) => void): void {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-debug-'));
  try {
    const layouts = [
      { layout: "setup() on the loop's page", flags: [] },
      { layout: 'setup() on its own page', flags: ['-DOWN_PAGES'] },
    ];
    const rows: DebugRow[] = [];
    for (const { layout, flags } of layouts) {
      const exe = join(work, `debug_target${flags.join('')}`);
      const cc = spawnSync('gcc', ['-O1', '-no-pie', ...flags, '-o', exe, join(sources, 'debug_target.c')], { encoding: 'utf8' });
      if (cc.status !== 0) throw new Error(`gcc debug_target.c failed:\n${cc.stderr}`);
      for (const seconds of [1, 10]) rows.push(measureDebug(cli, work, layout, exe, seconds));
    }
    const head = ['layout', 'recording', 'native', 'first stop at main', 'continue to end', 'reverse-continue to setup()', 'windows replayed/skipped', 'reverse-stepi', 'continue to end again'];
    const body = rows.map((r) => [
      r.layout,
      `~${r.seconds} s`,
      fmt(r.native),
      fmt(r.toMain),
      fmt(r.toEnd),
      fmt(r.reverseContinue),
      `${r.windows.windowsReplayed}/${r.windows.windowsSkipped}`,
      fmt(r.reverseStepi),
      fmt(r.forwardToEnd),
    ]);
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
    const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i] ?? 0)).join('  ');
    print(line(head));
    print(widths.map((w) => '-'.repeat(w)).join('  '));
    for (const row of body) print(line(row));
    for (const r of rows.filter((row) => row.seconds === 1)) {
      print(`target: reverse-continue on the 1 s recording < 0.5 s, ${r.layout}: ${r.reverseContinue < 500 ? 'met' : 'missed'} (${fmt(r.reverseContinue)})`);
    }
    measureThreads(cli, work, sources, print);
    measureGoingBack(cli, work, sources, print);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
