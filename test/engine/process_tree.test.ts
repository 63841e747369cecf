// Issue 3, acceptance 1, 3 and 4: process trees, signals from outside, recordings cut short.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  FIXTURES,
  baseEnv,
  cleanupTemps,
  compile,
  expectCleanFailure,
  expectRecorded,
  expectSameRun,
  flushedWrites,
  readManifest,
  record,
  recordReplay,
  replay,
  requireCli,
  tempDir,
  until,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

describe('process trees', () => {
  it('sh pipeline: ls | sort -r | head -3', async () => {
    const { rec } = await recordReplay('/bin/sh', ['-c', 'ls /usr/bin | sort -r | head -3'], { expectStatus: 0 });
    expect(rec.stdout.toString().split('\n')).toHaveLength(4);
    const m = readManifest(rec.traceDir) as unknown as { processes: { pid: number; parent: number; execs: { argv: string[] }[] }[] };
    const programs = m.processes.flatMap((p) => p.execs.map((e) => e.argv[0]));
    expect(programs).toEqual(expect.arrayContaining(['ls', 'sort', 'head']));
    const root = m.processes[0]!;
    expect(root.parent).toBe(0);
    expect(m.processes.slice(1).every((p) => p.parent === root.pid)).toBe(true);
  });

  it('gzip -c FILE | sha256sum through sh -c', async () => {
    const dir = tempDir();
    const file = join(dir, 'data');
    writeFileSync(file, Buffer.alloc(300_000, 'rewind '));
    await recordReplay('/bin/sh', ['-c', `gzip -c ${file} | sha256sum`], { expectStatus: 0 });
  });

  it('make -j2 on a small Makefile; replay writes no file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'Makefile'), 'all: a b\n\techo done $$(cat a b)\na:\n\techo A > a\nb:\n\techo B > b\n');
    const rec = await record('make', ['-j2', '-C', dir]);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toContain('done A B');
    rmSync(join(dir, 'a'));
    rmSync(join(dir, 'b'));
    const rep = await replay(rec.traceDir);
    expectSameRun(rec, rep);
    expect(existsSync(join(dir, 'a')) || existsSync(join(dir, 'b')), 'replay ran the recipes for real').toBe(false);
  });

  it('git init and git commit in a temp repo', async () => {
    const dir = tempDir();
    const script = `cd ${dir} && git init -q repo && cd repo && echo hi > a && git add a && git -c user.name=t -c user.email=t@e commit -qm first && git log --format=%s`;
    const { rec } = await recordReplay('/bin/sh', ['-c', script], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('first\n');
  });

  it('a shell script with subshells, $RANDOM and an exit status', async () => {
    const { rec } = await recordReplay('/bin/bash', ['-c', 'echo $RANDOM $RANDOM; (echo sub $$; exit 3); echo status $?; for i in 1 2 3; do echo $i; done | tac; exit 5'], {
      expectStatus: 5,
    });
    expect(rec.stdout.toString()).toMatch(/^\d+ \d+\nsub \d+\nstatus 3\n3\n2\n1\n$/);
  });

  it('a shell script whose children end as it changes its signal mask, and a background job', async () => {
    // The kernel's SIGCHLD for a replayed child lands while replay runs the parent's
    // rt_sigprocmask for real: replay passes over it, as it does in user code.
    const { rec } = await recordReplay('/bin/bash', [join(FIXTURES, 'children.sh')], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('done 820\n');
  });

  it('SIGCHLD with a handler while children exit', async () => {
    const { rec } = await recordReplay(compile('sigchld_handler'), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/handler ran \d+ times\n$/);
  });
});

/**
 * Records a program in the background and, once it printed `ready`, sends `signal` to it or to
 * rewind itself; then again each time it prints `not ending` (`times` signals in all).
 */
function recordThenSignal(
  program: string,
  signal: NodeJS.Signals,
  opts: { to?: 'program' | 'rewind'; args?: string[]; times?: number } = {},
): Promise<{ traceDir: string; stdout: string; status: number | null; signal: NodeJS.Signals | null }> {
  const traceDir = join(tempDir('rewind-trace-'), 'trace');
  const times = opts.times ?? 1;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'record', '-o', traceDir, '--', program, ...(opts.args ?? [])], {
      env: baseEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let sent = 0;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      const due = stdout.includes('ready\n') ? 1 + stdout.split('not ending\n').length - 1 : 0;
      for (; sent < Math.min(due, times); sent++) {
        if (opts.to === 'rewind') {
          child.kill(signal);
          continue;
        }
        // The recorded program is the recorder's only child (forked by one of its threads):
        // signal it, not rewind.
        const pids = readdirSync(`/proc/${child.pid}/task`)
          .flatMap((tid) => readFileSync(`/proc/${child.pid}/task/${tid}/children`, 'utf8').trim().split(/\s+/))
          .filter((pid) => /^\d+$/.test(pid));
        expect(pids).toHaveLength(1);
        process.kill(Number(pids[0]), signal);
      }
    });
    child.on('error', reject);
    child.on('close', (status, sig) => {
      clearTimeout(timer);
      resolve({ traceDir, stdout, status, signal: sig });
    });
  });
}

describe('signals from outside', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} sent to a recorded program with a handler`, async () => {
      const rec = await recordThenSignal(compile('term_handler'), signal);
      expect(rec.status).toBe(0);
      expect(rec.stdout).toMatch(new RegExp(`^ready\\ngot signal ${signal === 'SIGTERM' ? 15 : 2} at \\d+\\.\\d{9}\\n$`));
      const rep = await replay(rec.traceDir);
      expect(rep.stdout.toString()).toBe(rec.stdout);
      expect(rep.status).toBe(0);
    });
  }

  it('a SIGTERM sent to rewind (kill, timeout, a service manager) goes on to the program, and the trace ends with it', async () => {
    const rec = await recordThenSignal(compile('term_handler'), 'SIGTERM', { to: 'rewind' });
    expect(rec.status).toBe(0);
    expect(rec.stdout).toMatch(/^ready\ngot signal 15 at \d+\.\d{9}\n$/);
    const rep = await replay(rec.traceDir);
    expect(rep.stdout.toString()).toBe(rec.stdout);
    expect(readManifest(rec.traceDir).complete).toBe(true);
  });

  // The SIGKILL lands where the program may have just written: the trace has that write, and
  // replay prints what the recording did.
  for (const times of [2, 1]) {
    it(`a program that does not end at SIGTERM is killed ${times === 2 ? 'at a second SIGTERM' : 'after the grace'}, and replays to that end`, async () => {
      const rec = await recordThenSignal(compile('term_handler'), 'SIGTERM', { to: 'rewind', args: ['stubborn'], times });
      expect(rec.signal).toBeNull();
      expect(rec.status).toBe(137);
      expect(rec.stdout).toBe('ready\nnot ending\n');
      const rep = await replay(rec.traceDir);
      expect(rep.stdout.toString()).toBe(rec.stdout);
      expect(rep.status).toBe(137);
      expect(readManifest(rec.traceDir).complete).toBe(true);
    });
  }
});

describe('recordings cut short', () => {
  it('a killed recorder leaves a trace that replays up to its end and says so', async () => {
    const traceDir = join(tempDir('rewind-trace-'), 'trace');
    const child = spawn(process.execPath, [CLI, 'record', '-o', traceDir, '--', '/bin/sh', '-c', 'echo first; sleep 20; echo never'], {
      env: baseEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Killed once the chunk holding the write is flushed: the trace then holds it.
    await until('the write to be flushed', () => flushedWrites(traceDir) >= 1);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    expect(existsSync(join(traceDir, 'manifest.json'))).toBe(true);
    const rep = await replay(traceDir);
    expect(rep.stdout.toString()).toBe('first\n');
    expectCleanFailure(rep, /cut short/);
  });

  it('the recorded program killed with SIGKILL: a complete trace with status 137', async () => {
    const { rec } = await recordReplay('/bin/sh', ['-c', 'echo before; kill -9 $$; echo after'], { expectStatus: 137 });
    expect(rec.stdout.toString()).toBe('before\n');
  });
});
