// Issue 13, problem 2: switching threads between stops must not corrupt the stops after: the
// thread a stop reply names is the one gdb reads next (gdb assumes its `Hg` moved there), and
// Hg, Hc and vCont's per-thread actions mean exactly the thread they name. In gdb batch, in MI,
// and packet by packet.
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { gdbBatch, lineOf, loggedAsk, RawClient, sourceLines, startServer } from './gdb_harness.js';
import { expectSessionEnded, gdbMi, miField } from './mi_harness.js';

let traceDir: string;
let exe: string;

beforeAll(async () => {
  requireCli();
  // Not position-independent: the packet-level test sets breakpoints at addresses from nm.
  exe = compile('thread_switch', { extra: ['-O0', '-pthread', '-no-pie'] });
  const rec = await record(exe);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

afterAll(cleanupTemps);


/** The worker ids of the `hit Breakpoint N, worker (arg=0xI)` stops in order, with their threads. */
function workerHits(text: string): { thread: number; id: number }[] {
  return [...text.matchAll(/Thread (\d+) "thread_switch" hit Breakpoint \d+, worker \(arg=0x(\d)\)/g)].map((m) => ({ thread: Number(m[1]), id: Number(m[2]) }));
}

it('in gdb: every worker hit is reported, though the user switches to thread 1 or lists threads between stops', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = ['break worker', 'continue', 'thread 1', 'continue', 'thread 1', 'bt 1', 'continue', 'info threads', 'continue', 'info threads', 'bt', 'continue'];
  const gdb = await gdbBatch(server.port, commands);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  const hits = [1, 3, 6, 8].map((i) => workerHits(s[i]!));
  for (const h of hits) expect(h.length, ctx).toBe(1);
  // Each worker once, each on a thread of its own, none of them main's.
  expect(hits.map((h) => h[0]!.id).sort(), ctx).toEqual([0, 1, 2, 3]);
  expect(new Set(hits.map((h) => h[0]!.thread)).size, ctx).toBe(4);
  for (const h of hits) expect(h[0]!.thread, ctx).not.toBe(1);
  // The last hit's stack is its worker's, and `info threads` marks that thread current.
  expect(s[10], ctx).toMatch(new RegExp(`#0 +worker \\(arg=0x${hits[3]![0]!.id}\\)[^]*start_thread`));
  expect(s[9], ctx).toMatch(new RegExp(`^\\* ${hits[3]![0]!.thread} +Thread \\d+\\.\\d+ "thread_switch" worker \\(arg=0x${hits[3]![0]!.id}\\)`, 'm'));
  expect(s[11], ctx).toMatch(/No more reverse-execution history\./);
});

it('in gdb: a watchpoint hit in a worker is shown on that worker\'s stack, forwards and backwards', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = ['watch results[2]', 'continue', 'bt', 'info threads', 'thread 1', 'print results[2] != 0', 'reverse-continue', 'bt'];
  const gdb = await gdbBatch(server.port, commands);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  const hit = /Thread (\d+) "thread_switch" hit Hardware watchpoint 1: results\[2\]/.exec(s[1]!);
  expect(hit, ctx).not.toBeNull();
  expect(hit![1], ctx).not.toBe('1');
  expect(sourceLines(s[1]!).pop(), ctx).toBe(lineOf('thread_switch.c', 'store') + 1);
  expect(s[2], ctx).toMatch(/#0 +record_result \(id=2, value=\d+\)[^]*#1 +0x[0-9a-f]+ in worker \(arg=0x2\)/);
  expect(s[3], ctx).toMatch(new RegExp(`^\\* ${hit![1]} +Thread`, 'm'));
  expect(s[5], ctx).toMatch(/^\$1 = 1$/m);
  // Backwards from thread 1: the store again, in the worker that made it.
  expect(s[6], ctx).toMatch(new RegExp(`Thread ${hit![1]} "thread_switch" hit Hardware watchpoint 1: results\\[2\\]`));
  expect(s[7], ctx).toMatch(/#0 +(0x[0-9a-f]+ in )?record_result \(id=2, value=\d+\)[^]*worker \(arg=0x2\)/);
});

it('in MI: thread switches and thread lists between stops lose no hit', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = [
    '-break-insert worker',
    '-exec-continue',
    '-thread-select 1',
    '-exec-continue',
    '-thread-info',
    '-exec-continue',
    '-thread-select 1',
    '-stack-list-frames',
    '-exec-continue',
    '-thread-info',
    '-stack-list-frames',
    '-exec-continue',
  ];
  const mi = await gdbMi(server.port, commands);
  const ctx = await expectSessionEnded(server, children, mi.transcript);
  const r = mi.replies;
  expect(r.length, ctx).toBe(commands.length);
  for (const reply of r) {
    if (reply.result.startsWith('^running')) expect(reply.stopped, `${reply.command}: no *stopped\n${ctx}`).toBeDefined();
  }
  const stops = [1, 3, 5, 8].map((i) => r[i]!.stopped);
  for (const st of stops) {
    expect(miField(st, 'reason'), ctx).toBe('breakpoint-hit');
    expect(miField(st, 'func'), ctx).toBe('worker');
  }
  const threads = stops.map((st) => miField(st, 'thread-id'));
  expect(new Set(threads).size, ctx).toBe(4);
  expect(threads, ctx).not.toContain('1');
  // The stack of the last stop is its thread's.
  expect(r[10]!.result, ctx).toMatch(/^\^done,stack=\[frame=\{level="0",addr="0x[0-9a-f]+",func="worker"/);
  expect(miField(r[9]!.result, 'current-thread-id'), ctx).toBe(threads[3]);
  expect(r[11]!.lines.join('\n'), ctx).toContain('No more reverse-execution history.');
});

it('in the protocol: g reads the stopped thread after a stop, Hg and Hc name exactly their thread, and vCont steps the thread it names', async () => {
  const nm = spawnSync('nm', [exe], { encoding: 'utf8' });
  const symbol = (name: string): bigint => {
    const m = new RegExp(`^([0-9a-f]+) t ${name}$`, 'm').exec(nm.stdout);
    if (!m) throw new Error(`no ${name} in nm ${exe}:\n${nm.stdout}`);
    return BigInt(`0x${m[1]}`);
  };
  const worker = symbol('worker');
  const server = await startServer(traceDir);
  const children = server.descendants();
  const c = await RawClient.connect(server.port);
  const log: string[] = [];
  const ask = loggedAsk(c, log, 120);
  const pc = async (): Promise<bigint> => {
    // rip is register 16 in the target description, and at byte 128 of `g`.
    const one = await ask('p10');
    const all = await ask('g');
    expect(all.slice(256, 272), log.join('\n')).toBe(one);
    return Buffer.from(one, 'hex').readBigUInt64LE();
  };
  const stopThread = (reply: string): string => /thread:(p[0-9a-f]+\.[0-9a-f]+);/.exec(reply)?.[1] ?? '';
  try {
    await ask('QStartNoAckMode');
    await ask('qSupported:multiprocess+;swbreak+;hwbreak+');
    const main = /^QC(p[0-9a-f]+\.[0-9a-f]+)$/.exec(await ask('qC'))?.[1];
    expect(main, log.join('\n')).toBeDefined();
    const mainPc = await pc();
    expect(await ask(`Z0,${worker.toString(16)},1`)).toBe('OK');
    // Hg to main, then a stop elsewhere: g and p read the stopped thread.
    expect(await ask(`Hg${main}`)).toBe('OK');
    const first = await ask('vCont;c');
    const w1 = stopThread(first);
    expect(first, log.join('\n')).toMatch(/^T05swbreak:;thread:p[0-9a-f]+\.[0-9a-f]+;$/);
    expect(w1, log.join('\n')).not.toBe(main);
    expect(await pc(), log.join('\n')).toBe(worker);
    // Hg names exactly its thread: main's registers, then the worker's again.
    expect(await ask(`Hg${main}`)).toBe('OK');
    const mainNow = await pc();
    expect(mainNow, log.join('\n')).not.toBe(worker);
    expect(await ask(`Hg${w1}`)).toBe('OK');
    expect(await pc(), log.join('\n')).toBe(worker);
    // vCont steps the thread it names, the others go on: the stop is that thread's, one
    // instruction on (worker's first instruction is a one-byte push).
    expect(await ask(`Hg${main}`)).toBe('OK');
    const stepped = await ask(`vCont;s:${w1};c`);
    expect(stopThread(stepped), log.join('\n')).toBe(w1);
    expect(await pc(), log.join('\n')).toBe(worker + 1n);
    // Hc, then s: the same for the old-style step.
    expect(await ask(`Hc${w1}`)).toBe('OK');
    expect(await ask(`Hg${main}`)).toBe('OK');
    const again = await ask('s');
    expect(stopThread(again), log.join('\n')).toBe(w1);
    expect(await pc(), log.join('\n')).not.toBe(worker + 1n);
    // The next worker's hit, named and read as its own.
    expect(await ask('Hc-1')).toBe('OK');
    const second = await ask('vCont;c');
    const w2 = stopThread(second);
    expect(w2, log.join('\n')).not.toBe(w1);
    expect(w2, log.join('\n')).not.toBe(main);
    expect(await pc(), log.join('\n')).toBe(worker);
    expect(mainPc, log.join('\n')).not.toBe(worker);
    await ask('D');
  } finally {
    c.close();
  }
  await expectSessionEnded(server, children, log.join('\n'));
});
