// Issue 10: a replay never prints or does anything else than the recording without saying so.
// Each corpus program here replayed wrongly, and silently, before the fix it tests.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine } from '../../native/index.js';
import { readManifest } from '../../trace/manifest.js';
import {
  CLI,
  cleanupTemps,
  FIRST_WRITE_DATA,
  FROM_SENT_HASH,
  compile,
  eventsBlob,
  expectCleanFailure,
  expectDivergedAt,
  expectRecorded,
  expectSameRun,
  parseEventStream,
  record,
  findSyscall,
  recordReplay,
  replay,
  requireCli,
  run,
  stripRewindLines,
  syscallResult,
  tamperEvents,
  tempDir,
  type Recording,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const SYS_read = 0;
const SYS_write = 1;

describe('no silent mismatch', () => {
  it('several processes and threads writing lines to one stdout: replay prints them in the recorded order', async () => {
    const exe = compile('writers', { extra: ['-pthread'] });
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString().split('\n')).toHaveLength(4 * 150 * 2 + 2);
    }
  });

  it('data sent by sendmsg (with a descriptor), sendmmsg, pwrite and writev replays exactly', async () => {
    const { rec } = await recordReplay(compile('pass_fd'), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toContain('parent: sendmmsg 2, lengths 5 7\n');
    expect(rec.stdout.toString()).toContain('reads 20 bytes: written with pwrite\n');
  });

  it('memory that holds what cpuid said (glibc keeps it) is the same in replay on another CPU', async () => {
    const taskset = spawnSync('taskset', ['--version']);
    if (taskset.status !== 0 || cpus().length < 2) return; // needs two CPUs to run on
    const exe = compile('memscan');
    // The recorder keeps the program on the CPU it starts on; replay starts on the other one.
    const traceDir = join(tempDir('rewind-trace-'), 'trace');
    const r = await run('taskset', ['-c', '0', process.execPath, CLI, 'record', '-o', traceDir, '--', exe]);
    const rec: Recording = { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
    expectRecorded(rec, 0);
    const rep = await run('taskset', ['-c', '1', process.execPath, CLI, 'replay', traceDir]);
    expectSameRun(rec, rep);
  });

  it('data the kernel copies to stdout (sendfile) is refused at record time, never left out of the replay', async () => {
    const rec = await record(compile('sendfile_out'), []);
    expectCleanFailure(rec, /the program sent data to its stdout with sendfile, which rewind cannot replay yet/);
    expect(rec.stdout.toString()).toBe('sent by the kernel\n');
  });

  it('the data a program reads tampered with: it writes other bytes, and replay says so', async () => {
    const rec = await record(compile('stdin_cat'), [], { input: 'hello\n' });
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toBe('HELLO\n');
    tamperEvents(rec.traceDir, (records) => {
      const read = findSyscall(records, SYS_read, (args, r) => args[0] === 0n && syscallResult(r) === 6n);
      read.body[FIRST_WRITE_DATA] = 'j'.charCodeAt(0);
      return read;
    });
    const events = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path)).records;
    const write = findSyscall(events, SYS_write, (args) => args[0] === 1n);
    const rep = await replay(rec.traceDir);
    expectDivergedAt(rep, rec.traceDir, write.index, /write\(0x1, 0x[0-9a-f]+, 0x6\) sent other data than when recorded: 6 bytes "JELLO\\n"/);
    expect(rep.stdout.toString()).toBe('');
  });

  it("a write's recorded hash tampered with: replay stops there", async () => {
    const rec = await record(compile('hello'), []);
    expectRecorded(rec, 3);
    const write = tamperEvents(rec.traceDir, (records) => {
      const w = findSyscall(records, SYS_write, (args) => args[0] === 1n);
      const at = w.body.length - FROM_SENT_HASH;
      w.body.writeBigUInt64LE(w.body.readBigUInt64LE(at) ^ 1n, at);
      return w;
    });
    expectDivergedAt(await replay(rec.traceDir), rec.traceDir, write.index, /sent other data than when recorded: 18 bytes "hello from rewind\\n"/);
  });
});

describe('syscall numbers', () => {
  it('numbers the kernel has no syscall for return ENOSYS, recorded and replayed', async () => {
    const { rec } = await recordReplay(compile('nosys'), [], { expectStatus: 0 });
    const out = rec.stdout.toString().split('\n');
    expect(out.slice(0, 7).every((l) => l.endsWith('= -1, Function not implemented')), rec.stdout.toString()).toBe(true);
    expect(out[7]).toBe('getpid with high bits set: same pid');
  });

  it('32-bit syscalls (int $0x80) are read with the i386 table: write, read, getpid, uname, set_thread_area, exit_group...', async () => {
    const { rec } = await recordReplay(compile('i386_calls'), [], { expectStatus: 7 });
    expect(rec.stdout.toString()).toBe(
      [
        'written by an i386 write',
        'write=25',
        'write(bad fd)=-9',
        'getpid matches=1 getppid matches=1 gettid matches=1 getuid32 matches=1',
        'uname=0 same=1',
        'read=14 data=through a pipe',
        'close=0 close again=-9',
        'sched_yield=0',
        'set_thread_area=0 entry=12',
        'through gs: seen thr',
        'get_thread_area=0 base matches=1 limit=0xfff',
        '',
      ].join('\n'),
    );
    // The same numbers as x86-64 calls are other syscalls: the trace names them apart.
    const { rec: getpid } = await recordReplay(compile('int80'), ['20'], { expectStatus: 0 }); // writev in 64-bit
    expect(getpid.stdout.toString()).toBe('32-bit syscall 20 returned a value\n');
  });

  it('a 32-bit syscall the i386 table does not have is refused by its i386 name, never read with the 64-bit table', async () => {
    const exe = compile('int80');
    for (const [nr, name] of [
      ['45', 'brk'], // recvfrom in the 64-bit table
      ['90', 'mmap'], // chmod in the 64-bit table
    ] as const) {
      const rec = await record(exe, [nr]);
      expectCleanFailure(rec, new RegExp(`32-bit syscall ${name} \\(${nr}\\) via int \\$0x80 is not supported`));
      expect(rec.stderr.toString()).not.toMatch(/recvfrom|chmod/);
    }
  });

  it('a 32-bit syscall that the trace names as the x86-64 one of its number: replay diverges there', async () => {
    const rec = await record(compile('int80'), ['20']);
    expectRecorded(rec, 0);
    const I386_GETPID = -(2 ** 31) + 20;
    const getpid = tamperEvents(rec.traceDir, (records) => {
      const r = findSyscall(records, I386_GETPID, () => true);
      r.body.writeInt32LE(20, 5); // nr, after the type and the tid
      return r;
    });
    expectDivergedAt(await replay(rec.traceDir), rec.traceDir, getpid.index, /i386 getpid\(\)/);
  });
});

describe('one address space per process', () => {
  it('a thread growing the heap after main grew and filled it: replay keeps main\'s data', async () => {
    const { rec } = await recordReplay(compile('sbrk_threads', { extra: ['-pthread'] }), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^heap intact, new page right after it: yes, checksum [0-9a-f]{16}\n$/);
  });
});

describe('diagnosis', () => {
  it('the engine lists events readably, with what each carries', async () => {
    const rec = await record(compile('hello'), []);
    expectRecorded(rec, 3);
    const { path } = eventsBlob(rec.traceDir);
    const all = loadEngine().dumpEvents(path, 0, 1_000_000);
    expect(all.length).toBe(parseEventStream(readFileSync(path)).records.length);
    expect(all[0]).toMatchObject({ index: 0, task: readManifest(rec.traceDir).processes[0]!.pid, kind: 'exec' });
    expect(all[0]!.text).toMatch(/^exec of .*hello, \d+ regions, ip 0x[0-9a-f]+, cpu -?\d+$/);
    expect(all.map((l) => l.text).join('\n')).toMatch(/^write\(0x1, 0x[0-9a-f]+, 0x12\) = 18, to stdout$/m);
    expect(all.map((l) => l.text).join('\n')).toMatch(/ = -2 ENOENT$/m);
    const some = loadEngine().dumpEvents(path, 2, 4);
    expect(some.map((l) => l.index)).toEqual([2, 3, 4]);
    expect(some.map((l) => l.text)).toEqual(all.slice(2, 5).map((l) => l.text));
  });
});
