// The memory model of record and replay (docs/memory.md): files mapped shared, memory shared
// between processes, mappings that move and grow, advice that changes what a fork copies.
import { readdirSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, recordReplay, tempDir } from './harness.js';

afterAll(cleanupTemps);

describe('memory', () => {
  it('shared_file: mappings of one file, writes through descriptors and a file growing under its mappings replay exactly', async () => {
    const dir = tempDir('rewind-shared-file-');
    const { rec } = await recordReplay(compile('shared_file'), [dir], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(
      new RegExp(
        '^store seen by the other mapping: 1\\n' +
          'private page past the old end: 0\\n' +
          'pwrite seen: 1, write past the read mapping seen through the other: 1\\n' +
          'after mremap: 1 1\\n' +
          'values: \\d+ \\d+ 0 1\\n' +
          'after cut and grow: first 1, second 0\\n' +
          'memfd: 1 1 0\\n$',
      ),
    );
    expect(readdirSync(dir)).toEqual([]);
  });
});
