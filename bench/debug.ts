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
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
