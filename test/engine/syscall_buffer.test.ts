// Issue 14: the syscall buffer (docs/syscall-buffer.md). Syscalls the preloaded library makes
// without a ptrace stop reach the trace as ordinary events, and replay gives each one back byte
// for byte; signals that land inside the library, threads, a blocking pipe read beside buffered
// reads, fork, vfork and exec with the library; a static program through the ptrace path.
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
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
  run,
  tempDir,
  type Recording,
} from './harness.js';
import { rewind } from '../support/cli.js';

afterAll(cleanupTemps);

const RUNS = 5;
let program: string;
let staticProgram: string;
let data: string;

beforeAll(() => {
  requireCli();
  program = compile('buffered_io', { extra: ['-pthread'] });
  staticProgram = compile('buffered_io', { static: true, extra: ['-pthread'] });
  data = join(tempDir('rewind-buffered-'), 'data');
  writeFileSync(data, randomBytes(300_000));
});

/** The trace's events, one line each (`rewind dump`). */
async function dump(rec: Recording): Promise<string[]> {
  const r = await rewind(['dump', rec.traceDir]);
  expect(r.status, describeRun(r)).toBe(0);
  return r.stdout.toString().split('\n');
}

/** Events of the buffered kind the library set up (its request that returned 1), and reads. */
async function buffered(rec: Recording): Promise<{ threads: number; reads: number }> {
  const lines = await dump(rec);
  return {
    threads: lines.filter((l) => /syscall_29271\(\) = 1$/.test(l)).length,
    reads: lines.filter((l) => / read\(/.test(l)).length,
  };
}

async function recordAndReplay(mode: string, exe = program, buffer = '1'): Promise<Recording> {
  const rec = await record(exe, [mode, data], { env: { ...baseEnv(), REWIND_SYSCALL_BUFFER: buffer } });
  expectRecorded(rec, 0);
  expectSameRun(rec, await replay(rec.traceDir));
  return rec;
}

describe('the syscall buffer', () => {
  it('buffered reads, preads, seeks, stats and clock reads replay byte for byte, as natively read', async () => {
    const native = await run(program, ['reads', data]);
    expect(native.status, describeRun(native)).toBe(0);
    const rec = await recordAndReplay('reads');
    // What the file holds is what was read, recorded or not (the clock's line aside).
    expect(rec.stdout.toString().split('\n')[0]).toBe(native.stdout.toString().split('\n')[0]);
    const b = await buffered(rec);
    expect(b.threads).toBe(1);
    expect(b.reads).toBeGreaterThan(30);
  });

  it('is off without REWIND_SYSCALL_BUFFER=1: every syscall stops in the recorder', async () => {
    const rec = await recordAndReplay('reads', program, '0');
    expect((await buffered(rec)).threads).toBe(0);
  });

  it(`signals landing inside buffered code are delivered where replay finds them (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const rec = await recordAndReplay('signals');
      expect(rec.stdout.toString()).toMatch(/ticks (\d\d+) handler/);
      const lines = await dump(rec);
      expect(lines.filter((l) => l.includes('signal SIGALRM')).length).toBeGreaterThanOrEqual(10);
    }
  }, 300_000);

  it(`threads buffer each in a buffer of their own (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const rec = await recordAndReplay('threads');
      expect(rec.stdout.toString()).toMatch(/total 1199940\n$/);
      expect((await buffered(rec)).threads).toBe(4);
    }
  }, 300_000);

  it(`a thread blocked reading a pipe does not stall the buffered reads that feed it (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const rec = await recordAndReplay('pipe');
      expect(rec.stdout.toString()).toMatch(/pipe read 15: after the reads\n$/);
    }
  }, 300_000);

  it('fork, vfork and exec keep the library, each process with its buffer', async () => {
    const rec = await recordAndReplay('fork');
    const out = rec.stdout.toString();
    expect(out).toMatch(/child status 0\n/);
    expect(out).toMatch(/vfork child status 0\n/);
    expect(out.match(/^hash /gm)?.length).toBe(4);
    // The parent's (which its child inherits), and one per exec'd program.
    expect((await buffered(rec)).threads).toBe(3);
  });

  it("a filter of the program's own ends buffering: its install event clears the library's word", async () => {
    const rec = await recordAndReplay('filter');
    expect(rec.stdout.toString()).toMatch(/^filter 0$/m);
    const lines = await dump(rec);
    const install = lines.findIndex((l) => /prctl\(0x16, 0x2,/.test(l));
    expect(install, lines.join('\n')).toBeGreaterThan(0);
    expect(lines[install]).toMatch(/writes 4 bytes/);
    // Reads after it are traced: no fstat before each.
    const after = lines.slice(install + 1);
    expect(after.filter((l) => / read\(/.test(l)).length).toBeGreaterThan(30);
    expect(after.filter((l) => / fstat\(/.test(l)).length).toBeLessThan(5);
  });

  it('a static program makes its syscalls the traced way, and replays the same', async () => {
    const rec = await recordAndReplay('reads', staticProgram);
    const b = await buffered(rec);
    expect(b.threads).toBe(0);
    expect(b.reads).toBeGreaterThan(30);
  });
});
