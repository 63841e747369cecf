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
