// Issue 10, acceptance 6: positions that cannot be mistaken. A loop that keeps its changing
// state only in memory comes back to the same instruction with the same registers and stack
// at every pass; a signal or a preemption that lands there must replay at the recorded pass,
// recording after recording (docs/positions.md).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_TYPES,
  FIXTURES,
  cleanupTemps,
  compile,
  eventsBlob,
  parseEventStream,
  recordReplay,
  requireCli,
  which,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

/** Recordings per program here; bench/ runs 100 of each. */
const RUNS = 5;

/** The number of words of memory each preempt record names (after regs and the stack hash). */
function positionWords(traceDir: string): number[] {
  const events = parseEventStream(readFileSync(eventsBlob(traceDir).path));
  return events.records
    .filter((r) => r.type === EVENT_TYPES.preempt)
    .map((r) => {
      const regsLen = r.body.readUInt32LE(5);
      return r.body.readUInt32LE(5 + 4 + regsLen + 8);
    });
}

/** The instruction pointer of each preempt record (`rip` of the kernel's user_regs_struct). */
function preemptIps(traceDir: string): bigint[] {
  const events = parseEventStream(readFileSync(eventsBlob(traceDir).path));
  return events.records.filter((r) => r.type === EVENT_TYPES.preempt).map((r) => r.body.readBigUInt64LE(5 + 4 + 16 * 8));
}

async function replaysEveryTime(program: string, args: string[], output: RegExp): Promise<number[][]> {
  const words: number[][] = [];
  for (let i = 0; i < RUNS; i++) {
    const { rec } = await recordReplay(program, args, { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(output);
    words.push(positionWords(rec.traceDir));
  }
  return words;
}

describe('positions in loops whose state lives in memory', () => {
  it('an interval timer in a C loop that counts in memory: every signal at its recorded pass', async () => {
    const words = await replaysEveryTime(compile('mem_loop'), [], /^(\d+ \d+\n){16}$/);
    // The positions are told apart by the counter in memory, not by registers.
    expect(words.flat().length, 'no signal landed in the loop').toBeGreaterThan(0);
    expect(words.flat().every((n) => n > 0), 'a position in the loop named no word of memory').toBe(true);
  });

  it('two threads preempted in loops that count in memory', async () => {
    const words = await replaysEveryTime(compile('mem_loop_threads', { extra: ['-pthread'] }), [], /^at the stop: \d+ \d+\nat the end: \d+ \d+\n$/);
    expect(words.flat().length, 'no thread was preempted').toBeGreaterThan(0);
  });

  it('threads preempted inside `rep stosb`: the position is named after the instruction, not at one of its millions of iterations', async () => {
    // Replay reaches a position inside a rep instruction one iteration per step: a memset of
    // megabytes in cc1 took `make -j2`'s replay from 4 s to 61 s.
    const exe = compile('rep_string_preempted', { extra: ['-pthread'] });
    let preempts = 0;
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      const site = /^rep site (0x[0-9a-f]+)$/m.exec(rec.stdout.toString());
      expect(site, rec.stdout.toString()).not.toBeNull();
      const ips = preemptIps(rec.traceDir);
      preempts += ips.length;
      expect(ips).not.toContain(BigInt(site![1]!));
    }
    expect(preempts, 'no thread was preempted').toBeGreaterThan(0);
  });

  it("positions after the program mapped every free page near its code, where replay's trampolines were", async () => {
    const words = await replaysEveryTime(compile('fill_near_code', { extra: ['-pthread'] }), [], /^sums [0-9a-f]{16} [0-9a-f]{16}, mapped some\n$/);
    expect(words.flat().length, 'no thread was preempted').toBeGreaterThan(0);
  });

  it('perl counting in a loop under a 1 ms interval timer', async () => {
    await replaysEveryTime(which('perl'), [join(FIXTURES, 'perl_count.pl')], /^(\d+ ){15,}\d+\n$/);
  });
});
