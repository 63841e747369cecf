// Issues 10 and 14: replay answers a run of buffered syscalls from the feed its trampoline reads
// (replay/syscall_feed.h, docs/syscall-buffer.md "Replay"), without a stop each, and stays
// exact: a preemption right after buffered calls is met where it was recorded, and a call that
// differs from its record, or data that differs from what was read, stops with a divergence.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  EVENT_TYPES,
  FIRST_WRITE_DATA,
  baseEnv,
  cleanupTemps,
  compile,
  describeRun,
  eventsBlob,
  expectDivergedAt,
  findSyscall,
  parseEventStream,
  recordReplay,
  replay,
  requireCli,
  syscallOf,
  tamperEvents,
  tempDir,
  type EventRecord,
} from './harness.js';

afterAll(cleanupTemps);

const SYS_read = 0;
const SYS_write = 1;
const SYS_fstat = 5;

let bufferedIo: string;
let race: string;
let data: string;

beforeAll(() => {
  requireCli();
  bufferedIo = compile('buffered_io', { extra: ['-pthread'] });
  race = compile('feed_race', { extra: ['-pthread'] });
  data = join(tempDir('rewind-feed-'), 'data');
  writeFileSync(data, randomBytes(1_000_000));
});

function events(traceDir: string): EventRecord[] {
  return parseEventStream(readFileSync(eventsBlob(traceDir).path)).records;
}

/** A read of fd 3 with buffered calls of its task on both sides: in the middle of a fed run. */
function readInRun(records: EventRecord[]): EventRecord {
  const buffered = (r: EventRecord | undefined, tid: number): boolean =>
    r !== undefined && r.type === EVENT_TYPES.syscall && r.body.readUInt32LE(1) === tid && [SYS_read, SYS_fstat].includes(syscallOf(r).nr);
  const reads = records.filter((r, i) => {
    if (r.type !== EVENT_TYPES.syscall || syscallOf(r).nr !== SYS_read || syscallOf(r).args[0] !== 3n) return false;
    const tid = r.body.readUInt32LE(1);
    return [-3, -2, -1, 1, 2, 3].every((d) => buffered(records[i + d], tid));
  });
  const read = reads[Math.floor(reads.length / 2)];
  if (!read) throw new Error('no read in a run of buffered calls');
  return read;
}

describe('the feed of buffered syscalls in replay', () => {
  it('answers the buffered calls without a stop each: a few of the events are stops, the output is the same', async () => {
    const big = join(tempDir('rewind-feed-'), 'big');
    writeFileSync(big, randomBytes(10_000_000));
    const { rec } = await recordReplay(bufferedIo, ['reads', big]);
    const total = events(rec.traceDir).length;
    const logged = await replay(rec.traceDir, { env: { ...baseEnv(), REWIND_LOG_EVENTS: '1' } });
    expect(logged.status, describeRun(logged)).toBe(0);
    expect(logged.stdout.toString()).toBe(rec.stdout.toString());
    const stops = logged.stderr.toString().split('\n').filter((l) => /^\[\d+\] task /.test(l)).length;
    expect(total).toBeGreaterThan(1000);
    expect(stops, `${stops} of ${total} events applied at a stop`).toBeLessThan(total / 10);
  });

  it('threads racing between buffered calls switch where they were recorded to (3 runs)', async () => {
    let preemptedAfterBuffered = 0;
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(race, [data]);
      const records = events(rec.traceDir);
      preemptedAfterBuffered += records.filter((r, j) => {
        const before = records[j - 1];
        return r.type === EVENT_TYPES.preempt && before?.type === EVENT_TYPES.syscall && before.body.readUInt32LE(1) === r.body.readUInt32LE(1);
      }).length;
    }
    // The case the feed must not run past: a position right after the task's buffered calls.
    expect(preemptedAfterBuffered).toBeGreaterThan(0);
  });

  it('a call that differs from its record in the middle of a fed run stops there with a divergence', async () => {
    const { rec } = await recordReplay(bufferedIo, ['reads', data]);
    const read = tamperEvents(rec.traceDir, (records) => {
      const r = readInRun(records);
      r.body.writeBigUInt64LE(r.body.readBigUInt64LE(9 + 16) + 1n, 9 + 16); // its count
      return r;
    });
    expectDivergedAt(await replay(rec.traceDir), rec.traceDir, read.index, /: expected read\(0x3, 0x[0-9a-f]+, 0x[0-9a-f]+\) = \d+.*, got read\(0x3, /);
  });

  it('data a fed read gives the program tampered with: what it prints differs, and replay says so', async () => {
    const { rec } = await recordReplay(bufferedIo, ['reads', data]);
    tamperEvents(rec.traceDir, (records) => {
      const r = readInRun(records);
      r.body.writeUInt8(r.body.readUInt8(FIRST_WRITE_DATA) ^ 0xff, FIRST_WRITE_DATA);
      return r;
    });
    const write = findSyscall(events(rec.traceDir), SYS_write, (args) => args[0] === 1n);
    const rep = await replay(rec.traceDir);
    expectDivergedAt(rep, rec.traceDir, write.index, /write\(0x1, .* sent other data than when recorded/);
    expect(rep.stdout.toString()).toBe('');
  });
});
