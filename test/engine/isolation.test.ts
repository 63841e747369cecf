// Issue 10, acceptance 4: programs that isolate themselves. Namespaces (a pid namespace, whose
// pids the recorder maps; clone into new namespaces, which replay forks without) and seccomp
// filters the program installs (which also see rewind's own syscalls), recorded and replayed
// byte for byte, and what rewind refuses by name.
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CLI,
  baseEnv,
  cleanupTemps,
  compile,
  describeRun,
  expectCleanFailure,
  record,
  recordReplay,
  requireCli,
  run,
  tempDir,
  which,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

describe('namespaces', () => {
  it('a pid namespace: fork, getpid, kill, waitpid and the SETTID words as the tree inside saw them; its init ignores signals and dies of faults', async () => {
    const exe = compile('pid_namespace');
    const native = await run(exe, []);
    expect(native.status, describeRun(native)).toBe(0);
    expect(native.stdout.toString()).toContain('child: getpid 2, CLONE_CHILD_SETTID wrote 2');
    expect(native.stdout.toString()).toContain('outside: crashing init killed by 11');
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(native.stdout.toString());
    }
  });

  it('a network namespace: replacing an iptables table gives back its counters (a setsockopt that writes)', async () => {
    const exe = compile('netfilter_replace');
    const native = await run(exe, []);
    expect(native.status, describeRun(native)).toBe(0);
    const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe(native.stdout.toString());
  });
});

describe('seccomp filters the program installs', () => {
  it('errno, SIGSYS, ENOSYS, a skipped mprotect, the vDSO, TSYNC, a thread killed, a child, then death by SIGSYS', async () => {
    const exe = compile('seccomp_filters', { extra: ['-pthread'] });
    const native = await run(exe, []);
    expect(native.status, describeRun(native)).toBe(128 + 31);
    expect(native.stdout.toString()).toContain('mprotect -1 (Permission denied)');
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 128 + 31 });
      expect(rec.stdout.toString()).toBe(native.stdout.toString());
    }
  });

  it('a filter trap (SECCOMP_RET_TRAP) kills a child that blocked or ignored SIGSYS, as the kernel forces it, and reaches one that catches it', async () => {
    const { rec } = await recordReplay(compile('seccomp_trap_blocked'), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('blocked: killed by signal 31\nignored: killed by signal 31\ncaught: exited with 7\n');
  });

  it("rewind's own syscalls pass a filter that kills them: an exec under it", async () => {
    const exe = compile('seccomp_filters', { extra: ['-pthread'] });
    const { rec } = await recordReplay(exe, ['exec'], { expectStatus: 0 });
    expect(rec.stdout.toString()).toBe('echo ran under the filter\n');
  });

  it('strict mode and user-notification listeners are refused by name', async () => {
    const exe = compile('seccomp_filters', { extra: ['-pthread'] });
    expectCleanFailure(await record(exe, ['strict']), /seccomp strict mode/);
    expectCleanFailure(await record(exe, ['listener']), /SECCOMP_FILTER_FLAG_NEW_LISTENER/);
  });
});

// The programs fall back to a user namespace of their own when they may not make the others;
// the recorder then cannot read /proc/PID/map_files (CAP_SYS_ADMIN) and opens mapped files by
// their path instead. Run as nobody through setpriv (these machines run the suites as root).
describe('as an unprivileged user', () => {
  it('the pid namespace, network namespace and seccomp programs record and replay the same', async () => {
    expect(process.getuid?.(), 'the suites run as root here').toBe(0);
    const dir = tempDir('rewind-unprivileged-');
    chmodSync(dir, 0o777);
    const setpriv = which('setpriv');
    const asNobody = (args: string[]) =>
      run(setpriv, ['--reuid=65534', '--regid=65534', '--clear-groups', '--', process.execPath, CLI, ...args], {
        env: baseEnv({ HOME: dir, XDG_DATA_HOME: dir }),
      });
    const programs: [string, string[], number][] = [
      ['pid_namespace', [], 0],
      ['netfilter_replace', [], 0],
      ['seccomp_filters', ['-pthread'], 128 + 31],
    ];
    for (const [name, extra, status] of programs) {
      const exe = compile(name, { outDir: dir, extra });
      chmodSync(exe, 0o755);
      const trace = join(dir, `${name}.trace`);
      const rec = await asNobody(['record', '-o', trace, '--', exe]);
      expect(rec.status, describeRun(rec)).toBe(status);
      const rep = await asNobody(['replay', trace]);
      expect(rep.status, describeRun(rep)).toBe(status);
      expect(rep.stdout.toString()).toBe(rec.stdout.toString());
    }
  });
});
