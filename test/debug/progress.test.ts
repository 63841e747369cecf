// Issue 13, problem 5 (in part): a resume that runs longer than a second shows its progress on
// gdb's console (console output packets while gdb waits for the stop), forwards and backwards.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { gdbBatch, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

afterAll(cleanupTemps);

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const rec = await record(compile('progress_loop', { extra: ['-O0'] }));
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
});

it('shows where replay is, every second of a long continue and reverse-continue', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, ['break main', 'continue', 'continue', 'reverse-continue'], { timeoutMs: 300_000 });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const s = gdb.sections;
  const progress = /rewind: replaying, at event (\d+) of (\d+) \(1 s; Ctrl-C stops\)\n/;
  // A second of the loop: nothing shown before it, the line once it passes.
  expect(s[1], ctx).toMatch(/Breakpoint 1, main/);
  expect(s[1], ctx).not.toMatch(/rewind: replaying/);
  const forward = progress.exec(s[2]!);
  expect(forward, ctx).not.toBeNull();
  expect(Number(forward![1]) < Number(forward![2]), ctx).toBe(true);
  expect(s[2], ctx).toMatch(/No more reverse-execution history\./);
  // Going back to main replays the loop again (main's page is the loop's): shown likewise.
  expect(s[3], ctx).toMatch(progress);
  expect(s[3], ctx).toMatch(/Breakpoint 1, main/);
});
