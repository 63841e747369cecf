// Issue 13, problem 5: going back fast where users go back most. A breakpoint condition gdb
// can compile is evaluated in the replay (no round trip per hit), forwards and backwards; `next`
// over a one-line loop is one range step at full speed (vCont;r), which Ctrl-C interrupts.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { execFileSync } from 'node:child_process';
import { expectNoStray, gdbBatch, gdbInterrupted, lineOf, RawClient, startServer } from './gdb_harness.js';
import { expectSessionEnded, gdbMi, miField } from './mi_harness.js';

afterAll(cleanupTemps);

let exe: string;
let traceDir: string;
const oneLine = lineOf('going_back.c', 'one_line');
const afterLoop = lineOf('going_back.c', 'after_loop');

beforeAll(async () => {
  requireCli();
  exe = compile('going_back');
  const rec = await record(exe);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

/** How many stop replies of each kind the session sent (its REWIND_DEBUG_RSP log). */
function replies(log: string, what: RegExp): number {
  return log.split('\n').filter((l) => l.startsWith('rewind: -> ') && what.test(l)).length;
}

it('evaluates a breakpoint condition in the replay, forwards and backwards', async () => {
  const server = await startServer(traceDir, [], { REWIND_DEBUG_RSP: '1' });
  const children = server.descendants();
  const commands = [
    `break going_back.c:${oneLine}`,
    'continue',
    'break tick if i == 50',
    'reverse-continue',
    'print round',
    ...Array.from({ length: 5 }, () => 'reverse-continue'),
    'print round',
    'print i',
    'continue',
    'print round',
    'info breakpoints',
  ];
  const gdb = await gdbBatch(server.port, commands, { timeoutMs: 300_000 });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  expect(s[1], ctx).toMatch(new RegExp(`main .*going_back\\.c:${oneLine}`));
  expect(s[3], ctx).toMatch(/Breakpoint 2, tick \(round=round@entry=19, i=50\)/);
  expect(s[4], ctx).toContain('$1 = 19');
  // Six hits back.
  expect(s[9], ctx).toMatch(/Breakpoint 2, tick \(round=round@entry=14, i=50\)/);
  expect(s[10], ctx).toContain('$2 = 14');
  expect(s[11], ctx).toContain('$3 = 50');
  expect(s[13], ctx).toContain('$4 = 15');
  // gdb had the replay evaluate it (a Z0 with an agent expression), and saw only the hits where
  // it was true: 8 of the 2,000 times tick() ran between the stops, not one a pass.
  const log = server.stderr();
  expect(log, ctx).toMatch(/<- Z0,[0-9a-f]+,1;X[0-9a-f]+,[0-9a-f]+/);
  expect(replies(log, /T05swbreak/), ctx).toBeLessThan(40);
  expect(s[14], ctx).toMatch(/stop only if i == 50/);
}, 300_000);

it('evaluates it the same way for an IDE (MI), and a condition change replaces the old one', async () => {
  const server = await startServer(traceDir, [], { REWIND_DEBUG_RSP: '1' });
  const children = server.descendants();
  const commands = [
    `-target-select extended-remote 127.0.0.1:${server.port}`,
    `-break-insert going_back.c:${oneLine}`,
    '-exec-continue',
    '-break-insert -c "i == 7" tick',
    '-exec-continue --reverse',
    '-data-evaluate-expression round',
    '-data-evaluate-expression i',
    '-break-condition 2 i == 99 && round == 17',
    '-exec-continue --reverse',
    '-data-evaluate-expression round',
    '-data-evaluate-expression i',
    '-exec-continue',
  ];
  const run = await gdbMi(null, commands, 300_000);
  const ctx = await expectSessionEnded(server, children, run.transcript);
  expect(run.replies.length, ctx).toBe(commands.length);
  const r = run.replies;
  expect(r[4]!.stopped, ctx).toMatch(/reason="breakpoint-hit".*bkptno="2"/);
  expect(miField(r[5]!.result, 'value'), ctx).toBe('19');
  expect(miField(r[6]!.result, 'value'), ctx).toBe('7');
  expect(r[8]!.stopped, ctx).toMatch(/reason="breakpoint-hit".*bkptno="2"/);
  expect(miField(r[9]!.result, 'value'), ctx).toBe('17');
  expect(miField(r[10]!.result, 'value'), ctx).toBe('99');
  // Forwards from there, the new condition holds nowhere later: on to the one-line loop.
  expect(r[11]!.stopped, ctx).toMatch(/reason="breakpoint-hit".*bkptno="1"/);
  expect(replies(server.stderr(), /T05swbreak/), ctx).toBeLessThan(40);
}, 300_000);

it('steps over a one-line loop of 3M iterations in one range step', async () => {
  const server = await startServer(traceDir, [], { REWIND_DEBUG_RSP: '1' });
  const children = server.descendants();
  // Back to the loop's start with reverse-continue: reverse-next single-steps back (gdb has no
  // reverse range stepping), which a loop of 3M iterations is too long for.
  const commands = [`break going_back.c:${oneLine}`, 'continue', 'next', 'print total', 'reverse-continue', 'print total', 'next', 'print total'];
  const gdb = await gdbBatch(server.port, commands, { timeoutMs: 300_000 });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  expect(s[2], ctx).toMatch(new RegExp(`^${afterLoop}\\t`, 'm'));
  const sum = ((3_000_000n * 2_999_999n) / 2n).toString();
  expect(s[3], ctx).toContain(`$1 = ${sum}`);
  expect(s[4], ctx).toMatch(new RegExp(`^${oneLine}\\t`, 'm'));
  expect(s[5], ctx).toContain('$2 = 0');
  expect(s[7], ctx).toContain(`$3 = ${sum}`);
  const log = server.stderr();
  const ranges = log.split('\n').filter((l) => l.startsWith('rewind: <- vCont;r'));
  expect(ranges.length, ctx).toBeGreaterThanOrEqual(2);
  expect(ranges.length, ctx).toBeLessThan(10);
  // Not a single step per iteration.
  expect(log.split('\n').filter((l) => /^rewind: <- vCont;s/.test(l)).length, ctx).toBeLessThan(20);
}, 300_000);

it('Ctrl-C stops a next over a long one-line loop, in the loop', async () => {
  // About 2 s of the one-line loop, after one round.
  const rec = await record(exe, ['1', '2000000000']);
  expectRecorded(rec, 0);
  const server = await startServer(rec.traceDir);
  const children = server.descendants();
  const commands = [`break going_back.c:${oneLine}`, 'continue', 'next', 'print k < 2000000000', 'print k > 0', 'info line *$pc'];
  const gdb = await gdbInterrupted(server.port, commands, 300, 2);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  expect(s[2], ctx).toMatch(/Program received signal SIGINT, Interrupt\./);
  expect(gdb.stopMs, ctx).toBeLessThan(1500);
  expect(s[3], ctx).toContain('= 1');
  expect(s[4], ctx).toContain('= 1');
  expect(s[5], ctx).toMatch(new RegExp(`Line ${oneLine} of`));
}, 300_000);

it('goes back to the writes of a watchpoint written at every pass of a loop, one after another', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const tickLine = lineOf('going_back.c', 'tick');
  const commands = [`break going_back.c:${oneLine}`, 'continue', 'watch hot', 'reverse-continue', 'reverse-continue', 'print i', 'print round', 'continue', 'continue'];
  const gdb = await gdbBatch(server.port, commands, { timeoutMs: 300_000 });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  // Backwards, gdb shows the value after the write as old and the one before as new.
  const change = (before: number, after: number): RegExp => new RegExp(`Old value = ${after}\\nNew value = ${before}\\n[^]*^${tickLine}\\t`, 'm');
  expect(s[3], ctx).toMatch(change(19098, 19099));
  expect(s[4], ctx).toMatch(change(19097, 19098));
  expect(s[5], ctx).toContain('$1 = 98');
  expect(s[6], ctx).toContain('$2 = 19');
  expect(s[7], ctx).toMatch(/Old value = 19097\nNew value = 19098/);
  expect(s[8], ctx).toMatch(/Old value = 19098\nNew value = 19099/);
}, 300_000);

it('refuses malformed conditions and ranges, and stops where a condition cannot be evaluated', async () => {
  const fixed = compile('going_back', { extra: ['-no-pie'], outName: 'going_back_fixed' });
  const tick = /^([0-9a-f]+) T tick$/m.exec(execFileSync('nm', [fixed], { encoding: 'utf8' }))![1]!;
  const rec = await record(fixed, ['2', '10']);
  expectRecorded(rec, 0);
  const server = await startServer(rec.traceDir);
  const children = server.descendants();
  const client = await RawClient.connect(server.port);
  try {
    expect(await client.ask('QStartNoAckMode')).toBe('OK');
    expect((await client.ask('qSupported:swbreak+')).split(';')).toContain('ConditionalBreakpoints+');
    expect(await client.ask('vCont?')).toMatch(/;r$/);
    // Lengths that do not match, bad hex, an empty expression.
    for (const bad of [`Z0,${tick},1;X3,2227`, `Z0,${tick},1;X2,zz27`, `Z0,${tick},1;X0,`, `Z0,${tick},1;Y2,2227`]) {
      expect(await client.ask(bad), bad).toMatch(/^E/);
    }
    expect(await client.ask(`vCont;r${'f'.repeat(17)},1:-1`)).toMatch(/^E/);
    // A condition that loops forever (goto 0) is cut short and stops, as does reading unmapped memory.
    expect(await client.ask(`Z0,${tick},1;X3,210000`)).toBe('OK');
    expect(await client.ask('vCont;c')).toMatch(/^T05swbreak:;/);
    expect(await client.ask(`Z0,${tick},1;X4,22001a27`)).toBe('OK');
    expect(await client.ask('vCont;c')).toMatch(/^T05swbreak:;/);
    // false: (0 == 1); replaces the last: no stop at tick before the end.
    expect(await client.ask(`Z0,${tick},1;X6,220022011327`)).toBe('OK');
    expect(await client.ask('vCont;c')).toMatch(/replaylog:end/);
    // An empty range steps one instruction.
    expect(await client.ask('bs')).toMatch(/^T05/);
    expect(await client.ask('vCont;r10,10:-1')).toMatch(/^T05/);
    client.send('vKill;1');
  } finally {
    client.close();
  }
  expect(await server.exited).toBe(0);
  expectNoStray(children, server.stderr());
}, 120_000);

/** `monitor history`'s counts of the windows reverse-continue replayed and skipped. */
function windows(out: string): { replayed: number; skipped: number } {
  const m = /replayed (\d+) windows between them and skipped (\d+)/.exec(out);
  if (!m) throw new Error(`no monitor history in: ${out}`);
  return { replayed: Number(m[1]), skipped: Number(m[2]) };
}

/** leftover.c, recorded: a breakpoint on beside() shares hot()'s page, which runs in every window. */
async function recordLeftover(): Promise<string> {
  const exe = compile('leftover');
  const nm = execFileSync('nm', [exe], { encoding: 'utf8' });
  const at = (name: string): number => parseInt(new RegExp(`^([0-9a-f]+) T ${name}$`, 'm').exec(nm)![1]!, 16);
  expect(at('beside') >> 12, 'beside() is on the page of hot()').toBe(at('hot') >> 12);
  const rec = await record(exe);
  expectRecorded(rec, 1);
  return rec.traceDir;
}

it('a breakpoint left beside a hot loop does not make reverse-continue replay every window', async () => {
  const leftover = await recordLeftover();
  const server = await startServer(leftover);
  const children = server.descendants();
  const commands = ['break beside', 'continue', 'break leftover.c:setup', 'reverse-continue', 'monitor history', 'continue', 'continue', 'reverse-continue', 'monitor history'];
  const gdb = await gdbBatch(server.port, commands, { timeoutMs: 300_000 });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  expect(s[1], ctx).toMatch(/Breakpoint 1, beside \(/);
  expect(s[3], ctx).toMatch(/Breakpoint 2, setup \(\)/);
  // The 40 rounds take several windows between checkpoints, every one running beside()'s page;
  // the forward run with beside() armed showed it never ran there.
  const first = windows(s[4]!);
  expect(first.skipped, ctx).toBeGreaterThanOrEqual(5);
  expect(first.replayed, ctx).toBeLessThanOrEqual(2);
  // Forwards again to beside() and the end, then back to beside(): the window it is in only.
  expect(s[5], ctx).toMatch(/Breakpoint 1, beside \(/);
  expect(s[7], ctx).toMatch(/Breakpoint 1, beside \(/);
  expect(windows(s[8]!).replayed - first.replayed, ctx).toBeLessThanOrEqual(2);
}, 300_000);

it('in MI too, the leftover breakpoint costs no replay of the windows it never ran in', async () => {
  const leftover = await recordLeftover();
  const server = await startServer(leftover);
  const children = server.descendants();
  const commands = ['-break-insert beside', '-exec-continue', '-break-insert leftover.c:setup', '-exec-continue --reverse', '-interpreter-exec console "monitor history"'];
  const mi = await gdbMi(server.port, commands, 300_000);
  const ctx = await expectSessionEnded(server, children, mi.transcript);
  expect(miField(mi.replies[1]?.stopped, 'func'), ctx).toBe('beside');
  expect(miField(mi.replies[3]?.stopped, 'func'), ctx).toBe('setup');
  const history = windows(mi.replies[4]!.lines.join('\n'));
  expect(history.skipped, ctx).toBeGreaterThanOrEqual(5);
  expect(history.replayed, ctx).toBeLessThanOrEqual(2);
}, 300_000);
