// Signals that interrupt syscalls, and syscalls the kernel restarts, replay exactly (issue 10).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, recordReplay, requireCli, run } from './harness.js';

afterAll(cleanupTemps);

const runs = 5; // timing matters: each recorded and replayed this many times

describe('signals sent to a thread that is not its process leader', () => {
  beforeAll(requireCli);

  const out = "reader: read -1 EINTR usr1=1\nreader: read 1 'x' usr2=1\nmain: done\n";

  it('natively: EINTR without SA_RESTART, restarted with it', async () => {
    const r = await run(compile('thread_interrupt', { extra: ['-pthread'] }), []);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.stdout.toString()).toBe(out);
  });

  it(`read in a second thread interrupted by pthread_kill: ${runs} recordings replay`, async () => {
    const exe = compile('thread_interrupt', { extra: ['-pthread'] });
    for (let i = 0; i < runs; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(out);
    }
  });
});

describe('syscalls the kernel restarts', () => {
  beforeAll(requireCli);

  const out = [
    'ignored: nanosleep 0',
    'ignored: poll 1 revents 0x1',
    "ignored: read 1 'y'",
    'handled: nanosleep -1 EINTR handled=1 rem>=4s 1',
    'handled: poll -1 EINTR handled=2',
    '',
  ].join('\n');

  it('natively: an ignored signal goes unseen, a handled one makes the syscalls fail with EINTR', async () => {
    const r = await run(compile('restart', { extra: ['-pthread'] }), []);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.stdout.toString()).toBe(out);
  });

  // Traced, an ignored signal interrupts: nanosleep and poll come back with restart_syscall
  // (which writes what they write), read with itself.
  it(`nanosleep, poll and read restarted after an ignored signal: ${runs} recordings replay`, async () => {
    const exe = compile('restart', { extra: ['-pthread'] });
    for (let i = 0; i < runs; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(out);
    }
  });
});
