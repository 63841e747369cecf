// Issue 13.5: a watchpoint hot in a race of four threads. Going back through its stores one by one
// (the stores a reverse-continue's replay met before are remembered, and checkpoints kept on the
// way) must stop at exactly the stores that going forwards stops after, in the same threads, in
// reverse order: each at the store's own instruction, the one before the forward stop's.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { gdbBatch, lineOf, sourceLines, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

const STORES = 20;

let exe: string;
beforeAll(() => {
  requireCli();
  exe = compile('watch_race', { extra: ['-O0', '-pthread'] });
});
afterAll(cleanupTemps);

/** What gdb shows at each stop: the commands after the resume, and what they tell. */
const AT_STOP = ['thread', 'print/x $pc', 'print id'];

interface Hit {
  tid: number; // the recorded thread (gdb renumbers threads met again going back)
  id: number; // the worker, from its own frame
  old: number;
  now: number;
  pc: bigint;
}

function hit(s: string[], at: number, ctx: string): Hit {
  const m = /hit Hardware watchpoint 1: shared\s+Old value = (-?\d+)\s+New value = (-?\d+)/.exec(s[at]!);
  expect(m, `${s[at]}\n${ctx}`).not.toBeNull();
  const tid = /Current thread is \d+ \(Thread \d+\.(\d+)\)/.exec(s[at + 1]!);
  const pc = /= (0x[0-9a-f]+)/.exec(s[at + 2]!);
  const id = /= (\d+)/.exec(s[at + 3]!);
  expect(tid && pc && id, ctx).toBeTruthy();
  return { tid: Number(tid![1]), id: Number(id![1]), old: Number(m![1]), now: Number(m![2]), pc: BigInt(pc![1]!) };
}

it('stops at every store of a race, in its thread, forwards and then backwards, in several recordings', async () => {
  const storeLine = lineOf('watch_race.c', 'store');
  for (let run = 0; run < 3; run++) {
    const rec = await record(exe);
    expectRecorded(rec, 0);
    const server = await startServer(rec.traceDir);
    const children = server.descendants();
    const forwards = Array.from({ length: STORES }, () => ['continue', ...AT_STOP]).flat();
    const backwards = Array.from({ length: STORES }, () => ['reverse-continue', ...AT_STOP]).flat();
    const commands = ['watch shared', ...forwards, 'continue', ...backwards, 'reverse-continue', 'kill'];
    const gdb = await gdbBatch(server.port, commands, { timeoutMs: 600_000 });
    const ctx = await expectSessionEnded(server, children, gdb.transcript);
    const s = gdb.sections;
    const n = 1 + AT_STOP.length;
    const fw = Array.from({ length: STORES }, (_, i) => hit(s, 1 + n * i, ctx));
    expect(s[1 + n * STORES], ctx).toContain('No more reverse-execution history.');
    const bwStart = 2 + n * STORES;
    const bw = Array.from({ length: STORES }, (_, i) => hit(s, bwStart + n * i, ctx));
    expect(s[bwStart + n * STORES], ctx).toContain('No more reverse-execution history.');
    // Forwards: every worker's five stores, each value once, each in the worker that stored it.
    expect(new Set(fw.map((h) => h.now)).size, ctx).toBe(STORES);
    expect(new Set(fw.map((h) => h.tid)).size, ctx).toBe(4);
    for (let i = 0; i < STORES; i++) expect(fw[i]!.id, ctx).toBe(Math.floor(fw[i]!.now / 100));
    for (let i = 1; i < STORES; i++) expect(fw[i]!.old, ctx).toBe(fw[i - 1]!.now);
    // A race: the recorder's preemptions interleave the workers (one after another would switch 3 times).
    expect(fw.filter((h, i) => i > 0 && h.tid !== fw[i - 1]!.tid).length, ctx).toBeGreaterThan(3);
    // Backwards: the same stores in reverse, in the same threads, before their instruction.
    for (let i = 0; i < STORES; i++) {
      const f = fw[STORES - 1 - i]!;
      const b = bw[i]!;
      expect({ tid: b.tid, id: b.id, old: b.old, now: b.now }, ctx).toEqual({ tid: f.tid, id: f.id, old: f.now, now: f.old });
      expect(f.pc - b.pc > 0n && f.pc - b.pc <= 15n, `${b.pc} then ${f.pc}\n${ctx}`).toBe(true);
      expect(sourceLines(s[bwStart + n * i]!).pop(), ctx).toBe(storeLine);
    }
  }
}, 1_800_000);
