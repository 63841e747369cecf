// Acceptance 1 of issue 11: a CI-sized batch of hostile traces (bench/hostile_traces.ts), a new
// seed each run (REWIND_FUZZ_SEED to repeat one, REWIND_FUZZ_COUNT for more; the bench runs
// 10,000). Each mutant of a real recording is uploaded and replayed in a server worker.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runHostileBatch } from '../../bench/hostile_traces.js';
import { REPO } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));
const seed = Number(process.env.REWIND_FUZZ_SEED ?? Date.now() % 2 ** 31);
const count = Number(process.env.REWIND_FUZZ_COUNT ?? 100);

describe.skipIf(!engineBuilt)('hostile traces', () => {
  it(`${count} mutations of real recordings (seed ${seed}): the server and its catalogue hold`, { timeout: 600_000 }, async () => {
    const r = await runHostileBatch({ count, seed });
    const summary = JSON.stringify({ ...r, failures: r.failures.slice(0, 20) }, null, 2);
    expect(r.failures, summary).toEqual([]);
    expect(r.mutations).toBe(count);
    expect(r.replayed, summary).toBeGreaterThan(count / 3);
    expect(r.integrity).toBe('ok');
    expect(r.originalsIntact).toBe(true);
    // Every health check was answered within its 2 s deadline (a failure above otherwise).
    expect(r.healthChecks).toBeGreaterThan(10);
    expect(r.maxWorkerRssBytes).toBeLessThanOrEqual(r.memoryBoundBytes);
    process.stderr.write(`hostile traces, seed ${seed}: ${JSON.stringify(r.outcomes)}\n`);
  });
});
