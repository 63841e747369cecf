// Issue 5, acceptance 3: a multi-threaded recording in gdb: `info threads` lists the recorded
// threads, each shows its own stack, and reverse-continue crosses back over a thread switch.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { expectNoStray, gdbBatch, lineContaining, sourceLines, startServer } from './gdb_harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const exe = compile('thread', { extra: ['-O0', '-pthread'] });
  const rec = await record(exe);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
});

afterAll(cleanupTemps);

it('lists threads, shows each stack, and reverse-continues across a thread switch', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = ['break run', 'continue', 'info threads', 'bt', 'thread 1', 'bt', 'break main', 'reverse-continue', 'info threads'];
  const gdb = await gdbBatch(server.port, commands);
  const ctx = `${gdb.transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
  expect(await server.exited, ctx).toBe(0);
  expectNoStray(children, ctx);
  const s = gdb.sections;
  expect(s[1], ctx).toMatch(/Thread 2 "thread" hit Breakpoint 1, run \(arg=0x0\) at .*thread\.c/);
  const listed = [...s[2]!.matchAll(/^\*? +(\d) +Thread (\d+)\.(\d+) "thread"/gm)].map((m) => ({ id: m[1], pid: m[2], tid: m[3] }));
  expect(listed.length, ctx).toBe(2);
  expect(listed[0]!.tid, ctx).toBe(listed[0]!.pid);
  expect(listed[1]!.tid, ctx).not.toBe(listed[1]!.pid);
  expect(s[3], ctx).toMatch(/#0 +run \(arg=0x0\)[^]*start_thread/);
  expect(s[5], ctx).not.toMatch(/ run \(/);
  // Back before the thread existed: main's breakpoint, in thread 1, and one thread left.
  expect(s[7], ctx).toMatch(/Thread 1 "thread" hit Breakpoint 2, main \(\)/);
  expect(sourceLines(s[7]!).pop(), ctx).toBe(lineContaining('thread.c', 'printf("starting a thread'));
  expect([...s[8]!.matchAll(/Thread \d+\.\d+/g)].length, ctx).toBe(1);
});
