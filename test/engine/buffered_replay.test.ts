// Issue 10 (rr's async_signal_syscalls, async_signal_syscalls_siginfo): a storm of buffered clock
// calls replays as recorded, each record checked and given back, with a queued signal and its
// siginfo landing among them, and the mask replay keeps across emulated syscalls (which run
// nothing in the kernel) still the program's when a trapped rdtsc needs it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, recordReplay, requireCli } from './harness.js';
import { rewind } from '../support/cli.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const LOG2_PASSES = 14; // 2^14 passes of 8 buffered calls: 131,072 events

describe('buffered syscalls in bulk', () => {
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
});
