// Issue 14: the syscall buffer (docs/syscall-buffer.md). Syscalls the preloaded library makes
// without a ptrace stop reach the trace as ordinary events, and replay gives each one back byte
// for byte; signals that land inside the library, threads, a blocking pipe read beside buffered
// reads, fork, vfork and exec with the library, a thread of a raw clone; a static program
// through the ptrace path.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseEnv,
  cleanupTemps,
  compile,
  describeRun,
  expectRecorded,
  expectSameRun,
  recordReplay,
  replay,
  requireCli,
  run,
  stripRewindLines,
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
    threads: lines.filter((l) => /syscall_29271\(\) = 1(,|$)/.test(l)).length, // its writes: the TSC clock
    reads: lines.filter((l) => / read\(/.test(l)).length,
  };
}

/** Recorded as `rewind record` does by default (the buffer on), or with `options` before `--`. */
async function recordAndReplay(mode: string, exe = program, opts: { env?: NodeJS.ProcessEnv; options?: string[] } = {}): Promise<Recording> {
  const traceDir = join(tempDir('rewind-trace-'), 'trace');
  const r = await rewind(['record', ...(opts.options ?? []), '-o', traceDir, '--', exe, mode, data], { env: opts.env ?? baseEnv() });
  const rec = { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
  expectRecorded(rec, 0);
  expectSameRun(rec, await replay(rec.traceDir));
  return rec;
}

/** What the manifest says of the buffer. */
function manifestSaysBuffered(rec: Recording): unknown {
  return (JSON.parse(readFileSync(join(rec.traceDir, 'manifest.json'), 'utf8')) as { syscallBuffer?: unknown }).syscallBuffer;
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

  it('is on by default, and off with --no-syscall-buffer or REWIND_SYSCALL_BUFFER=0: every syscall then stops in the recorder', async () => {
    const on = await recordAndReplay('reads');
    expect(manifestSaysBuffered(on)).toBe(true);
    expect((await buffered(on)).threads).toBe(1);
    for (const off of [
      await recordAndReplay('reads', program, { options: ['--no-syscall-buffer'] }),
      await recordAndReplay('reads', program, { env: { ...baseEnv(), REWIND_SYSCALL_BUFFER: '0' } }),
    ]) {
      expect(manifestSaysBuffered(off)).toBe(false);
      expect((await buffered(off)).threads).toBe(0);
    }
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
      expect((await buffered(rec)).threads).toBe(5); // and the main thread's, set up when the library loads
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

  it('opens and closes of files and directories are buffered; a FIFO whose open waits for another thread is not; a signal an open brings comes as it returns', async () => {
    const rec = await recordAndReplay('opens');
    expect(rec.stdout.toString()).toMatch(
      /^sigio as the open returned: yes\nopens 200 missing 200 fifo through the fifo\nuid \d+ euid \d+ gid \d+ egid \d+\n$/,
    );
    // The library asks what a path or descriptor is (a stat from the same arguments) before it
    // opens or closes it without a stop; libc's own calls do not.
    const lines = await dump(rec);
    const call = /task (\d+)\s+(\w+)\((0x[0-9a-f]+)(?:, (0x[0-9a-f]+))?/;
    let opens = 0;
    let closes = 0;
    for (let i = 1; i < lines.length; i++) {
      const [prev, line] = [call.exec(lines[i - 1]!), call.exec(lines[i]!)];
      if (!prev || !line || prev[1] !== line[1]) continue;
      if (line[2] === 'openat' && prev[2] === 'newfstatat' && prev[3] === line[3] && prev[4] === line[4]) opens++;
      if (line[2] === 'close' && prev[2] === 'fstat' && prev[3] === line[3]) closes++;
    }
    expect(opens).toBeGreaterThanOrEqual(400 + 1); // the file and its directory 200 times, the file made
    expect(closes).toBeGreaterThanOrEqual(600);
  });

  it('children whose first calls are buffered, their first stop seen before their parent\'s fork: each call recorded once', async () => {
    // With the child resumed before its seccomp stops were set, its first buffered call stopped
    // in the recorder too, and was recorded twice (replay then diverged).
    for (let i = 0; i < 2; i++) {
      const rec = await recordAndReplay('spawns');
      expect(rec.stdout.toString()).toBe('200 of 200 children\n');
    }
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

  it("a thread that sets up its buffer after another thread's filter does not start buffering again", async () => {
    const exe = compile('filter_late_thread', { extra: ['-pthread'] });
    const traceDir = join(tempDir('rewind-trace-'), 'trace');
    const r = await rewind(['record', '-o', traceDir, '--', exe], { env: baseEnv() });
    const rec = { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toBe('late thread read its byte; main read 20 of 20\n');
    expectSameRun(rec, await replay(rec.traceDir));
    // The late thread's request for a buffer is refused: the process stopped buffering.
    const lines = await dump(rec);
    const after = lines.slice(lines.findIndex((l) => /prctl\(0x16, 0x2,/.test(l)) + 1);
    expect(after.filter((l) => /syscall_29271\(\) = -38 ENOSYS/.test(l)).length, lines.join('\n')).toBe(1);
    expect(after.filter((l) => /syscall_29271\(\) = 1(,|$)/.test(l)).length).toBe(0);
  });

  it(`a thread made by a raw clone (its creator's TLS) ends buffering: its clone event clears the library's word (${RUNS} runs)`, async () => {
    for (let i = 0; i < RUNS; i++) {
      const rec = await recordAndReplay('rawclone');
      const out = rec.stdout.toString().split('\n');
      expect(out[2]).toBe(`raw clone ${out[0]!.split(' in ')[0]!} in 33 reads`);
      const lines = await dump(rec);
      const clone = lines.findIndex((l) => / clone\(/.test(l));
      expect(clone, lines.join('\n')).toBeGreaterThan(0);
      expect(lines[clone]).toMatch(/writes 4 bytes/);
      // The child's reads and the thread's after it are traced: no fstat before each, and the
      // thread's request for a buffer is refused.
      const after = lines.slice(clone + 1);
      expect(after.filter((l) => /syscall_29271\(/.test(l)).length).toBe(1);
      expect(after.filter((l) => /syscall_29271\(\) = 1(,|$)/.test(l)).length).toBe(0);
      expect(after.filter((l) => / read\(/.test(l)).length).toBeGreaterThan(60);
      expect(after.filter((l) => / fstat\(/.test(l)).length).toBeLessThan(5);
    }
  }, 300_000);

  it("PR_GET_SECCOMP says what the program installed: the buffer's filter is rewind's, not the program's", async () => {
    const exe = compile('seccomp_mode', { extra: ['-pthread'] });
    const native = await run(exe, []);
    expect(native.stdout.toString(), describeRun(native)).toBe('before: 0\nafter: 2\nother thread: 0\n');
    const traceDir = join(tempDir('rewind-trace-'), 'trace');
    const r = await rewind(['record', '-o', traceDir, '--', exe], { env: baseEnv() });
    const rec = { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
    expectRecorded(rec, 0);
    expect(manifestSaysBuffered(rec)).toBe(true);
    expect(rec.stdout.toString()).toBe(native.stdout.toString());
    expectSameRun(rec, await replay(traceDir));
  });

  describe("libc's syscall() and a program's own syscall instruction (rr's detach_threads, hooks)", () => {
    let raw: string;
    beforeAll(() => {
      raw = compile('raw_syscalls', { extra: ['-pthread'] });
    });

    /** Recorded with the buffer (the default) and replayed byte for byte: the trace's events. */
    async function recordRaw(args: string[]): Promise<{ out: string; lines: string[] }> {
      const native = await run(raw, args);
      expect(native.status, describeRun(native)).toBe(0);
      const { rec } = await recordReplay(raw, args, { env: baseEnv(), expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(native.stdout.toString());
      return { out: rec.stdout.toString(), lines: await dump(rec) };
    }

    it('syscall(SYS_gettid) is buffered: each thread fills its buffer with the calls, and replay gives every tid back', async () => {
      const { out, lines } = await recordRaw(['threads', '4', '20000']);
      expect(out).toBe('threads 4, 20000 calls each, 0 wrong tids, pid and ppid agree\n');
      expect(lines.filter((l) => / gettid\(\) = /.test(l)).length).toBe(4 * 20001);
      // 20,000 records do not fit in a thread's 1 MiB: a traced gettid never fills the buffer.
      expect(lines.filter((l) => /syscall_29272\(/.test(l)).length).toBeGreaterThanOrEqual(4);
    }, 120_000);

    it('syscall() keeps %xmm0-7, buffered or not (glibc\'s does, and programs count on it)', async () => {
      const { out, lines } = await recordRaw(['vectors']);
      expect(out).toBe('vectors kept\n');
      expect(lines.filter((l) => / getuid\(/.test(l)).length).toBe(1);
    });

    it('syscall() returns and sets errno as glibc\'s does, with six arguments', async () => {
      const { out } = await recordRaw(['errno']);
      expect(out).toBe('close(-1) = -1, errno 9\ngettid agrees, errno 0\nmmap mapped\nmmap(fd -1) = -1, errno 9\n');
    });

    it("a syscall instruction of the program's own stops in the recorder each time, and replays", async () => {
      const { out, lines } = await recordRaw(['raw', '2000']);
      expect(out).toBe('raw close: 2000 of 2000 EBADF\n');
      expect(lines.filter((l) => / close\(0xc350\) = -9 EBADF$/.test(l)).length).toBe(2000);
    });
  });

  it('a static program makes its syscalls the traced way, and replays the same', async () => {
    const rec = await recordAndReplay('reads', staticProgram);
    const b = await buffered(rec);
    expect(b.threads).toBe(0);
    expect(b.reads).toBeGreaterThan(30);
  });
});
