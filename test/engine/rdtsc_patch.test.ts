// Issue 10 (5) and 14: rdtsc in tight loops. With the syscall buffer, an rdtsc in a common pattern
// is patched at its first trap into a call of the library's TSC hook, which reads the TSC without
// a stop; replay hands the recorded values back in bulk (record/rdtsc_patch.h). Each pattern is
// recorded and replayed byte for byte; the values printed depend on what the TSC said.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseEnv,
  cleanupTemps,
  compile,
  describeRun,
  expectRecorded,
  expectSameRun,
  record,
  replay,
  requireCli,
  type Recording,
} from './harness.js';
import { rewind } from '../support/cli.js';

afterAll(cleanupTemps);

const RUNS = 5;
let program: string;

beforeAll(() => {
  requireCli();
  program = compile('rdtsc_patterns', { extra: ['-pthread'] });
});

async function dump(rec: Recording): Promise<string[]> {
  const r = await rewind(['dump', rec.traceDir]);
  expect(r.status, describeRun(r)).toBe(0);
  return r.stdout.toString().split('\n');
}

async function recordAndReplay(args: string[], buffer = '1'): Promise<{ rec: Recording; lines: string[] }> {
  const rec = await record(program, args, { env: { ...baseEnv(), REWIND_SYSCALL_BUFFER: buffer } });
  expectRecorded(rec, 0);
  expectSameRun(rec, await replay(rec.traceDir));
  return { rec, lines: await dump(rec) };
}

/** The program's own rdtsc events (ld.so reads the TSC a few times too), patches, and buffered reads. */
function counts(lines: string[]): { trapped: number; patches: number; buffered: number } {
  let buffered = 0;
  for (const l of lines) buffered += Number(/ (\d+) reads of the TSC/.exec(l)?.[1] ?? 0);
  return {
    trapped: lines.filter((l) => / {2}rdtsc at ip 0x5/.test(l)).length,
    patches: lines.filter((l) => / patch of the rdtsc at ip 0x5/.test(l)).length,
    buffered,
  };
}

describe('patched rdtsc', () => {
  for (const mode of ['after', 'shl', 'before', 'nop']) {
    it(`${mode}: patched at its first trap, its 200000 reads buffered, replayed the same`, async () => {
      const { rec, lines } = await recordAndReplay([mode, '200000']);
      expect(rec.stdout.toString()).toMatch(new RegExp(`^${mode}: 200000 reads, sum \\d+\\n$`));
      const c = counts(lines);
      expect(c.patches, lines.join('\n')).toBe(1);
      expect(c.trapped).toBe(0);
      expect(c.buffered).toBe(200000);
      // The nopl before the rdtsc (5 bytes) and the rdtsc (2) become a jump and a jump back.
      if (mode === 'nop') expect(lines.join('\n')).toMatch(/patch of the rdtsc .*, writes 7 bytes at /);
    });
  }

  it('an rdtsc with a branch into the bytes a patch would take keeps trapping', async () => {
    const { rec, lines } = await recordAndReplay(['interfering', '300']);
    expect(rec.stdout.toString()).toMatch(/^interfering: 300 reads, sum \d+\n$/);
    const c = counts(lines);
    expect(c.patches).toBe(0);
    expect(c.trapped).toBe(300);
  });

  it('without the buffer, every rdtsc traps as before', async () => {
    const { lines } = await recordAndReplay(['after', '300'], '0');
    const c = counts(lines);
    expect(c.patches).toBe(0);
    expect(c.trapped).toBe(300);
  });

  it(`timer signals between patched reads, and reads in their handler, land where replay finds them (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const { rec, lines } = await recordAndReplay(['signals', '2000']);
      expect(rec.stdout.toString()).toMatch(/^signals: \d+ rounds, sum \d+, handler sum \d+\n$/);
      expect(lines.filter((l) => l.includes('signal SIGALRM')).length).toBeGreaterThanOrEqual(20);
      // The loop's and the handler's (inlined there) rdtsc.
      expect(counts(lines).patches).toBe(2);
    }
  }, 300_000);

  it(`threads each read through their own buffer (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const { rec, lines } = await recordAndReplay(['threads', '50000']);
      expect(rec.stdout.toString()).toMatch(/^(thread \d sum \d+\n){3}$/);
      const c = counts(lines);
      // A trap while another thread runs (or sits in the bytes a patch takes) is not patched
      // (record/rdtsc_patch.cc: "perhaps at its next trap"): it is recorded as a trapped read.
      // Every read is one or the other, nearly all buffered, and the site is patched once.
      expect(c.buffered + c.trapped, lines.filter((l) => /rdtsc/.test(l)).slice(0, 20).join('\n')).toBe(150000);
      expect(c.buffered).toBeGreaterThan(149000);
      expect(c.patches).toBe(1);
    }
  }, 300_000);
});
