// Acceptance 1 of issue 11: CI-sized batches of hostile traces (bench/hostile_traces.ts), a new
// seed each run (REWIND_FUZZ_SEED to repeat one, REWIND_FUZZ_COUNT for more; the bench runs
// 10,000). Each mutant of a real recording is uploaded and replayed in a server worker.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadBase, runHostileBatch, withBlob, writeMutant, type HostileReport } from '../../bench/hostile_traces.js';
import { compile, expectCleanFailure, record, replay, tempDir } from '../support/index.js';
import { REPO } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));
const seed = Number(process.env.REWIND_FUZZ_SEED ?? Date.now() % 2 ** 31);
const count = Number(process.env.REWIND_FUZZ_COUNT ?? 40);

function expectHeld(r: HostileReport, n: number): void {
  const summary = JSON.stringify({ ...r, failures: r.failures.slice(0, 20) }, null, 2);
  expect(r.failures, summary).toEqual([]);
  expect(r.mutations).toBe(n);
  expect(r.replayed, summary).toBeGreaterThan(n / 3);
  expect(r.integrity).toBe('ok');
  expect(r.originalsIntact).toBe(true);
  expect(r.fullChecks).toBeGreaterThanOrEqual(1);
  // Every health check was answered within its 2 s deadline (a failure above otherwise).
  expect(r.healthChecks).toBeGreaterThan(5);
  // Some workers were seen confined, with exactly their trace and the stub in view.
  expect(r.viewsChecked, summary).toBeGreaterThan(0);
  expect(r.maxWorkerRssBytes).toBeLessThanOrEqual(r.memoryBoundBytes);
}

describe.skipIf(!engineBuilt)('hostile traces', () => {
  it(`${count} mutations of real recordings (seed ${seed}): the server and its catalogue hold`, { timeout: 600_000 }, async () => {
    const r = await runHostileBatch({ count, seed });
    expectHeld(r, count);
    process.stderr.write(`hostile traces, seed ${seed}: ${JSON.stringify(r.outcomes)}\n`);
  });

  it(`sparse file blobs: extent counts, offsets, lengths, order and sizes mutated (seed ${seed})`, { timeout: 600_000 }, async () => {
    const n = Math.max(30, Math.round(count / 2));
    const r = await runHostileBatch({ count: n, seed, fixtures: ['sparse_small'] });
    expectHeld(r, n);
    // The mutations reach the decoder, which refuses them by name (core/sparse_blob.cc).
    const refusals = Object.entries(r.messages).filter(([m]) => m.includes('a sparse blob'));
    expect(refusals.length, JSON.stringify(r.messages, null, 2)).toBeGreaterThan(0);
    process.stderr.write(`sparse hostile traces, seed ${seed}: ${JSON.stringify(r.outcomes)}\n`);
  });
});

// Each way a sparse file's encoding (core/sparse_blob.h) can lie, made once by hand: replay
// refuses it by name, never crashes or reads past what the blob holds.
describe.skipIf(!engineBuilt)('hostile sparse file blobs', () => {
  it('a count, size, offset or length out of range, extents unsorted or overlapping, data short or extra: each a clear error', { timeout: 120_000 }, async () => {
    const scratch = tempDir('rewind-sparse-hostile-');
    const rec = await record(compile('sparse_small'), [scratch]);
    expect(rec.status, rec.stderr.toString()).toBe(0);
    const base = loadBase(rec.traceDir);
    const blob = base.manifest.blobs.find((b) => b.role === 'sparse file' && !b.path?.startsWith('/memfd:'))!;
    const enc = fs.readFileSync(path.join(rec.traceDir, 'blobs', blob.sha256));
    const size = enc.readBigUInt64LE(16);
    const n = Number(enc.readBigUInt64LE(24));
    expect(n).toBeGreaterThanOrEqual(2);
    const at = (k: number, field: 0 | 1): number => 32 + 16 * k + 8 * field;
    const set = (edit: (b: Buffer) => void): Buffer => {
      const b = Buffer.from(enc);
      edit(b);
      return b;
    };
    const impossible = /a sparse blob has an impossible size or extent count/;
    const misplaced = /a sparse blob's extents overlap or lie past its size/;
    const cases: [string, Buffer, RegExp][] = [
      ['count 2^64 - 1', set((b) => b.writeBigUInt64LE(2n ** 64n - 1n, 24)), impossible],
      ['count past the blob', set((b) => b.writeBigUInt64LE(BigInt(enc.length), 24)), impossible],
      ['size past 1 TiB', set((b) => b.writeBigUInt64LE(2n ** 40n + 1n, 16)), impossible],
      ['size below the last extent', set((b) => b.writeBigUInt64LE(b.readBigUInt64LE(at(n - 1, 0)), 16)), misplaced],
      [
        'extents unsorted',
        set((b) => {
          enc.copy(b, at(0, 0), at(1, 0), at(1, 0) + 16);
          enc.copy(b, at(1, 0), at(0, 0), at(0, 0) + 16);
        }),
        misplaced,
      ],
      ['extents overlapping', set((b) => b.writeBigUInt64LE(b.readBigUInt64LE(at(0, 0)), at(1, 0))), misplaced],
      ['an offset that wraps past 2^64', set((b) => b.writeBigUInt64LE(2n ** 64n - b.readBigUInt64LE(at(0, 1)) + 1n, at(0, 0))), misplaced],
      ['a length past the size', set((b) => b.writeBigUInt64LE(size + 1n, at(n - 1, 1))), misplaced],
      // The first extent, which ends well before the next one starts.
      ['a length longer than the data', set((b) => b.writeBigUInt64LE(b.readBigUInt64LE(at(0, 1)) + 1n, at(0, 1))), /a sparse blob is shorter than its extents/],
      ['data cut short', enc.subarray(0, enc.length - 1), /a sparse blob is shorter than its extents/],
      ['data left over', Buffer.concat([enc, Buffer.from('more')]), /a sparse blob holds more data than its extents/],
      ['cut inside its header', enc.subarray(0, 20), /a sparse blob is shorter than its extents/],
    ];
    for (const [what, bytes, message] of cases) {
      const dir = path.join(scratch, what.replace(/\W+/g, '-'));
      writeMutant(base, withBlob(base, blob.sha256, bytes, what), dir);
      const r = await replay(dir);
      expect(r.status, `${what}: ${r.stderr.toString()}`).toBe(125);
      expectCleanFailure(r, message);
    }
  });
});
