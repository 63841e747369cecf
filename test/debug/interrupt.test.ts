// gdb's Ctrl-C while the replay runs: the session stops soon after, at a moment that can be
// inspected and left in both directions, instead of running on to the end.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { expectNoStray, gdbInterrupted, startServer } from './gdb_harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const exe = compile('ticker', { extra: ['-O1'] });
  // About 3 s of computation in 10 ms rounds.
  const rec = await record(exe, ['300']);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

afterAll(cleanupTemps);

it('Ctrl-C in gdb stops a continue, and the session goes on from there', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = ['continue', 'monitor when', 'info registers rip', 'reverse-stepi', 'info registers rip', 'stepi', 'info registers rip', 'continue', 'monitor history'];
  const gdb = await gdbInterrupted(server.port, commands);
  const ctx = `${gdb.transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
  expect(gdb.status, ctx).toBe(0);
  const s = gdb.sections;
  expect(s[0], ctx).toMatch(/Program received signal SIGINT, Interrupt\./);
  // It stopped well before the end (about 2.5 s of replay away).
  expect(gdb.stopMs, ctx).toBeLessThan(2000);
  const when = /event (\d+) of (\d+)/.exec(s[1]!);
  expect(when, ctx).not.toBeNull();
  expect(Number(when![1]), ctx).toBeLessThan(Number(when![2]) / 2);
  // History goes on both ways from there: one instruction back, and forwards to the same pc.
  const pc = (text: string): bigint => BigInt(/rip +(0x[0-9a-f]+)/.exec(text)?.[1] ?? '0');
  const stoppedAt = pc(s[2]!);
  expect(stoppedAt, ctx).not.toBe(0n);
  expect(pc(s[4]!), ctx).not.toBe(0n);
  expect(pc(s[4]!), ctx).not.toBe(stoppedAt);
  expect(pc(s[6]!), ctx).toBe(stoppedAt);
  expect(s[7], ctx).toMatch(/No more reverse-execution history\./);
  expect(s[8], ctx).toMatch(/^[1-9]\d* checkpoints to go back from; reverse-continue replayed 0 windows/m);
  expect(await server.exited, ctx).toBe(0);
  expectNoStray(children, ctx);
}, 120_000);

it('Ctrl-C stops a long computation without syscalls in the middle, and history goes on from there', async () => {
  const exe = compile('spin', { extra: ['-O0'] });
  // About 2.5 s of computation in one stretch of user code: no event to stop at.
  const rec = await record(exe);
  expectRecorded(rec, 0);
  const server = await startServer(rec.traceDir);
  const children = server.descendants();
  const commands = ['continue', 'print i', 'stepi', 'reverse-stepi', 'print i', 'continue'];
  const gdb = await gdbInterrupted(server.port, commands);
  const ctx = `${gdb.transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
  expect(gdb.status, ctx).toBe(0);
  const s = gdb.sections;
  expect(s[0], ctx).toMatch(/Program received signal SIGINT, Interrupt\.[^]*main \(\) at .*spin\.c/);
  expect(gdb.stopMs, ctx).toBeLessThan(1500);
  // In the middle of the loop, and the same iteration after a step forwards and back.
  const i = Number(/\$1 = (\d+)/.exec(s[1]!)?.[1]);
  expect(i, ctx).toBeGreaterThan(0);
  expect(i, ctx).toBeLessThan(3_000_000_000);
  expect(s[4], ctx).toContain(`$2 = ${i}`);
  expect(s[5], ctx).toMatch(/No more reverse-execution history\./);
  expect(await server.exited, ctx).toBe(0);
  expectNoStray(children, ctx);
}, 120_000);
