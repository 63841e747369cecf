// Issue 2, acceptance 1: real programs nobody here wrote replay byte for byte, including ones
// whose output changes on every native run (those also show that two native runs differ).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseEnv,
  cleanupTemps,
  describeRun,
  expectCleanFailure,
  expectSameRun,
  record,
  replay,
  recordReplay,
  realPython,
  requireCli,
  run,
  spawnsTasks,
  tempDir,
  until,
  which,
} from './harness.js';

afterAll(cleanupTemps);

/** A deterministic 1 MiB file and a small directory tree, made once. */
const work = tempDir('rewind-real-');
const dataFile = join(work, 'data.bin');
const data = Buffer.alloc(1 << 20);
for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
writeFileSync(dataFile, data);
const treeDir = join(work, 'tree');
mkdirSync(join(treeDir, 'sub'), { recursive: true });
writeFileSync(join(treeDir, 'a.txt'), 'alpha\n');
writeFileSync(join(treeDir, 'lines.txt'), Array.from({ length: 50 }, (_, i) => `line ${i}\n`).join(''));
writeFileSync(join(treeDir, 'sub', 'b.txt'), 'beta\n'.repeat(1000));
const repoDir = join(work, 'repo');

function git(args: string[]): void {
  const r = spawnSync('git', args, {
    env: baseEnv({
      GIT_AUTHOR_NAME: 't',
      GIT_AUTHOR_EMAIL: 't@example.com',
      GIT_COMMITTER_NAME: 't',
      GIT_COMMITTER_EMAIL: 't@example.com',
    }),
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`git ${args.join(' ')}: ${r.stderr}`);
}
mkdirSync(repoDir);
git(['-C', repoDir, 'init', '-q', '-b', 'main']);
writeFileSync(join(repoDir, 'README'), 'a repository\n');
writeFileSync(join(repoDir, 'tracked.txt'), 'one\n');
git(['-C', repoDir, 'add', '.']);
git(['-C', repoDir, 'commit', '-q', '-m', 'first']);
writeFileSync(join(repoDir, 'tracked.txt'), 'one\ntwo\n');
writeFileSync(join(repoDir, 'untracked.txt'), 'new\n');

interface Case {
  name: string;
  cmd: () => string;
  args: string[];
  input?: string;
  /** Shape of a native run's stdout. */
  stdout: RegExp;
  /** Output changes between native runs (two native runs must differ). */
  varies?: boolean;
  /** Seeded from the time in seconds: the second native run starts in a later second. */
  secondsSeeded?: boolean;
  /** Only single-process runs are supported: check with strace what to expect. */
  maybeMultiTask?: boolean;
}

const sha = createHash('sha256').update(data).digest('hex');

const cases: Case[] = [
  { name: 'date +%s%N', cmd: () => which('date'), args: ['+%s%N'], stdout: /^\d{19}\n$/, varies: true },
  { name: 'ls -la /usr/bin', cmd: () => which('ls'), args: ['-la', '/usr/bin'], stdout: /^total \d+\n(.*\n){100,}$/ },
  { name: 'sha256sum FILE', cmd: () => which('sha256sum'), args: [dataFile], stdout: new RegExp(`^${sha}  ${dataFile}\\n$`) },
  {
    name: 'python3 random/time/urandom',
    cmd: realPython,
    args: ['-c', 'import random,time,os; print(random.random(), time.time(), os.urandom(8).hex())'],
    stdout: /^0\.\d+ \d+\.\d+ [0-9a-f]{16}\n$/,
    varies: true,
  },
  {
    name: 'perl rand/time',
    cmd: () => which('perl'),
    args: ['-e', 'print rand(), " ", time, "\\n"'],
    stdout: /^[0-9.e-]+ \d+\n$/,
    varies: true,
  },
  {
    name: 'awk srand/rand',
    cmd: () => which('awk'),
    args: ['BEGIN{srand(); print rand()}'],
    stdout: /^[0-9.e-]+\n$/,
    varies: true,
    secondsSeeded: true, // mawk's srand()
  },
  {
    name: 'shuf -i 1-1000000 -n 5',
    cmd: () => which('shuf'),
    args: ['-i', '1-1000000', '-n', '5'],
    stdout: /^(\d+\n){5}$/,
    varies: true,
  },
  {
    name: 'od -An -tx8 -N16 /dev/urandom',
    cmd: () => which('od'),
    args: ['-An', '-tx8', '-N16', '/dev/urandom'],
    stdout: /^ [0-9a-f]{16} [0-9a-f]{16}\n$/,
    varies: true,
  },
  {
    name: 'cat fed through stdin',
    cmd: () => which('cat'),
    args: [],
    input: 'line one\nline two\n\u00e9t\u00e9\n',
    stdout: /^line one\nline two\n\xc3\xa9t\xc3\xa9\n$/, // UTF-8 bytes, matched as latin1
  },
  {
    name: 'gzip -c FILE',
    cmd: () => which('gzip'),
    args: ['-c', dataFile],
    stdout: /^\u001f\u008b/, // eslint-disable-line no-control-regex
    maybeMultiTask: true,
  },
  { name: 'tar cf - DIR', cmd: () => which('tar'), args: ['cf', '-', '-C', work, 'tree'], stdout: /tree\/sub\/b\.txt/, maybeMultiTask: true },
  { name: 'git --version', cmd: () => which('git'), args: ['--version'], stdout: /^git version \d+\.\d+/, maybeMultiTask: true },
  {
    name: 'git -C repo status',
    cmd: () => which('git'),
    args: ['-C', repoDir, 'status'],
    stdout: /modified: +tracked\.txt[\s\S]*untracked\.txt/,
    maybeMultiTask: true,
  },
  // More single-process programs from the base system.
  {
    name: 'sort -R FILE (random hash key from getrandom)',
    cmd: () => which('sort'),
    args: ['-R', join(treeDir, 'lines.txt')],
    stdout: /^(line \d+\n){50}$/,
    varies: true,
  },
  { name: 'mktemp -u', cmd: () => which('mktemp'), args: ['-u'], stdout: /^\/tmp\/tmp\.\w{10}\n$/, varies: true },
  {
    name: 'openssl rand -hex 16',
    cmd: () => which('openssl'),
    args: ['rand', '-hex', '16'],
    stdout: /^[0-9a-f]{32}\n$/,
    varies: true,
    maybeMultiTask: true,
  },
  {
    name: 'find /usr/include/linux -name *.h',
    cmd: () => which('find'),
    args: ['/usr/include/linux', '-name', '*.h'],
    stdout: /^(\/usr\/include\/linux\/.*\.h\n){100,}$/,
  },
  { name: 'du -s /usr/share/doc', cmd: () => which('du'), args: ['-s', '/usr/share/doc'], stdout: /^\d+\t\/usr\/share\/doc\n$/ },
  { name: 'stat FILE', cmd: () => which('stat'), args: [dataFile], stdout: /Size: 1048576/ },
];

describe('natively', () => {
  for (const c of cases) {
    it(`${c.name}${c.varies ? ': two runs differ' : ': two runs agree'}`, async () => {
      const a = await run(c.cmd(), c.args, { input: c.input });
      const second = Math.floor(Date.now() / 1000);
      if (c.secondsSeeded) await until('the next second', () => Math.floor(Date.now() / 1000) > second);
      const b = await run(c.cmd(), c.args, { input: c.input });
      for (const r of [a, b]) {
        expect(r.status, describeRun(r)).toBe(0);
        expect(r.stdout.toString('latin1'), describeRun(r)).toMatch(c.stdout);
      }
      if (c.varies) expect(a.stdout.toString('latin1')).not.toBe(b.stdout.toString('latin1'));
      else expect(a.stdout.toString('latin1')).toBe(b.stdout.toString('latin1'));
    });
  }
});

describe('record and replay', () => {
  it('node -e (starts threads): refused with "not supported yet", or recorded faithfully', async () => {
    // node starts in ~50 ms natively; 20 s under record is plenty, and a hang must fail, not stall.
    const rec = await record(process.execPath, ['-e', 'console.log(Math.random(), Date.now())'], { timeoutMs: 20_000 });
    if (rec.status !== 0) {
      expectCleanFailure(rec, /not supported yet/);
      return;
    }
    expect(rec.stdout.toString()).toMatch(/^0\.\d+ \d{13}\n$/);
    expectSameRun(rec, await replay(rec.traceDir, { timeoutMs: 20_000 }));
  });

  it('make -B -j2 of 8 C files: two compilers preempted in turn replay, every position met', async () => {
    const project = join(work, 'project');
    mkdirSync(project, { recursive: true });
    const objects: string[] = [];
    for (let i = 0; i < 8; i++) {
      const fns = Array.from({ length: 60 }, (_, j) => `int f${i}_${j}(int x) { int s = 0; for (int k = 0; k < x; k++) s += k * ${j + 1} ^ (s >> 3); return s; }`);
      writeFileSync(join(project, `m${i}.c`), `${fns.join('\n')}\n`);
      objects.push(`m${i}.o`);
    }
    writeFileSync(join(project, 'Makefile'), `all: ${objects.join(' ')}\n%.o: %.c\n\tcc -O1 -c -o $@ $<\n`);
    const { rec } = await recordReplay('make', ['-B', '-j2', '-C', project], { expectStatus: 0 });
    expect(rec.stdout.toString()).toContain('cc -O1 -c -o m7.o m7.c');
  });

  beforeAll(requireCli);
  for (const c of cases) {
    it(c.name, async () => {
      const cmd = c.cmd();
      if (c.maybeMultiTask && spawnsTasks(cmd, c.args)) {
        // Not single-process here: the only right answer is a clear refusal at record time.
        const rec = await record(cmd, c.args, { input: c.input });
        expectCleanFailure(rec, /not supported yet/);
        return;
      }
      const { rec } = await recordReplay(cmd, c.args, {
        input: c.input,
        expectStatus: 0,
        replayInput: c.input === undefined ? undefined : 'different stdin for replay\n',
      });
      expect(rec.stdout.toString('latin1'), describeRun(rec)).toMatch(c.stdout);
      if (!c.varies) {
        // Deterministic programs: recording must not change what the program does.
        const native = await run(cmd, c.args, { input: c.input });
        expect(rec.stdout.toString('latin1'), 'recorded stdout differs from a native run').toBe(
          native.stdout.toString('latin1'),
        );
        expect(rec.programStderr.toString('latin1')).toBe(native.stderr.toString('latin1'));
      }
    });
  }
});
