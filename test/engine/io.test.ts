// Issue 2: replay performs none of the program's I/O (files, stdin), and needs none of the
// recording host's files (acceptance 2: own shared library deleted, trace moved; mapped data
// file changed after recording).
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  cleanupTemps,
  compile,
  describeRun,
  expectRecorded,
  expectSameRun,
  gcc,
  FIXTURES,
  lines,
  record,
  recordReplay,
  replay,
  requireCli,
  run,
  tempDir,
  which,
  type RunResult,
} from './harness.js';

afterAll(cleanupTemps);

function filesOutput(out: Buffer, input: string): void {
  const s = out.toString();
  expect(s).toMatch(
    new RegExp(
      '^read back \\d+ bytes: written at \\d+\\.\\d{9} pid \\d+\\n' +
        'unlinked: yes\\n' +
        'left behind left.txt\\n' +
        `input: ${input}$`,
    ),
  );
}

/** Builds libgreet.so and a program linked to it (with an rpath) in a fresh temp directory. */
function buildGreet(): { dir: string; exe: string } {
  const dir = tempDir('rewind-greet-');
  const lib = join(dir, 'libgreet.so');
  gcc(['-O1', '-g', '-shared', '-fPIC', '-o', lib, join(FIXTURES, 'greet_lib.c')], lib);
  const exe = join(dir, 'greet');
  gcc(['-O1', '-g', '-o', exe, join(FIXTURES, 'greet_main.c'), `-L${dir}`, '-lgreet', `-Wl,-rpath,${dir}`], exe);
  return { dir, exe };
}

const greetLine = /^greetings, tester, from libgreet \(greet at 0x[0-9a-f]+\)\n$/;

describe('natively', () => {
  it('files creates, reads back, unlinks, and leaves left.txt', async () => {
    const dir = tempDir('rewind-files-');
    const input = join(tempDir('rewind-input-'), 'input.txt');
    writeFileSync(input, 'input v1\n');
    const r = await run(compile('files'), [dir, input]);
    expect(r.status, describeRun(r)).toBe(0);
    filesOutput(r.stdout, 'input v1\n');
    expect(existsSync(join(dir, 'created.txt'))).toBe(false);
    expect(existsSync(join(dir, 'left.txt'))).toBe(true);
  });

  it('stdin_cat upper-cases stdin', async () => {
    const r = await run(compile('stdin_cat'), [], { input: 'abc\n' });
    expect(r.stdout.toString()).toBe('ABC\n');
    expect(r.stderr.toString()).toBe('stdin_cat: 4 bytes\n');
  });

  it('greet runs against its own libgreet.so, and not once the directory is gone', async () => {
    const { dir, exe } = buildGreet();
    const r = await run(exe, ['tester']);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.stdout.toString()).toMatch(greetLine);
    rmSync(dir, { recursive: true, force: true });
    await expect(run(exe, ['tester'])).rejects.toThrow(/ENOENT/);
  });

  it('mmap_file prints the mapped file', async () => {
    const data = join(tempDir('rewind-data-'), 'data.bin');
    writeFileSync(data, 'version one of the data');
    const r = await run(compile('mmap_file'), [data]);
    expect(r.stdout.toString()).toMatch(/^size=23 djb2=\d+\nversion one of the data\n$/);
  });
});

describe('record and replay', () => {
  beforeAll(requireCli);

  it('files: replay creates, reads and deletes nothing, and needs neither the directory nor the input', async () => {
    const dir = tempDir('rewind-files-');
    const inputDir = tempDir('rewind-input-');
    const input = join(inputDir, 'input.txt');
    writeFileSync(input, 'input v1\n');
    const rec = await record(compile('files'), [dir, input]);
    expectRecorded(rec, 0);
    filesOutput(rec.stdout, 'input v1\n');
    expect(existsSync(join(dir, 'created.txt'))).toBe(false);
    expect(readFileSync(join(dir, 'left.txt'), 'utf8')).toMatch(/^written at /);

    // The directory still exists but is empty; the input file changed.
    rmSync(join(dir, 'left.txt'));
    writeFileSync(input, 'input v2, changed after recording\n');
    expectSameRun(rec, await replay(rec.traceDir));
    expect(existsSync(join(dir, 'left.txt')), 'replay wrote left.txt').toBe(false);
    expect(existsSync(join(dir, 'created.txt')), 'replay left created.txt').toBe(false);

    // Neither the directory nor the input exists any more.
    rmSync(dir, { recursive: true, force: true });
    rmSync(inputDir, { recursive: true, force: true });
    expectSameRun(rec, await replay(rec.traceDir));
    expect(existsSync(dir), 'replay recreated the directory').toBe(false);
  });

  it('stdin_cat: replay takes stdin from the trace, not from its own stdin', async () => {
    const input = 'hello world\nline two\n';
    const { rec } = await recordReplay(compile('stdin_cat'), [], {
      input,
      replayInput: 'something else entirely\n',
    });
    expect(rec.stdout.toString()).toBe('HELLO WORLD\nLINE TWO\n');
    expect(rec.programStderr.toString()).toBe(`stdin_cat: ${input.length} bytes\n`);
  });

  it('stdin_cat: a 1 MiB stdin arriving in many reads', async () => {
    const chunk = Buffer.from('the quick brown fox jumps over the lazy dog 0123456789\n');
    const input = Buffer.concat(Array.from({ length: Math.ceil((1 << 20) / chunk.length) }, () => chunk));
    const { rec } = await recordReplay(compile('stdin_cat'), [], { input, replayInput: '' });
    expect(rec.stdout.length).toBe(input.length);
    expect(rec.stdout.equals(Buffer.from(input.toString('latin1').toUpperCase(), 'latin1'))).toBe(true);
  });

  it('shared library: build dir deleted and trace moved, replay prints the same', async () => {
    const { dir, exe } = buildGreet();
    const rec = await record(exe, ['tester']);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(greetLine);

    rmSync(dir, { recursive: true, force: true });
    const moved = join(tempDir('rewind-moved-'), 'elsewhere', 'trace-copy');
    mkdirSync(join(moved, '..'), { recursive: true });
    renameSync(rec.traceDir, moved);
    expect(existsSync(rec.traceDir)).toBe(false);

    const rep = await replay(moved);
    expectSameRun(rec, rep);
    expect(existsSync(dir)).toBe(false);
  });

  it('syscall_zoo: file, time, process-information and memory syscalls; replay touches nothing', async () => {
    const dir = tempDir('rewind-zoo-');
    const exe = compile('syscall_zoo');
    const native = await run(exe, [dir]);
    expect(native.status, describeRun(native)).toBe(0);
    expect(native.stdout.toString()).toMatch(/\ndone\n$/);
    expect(readdirSync(dir)).toEqual([]);

    const rec = await record(exe, [dir]);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/\ndone\n$/);
    // The same calls succeed or fail under record as natively (values aside).
    const verdicts = (b: Buffer): string[] =>
      lines(b)
        .filter((l) => !l.startsWith('  ') && !/^(times|umask) /.test(l))
        .map((l) => l.replace(/= (\d+)$/, (_m, v: string) => (v === '0' ? '= 0' : '= ok')));
    expect(verdicts(rec.stdout)).toEqual(verdicts(native.stdout));

    // A sentinel where the program created, truncated and deleted a.txt: replay leaves it alone.
    writeFileSync(join(dir, 'a.txt'), 'sentinel\n');
    expectSameRun(rec, await replay(rec.traceDir));
    expect(readdirSync(dir)).toEqual(['a.txt']);
    expect(readFileSync(join(dir, 'a.txt'), 'utf8')).toBe('sentinel\n');
  });

  it('fd_zoo: select, epoll, signalfd, SO_PEERCRED, SCM_RIGHTS, timerfd, sendfile, copy_file_range', async () => {
    const dir = tempDir('rewind-fdzoo-');
    const { rec } = await recordReplay(compile('fd_zoo'), [dir], { expectStatus: 0 });
    const out = rec.stdout.toString();
    expect(out).toMatch(/^select=1 isset=1 remaining=0\.\d{6}\n/);
    expect(out).toContain('signalfd read=128 signo=10 pid_is_self=1');
    expect(out).toContain("recvmsg=1 byte=F fd_received=1 read_from_it=1 'x'");
    expect(out).toContain('sendfile=15 off=15\ncopy_file_range=15 in=15 out=30\npread=30 copy me please\ncopy me please\n');
    expect(out).toMatch(/\ndone\n$/);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('mmap_coherence: a mapped file written with pwrite after mmap shows the same bytes in replay', async () => {
    const dir = tempDir('rewind-coherence-');
    const exe = compile('mmap_coherence');
    const native = await run(exe, [dir]);
    expect(native.stdout.toString()).toMatch(/^after pwrite: shared=(\d{9}) private=\1$/m);
    const { rec } = await recordReplay(exe, [dir], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(
      /^before: shared=A{8} private=A{8}\nafter pwrite: shared=(\d{9}) private=\1\npread after store: via-mapping\n$/,
    );
  });

  it('setarch -R: personality(ADDR_NO_RANDOMIZE) then exec of our own program', async () => {
    const aslr = compile('aslr');
    const { rec } = await recordReplay(which('setarch'), ['x86_64', '-R', aslr], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^stack=0x[0-9a-f]+\n/);
  });

  it('30 MB of output: replayed byte for byte, and two replays of one trace at once agree', async () => {
    const { rec } = await recordReplay(which('head'), ['-c', '30000000', '/dev/urandom'], { expectStatus: 0 });
    expect(rec.stdout.length).toBe(30_000_000);
    const [a, b] = await Promise.all([replay(rec.traceDir), replay(rec.traceDir)]);
    for (const r of [a, b]) {
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.stdout.equals(rec.stdout), 'parallel replay output differs').toBe(true);
    }
  });

  it('exec: a program that execs date mid-run replays both images', async () => {
    const { rec } = await recordReplay(compile('exec'), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^before exec\n\d{19}\n$/);
  });

  it('replay does not depend on the caller: other cwd, empty environment, stdin closed', async () => {
    const dir = tempDir('rewind-files-');
    const rec = await record(compile('files'), [dir]);
    expectRecorded(rec, 0);
    rmSync(dir, { recursive: true, force: true });
    const rep = await run(process.execPath, [CLI, 'replay', rec.traceDir], { cwd: '/', env: { PATH: '/usr/bin:/bin' } });
    expectSameRun(rec, rep);
    expect(existsSync(dir)).toBe(false);
  });

  it('mmap_file: the data file changed (then deleted) after recording does not change replay', async () => {
    const dataDir = tempDir('rewind-data-');
    const data = join(dataDir, 'data.bin');
    writeFileSync(data, 'version one of the data');
    const rec = await record(compile('mmap_file'), [data]);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/^size=23 djb2=\d+\nversion one of the data\n$/);

    writeFileSync(data, 'VERSION TWO of the data');
    expectSameRun(rec, await replay(rec.traceDir));
    writeFileSync(data, 'a longer third version of the data file, a different size');
    expectSameRun(rec, await replay(rec.traceDir));
    rmSync(dataDir, { recursive: true, force: true });
    expectSameRun(rec, await replay(rec.traceDir));
  });
});

describe("the program's recorded output, written again by replay", () => {
  it('a write that fails (full disk, file size limit) stops replay with the reason; a reader that went away does not', async () => {
    const rec = await record(compile('hello'), []);
    expectRecorded(rec, 3);
    const sh = (redirect: string, prelude = ''): Promise<RunResult> =>
      run('bash', ['-c', `${prelude}"$0" "$1" replay "$2" ${redirect}; echo "status \${PIPESTATUS[0]}" >&2`, process.execPath, CLI, rec.traceDir]);

    const full = await sh('> /dev/full');
    expect(full.stderr.toString(), describeRun(full)).toBe("rewind: replay failed: cannot write the program's recorded stdout: No space left on device\nstatus 125\n");

    const out = join(tempDir('rewind-fsize-'), 'out');
    const limited = await sh(`> ${out}`, 'trap "" XFSZ; ulimit -f 0; ');
    expect(limited.stderr.toString(), describeRun(limited)).toBe("rewind: replay failed: cannot write the program's recorded stdout: File too large\nstatus 125\n");

    // As the program did when its reader went away: replay goes on to the recorded exit.
    const gone = await sh('| true');
    expect(gone.stderr.toString(), describeRun(gone)).toBe('status 3\n');
  });
});
