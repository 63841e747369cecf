// The memory model of record and replay (docs/memory.md): files mapped shared, memory shared
// between processes, mappings that move and grow, advice that changes what a fork copies.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, record, recordReplay, tempDir } from './harness.js';

afterAll(cleanupTemps);

describe('memory', () => {
  it('shared_file: mappings of one file, writes through descriptors and a file growing under its mappings replay exactly', async () => {
    const dir = tempDir('rewind-shared-file-');
    const { rec } = await recordReplay(compile('shared_file'), [dir], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(
      new RegExp(
        '^store seen by the other mapping: 1\\n' +
          'pwrite seen: 1, write past the read mapping seen through the other: 1\\n' +
          'after mremap: 1 1\\n' +
          'values: \\d+ \\d+ 0\\n' +
          'after cut and grow: first 1, second 0\\n' +
          'memfd: 1 1 0\\n$',
      ),
    );
    expect(readdirSync(dir)).toEqual([]);
  });

  it('mappings: fork advice, a locked page under MADV_DONTNEED, a merged file mapping grown by mremap and set_tid_address run again in replay', async () => {
    const dir = tempDir('rewind-mappings-');
    const exe = compile('mappings', { extra: ['-pthread'] });
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [dir], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(
        'wiped in the child: 7\n' +
          'left out of the child: Segmentation fault\n' +
          'dontneed over a locked page: -1 Invalid argument; first 0, second kept 1\n' +
          'mremap of the merged mapping: moved, 1\n' +
          'tid cleared at the new address: 1\n',
      );
    }
  });

  it('sparse_files: a 1 TiB memfd, a 20 GiB one and a 64 GiB file with a punched hole replay exactly, and the trace holds their data, not their holes', async () => {
    const dir = tempDir('rewind-sparse-');
    const { rec } = await recordReplay(compile('sparse_files'), [dir], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe(
      '1 TiB private: x y 0\n' +
        '1 TiB shared: x y 0\n' +
        '20 GiB, one page: 0\n' +
        '64 GiB file: punched 0, kept 2, last z\n' +
        'magic file: rewind-sparse1, and then some text\n',
    );
    const blobs = join(rec.traceDir, 'blobs');
    const stored = readdirSync(blobs).reduce((sum, name) => sum + statSync(join(blobs, name)).size, 0);
    expect(stored).toBeLessThan(64 << 20);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('private_grow: a file mapped private past its end faults there until it grows, then shows what was written to it, in replay too', async () => {
    const dir = tempDir('rewind-private-grow-');
    const { rec } = await recordReplay(compile('private_grow'), [dir], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('SIGBUS before growing\nafter growing: x file\nSIGBUS past the new end\n');
  });

  it('shared_counter: a parent and its fork child sharing anonymous memory run in the recorded order, each of 5 recordings', async () => {
    const exe = compile('shared_counter');
    for (let i = 0; i < 5; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toMatch(/^(sample \d: \d+\n){5}final: \d+, not below the last sample: 1\n$/);
    }
  });

  it('map_shared: memory shared without one process inheriting it from the other, or with a process outside the recording, is refused at record time', async () => {
    const exe = compile('map_shared');
    const dir = tempDir('rewind-map-shared-');
    const pair = await record(exe, ['pair', join(dir, 'pair.dat')]);
    expect(pair.status, describeRun(pair)).not.toBe(0);
    expect(pair.stderr.toString()).toMatch(
      /processes \d+ and \d+ of the recording map one file shared without one having it from the other \(fork\), which rewind cannot replay yet/,
    );

    const held = join(dir, 'held.dat');
    const holder = spawn(exe, ['hold', held], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const [first] = (await once(holder.stdout, 'data')) as [Buffer];
      expect(first.toString()).toBe('mapped\n');
      const outside = await record(exe, ['map', held]);
      expect(outside.status, describeRun(outside)).not.toBe(0);
      expect(outside.stderr.toString()).toContain(
        `the program maps a file shared with process ${holder.pid} (map_shared, which maps it as ${held}), which is not recorded: rewind cannot replay memory shared with it`,
      );
    } finally {
      holder.stdin.end();
      await once(holder, 'exit');
    }
    // Once no one else maps it, the same program records and replays.
    const { rec } = await recordReplay(exe, ['map', held], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('stored\n');

    // Mapped read-only here and outside (as glibc maps gconv-modules.cache): no one stores into
    // it, so it is recorded and replays.
    const reader = spawn(exe, ['holdro', held], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const [first] = (await once(reader.stdout, 'data')) as [Buffer];
      expect(first.toString()).toBe('mapped\n');
      const { rec: read } = await recordReplay(exe, ['read', held], { expectStatus: 0 });
      expect(read.stdout.toString()).toBe('read x\n');
    } finally {
      reader.stdin.end();
      await once(reader, 'exit');
    }
  });

  it('sysv_shm: SysV segments attached twice, inherited by a fork child and detached after a partial munmap replay exactly', async () => {
    const exe = compile('sysv_shm');
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toMatch(
        /^size 12278, attached 2, mine 1\nstore seen through the other attach: 1, zero before: 0\nchild's store: 1, values \d+ \d+\nattached again read-only: 1\nremoved\n$/,
      );
    }
  });
});
