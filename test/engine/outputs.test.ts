// Syscalls whose answer the kernel writes through a pointer argument: replay writes it back.
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, expectCleanFailure, record, recordReplay, tempDir } from './harness.js';

afterAll(cleanupTemps);

describe('outputs written through pointers', () => {
  it('kernel_outputs: fcntl F_GET_RW_HINT, prctl PR_GET_CHILD_SUBREAPER and PR_SET_MM_MAP_SIZE', async () => {
    const { rec } = await recordReplay(compile('kernel_outputs'), [tempDir('rewind-outputs-')], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^rw hint: (0 3|unsupported)\nsubreaper: 0 1\nmm map size: 0 [1-9]\d*\n$/);
  });

  it('clone_flags: a CLONE_UNTRACED child is followed, and the pidfd number CLONE_PIDFD writes is replayed', async () => {
    const { rec } = await recordReplay(compile('clone_flags'), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe(
      'untraced child wrote u, exit 0\npidfd right after the last descriptor: 1\nvfork child exit 7\n',
    );
  });

  it('pi_contended: a thread that waits for a priority-inheritance mutex another holds is refused by name (the kernel marks the holder\'s word)', async () => {
    const rec = await record(compile('pi_contended', { extra: ['-pthread'] }), []);
    expectCleanFailure(rec, /waited for a priority-inheritance futex \(futex FUTEX_LOCK_PI\), which rewind cannot replay yet/);
  });

  it('futex_ops: what FUTEX_WAKE_OP and the PI operations store is there for the thread they wake, each of 5 recordings', async () => {
    const exe = compile('futex_ops', { extra: ['-pthread'] });
    for (let i = 0; i < 5; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(
        'woken 1, second word 1\nwaited 0, second word 1\n' +
          'lock_pi 0: owner is me 1\nunlock_pi 0: word 0\ntrylock_pi 0: owner is me 1\n',
      );
    }
  });
});
