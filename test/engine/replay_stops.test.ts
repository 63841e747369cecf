// Issue 10 (rr's async_signal_syscalls, async_signal_syscalls_siginfo, madvise_fracture_flags):
// what replay spares at each stop keeps it exact. A storm of buffered clock calls replays as
// recorded, each record checked and given back, with a queued signal and its siginfo landing
// among them, and the mask replay keeps across emulated syscalls (which run nothing in the
// kernel) still the program's when a trapped rdtsc needs it. Syscalls replay executes run where
// the program made them, in a thread and a forked child too, one of them delivering a signal.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, recordReplay, requireCli } from './harness.js';
import { rewind } from '../support/cli.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const LOG2_PASSES = 14; // 2^14 passes of 8 buffered calls: 131,072 events

describe('replay stops', () => {
  it('2^14 × 8 buffered clock calls with a queued SIGUSR1 among them replay byte for byte', { timeout: 180_000 }, async () => {
    const exe = compile('clock_storm', { extra: ['-pthread'] });
    const { rec } = await recordReplay(exe, [String(LOG2_PASSES)], { expectStatus: 0 });
    const out = rec.stdout.toString();
    expect(out, describeRun(rec)).toMatch(/^caught 1 at a pass in the loop, code -1, value 0x7654321\n/);
    expect(out, describeRun(rec)).toMatch(/\nSIGSEGV blocked after rdtsc: 1; /);
    const dump = await rewind(['dump', rec.traceDir]);
    expect(dump.status, describeRun(dump)).toBe(0);
    const lines = dump.stdout.toString().split('\n');
    const clocks = lines.filter((l) => / (clock_gettime|gettimeofday)\(/.test(l)).length;
    expect(clocks).toBeGreaterThanOrEqual(8 << LOG2_PASSES);
    expect(lines.some((l) => / signal SIGUSR1$/.test(l))).toBe(true);
  });

  it('pages re-mapped one by one with madvise flags, by a thread, a child and its parent at once, then a signal an executed rt_sigprocmask unblocks, replay byte for byte', async () => {
    const exe = compile('executed_in_place', { extra: ['-pthread'] });
    const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
    expect(rec.stdout.toString(), describeRun(rec)).toBe(
      'main: -256\nthread: -128\nchild: exit 96, parent beside it: 8128\npending, handled 0\nunblocked, handled 12\n',
    );
  });
});
