// Issue 10, acceptance 4: ptrace by the recorded program. The recorder is the kernel's tracer of
// every recorded task, so it emulates the program's ptrace (record/emulated_ptrace.h); each
// program prints what its tracer saw, and replay must print the same bytes.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, expectCleanFailure, record, recordReplay, requireCli, run } from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const RUNS = 5; // the stops race with what the tracee does: several recordings each

const attached = (end: string): string =>
  `attach again: -1\nstopped: 1 sig 19\n${end}rsp in stack: 1\n`;
const killed = 'killed: 1 by 9\ncont after end: -1\n';

const cases: { name: string; fixture: string; args: string[]; out: string }[] = [
  {
    name: 'PTRACE_ATTACH to a child blocked in read, PEEKDATA, GETREGS, CONT, its exit',
    fixture: 'ptrace_attach',
    args: ['pipe'],
    out: attached('marker: 1122334455667788\n') + 'exited: 1 status 7\ncont after end: -1\n',
  },
  {
    name: 'PTRACE_ATTACH to a sleeping child, killed while stopped',
    fixture: 'ptrace_attach',
    args: ['sleep'],
    out: attached('marker: 1122334455667788\n') + killed,
  },
  {
    name: 'PTRACE_ATTACH to a child computing: stopped in user code, killed there',
    fixture: 'ptrace_attach',
    args: ['spin'],
    out: attached('marker moved: 1\n') + killed,
  },
  {
    name: 'PTRACE_SEIZE: signals suppressed, delivered and replaced, a fault suppressed then delivered, waitid, SIGCHLD, the exit event',
    fixture: 'ptrace_signals',
    args: [],
    out: [
      'stop a',
      'siginfo: signo 10 code -6 pid ok 1',
      'waitid: code 4 pid ok 1 status c',
      'child got 12',
      'stop a',
      'child got 12',
      'stop b',
      'fault: signo 11 code 1 addr (nil)',
      'stop b',
      'child got 11',
      'stop 605',
      'exit event: 1 msg 500',
      'exited 5',
      'SIGCHLDs for stops: 6',
      '',
    ].join('\n'),
  },
  {
    name: 'a process attaching its sibling: its wait has no child of its own, and waits',
    fixture: 'ptrace_family',
    args: ['sibling'],
    out: 'sibling: pid ok 1 status 137f\ndetach: 0\ntracer: pid ok 1 status 0\nchild: pid ok 1 status 700\n',
  },
  {
    name: 'a thread waits for the stop of a tracee another thread attached',
    fixture: 'ptrace_family',
    args: ['thread'],
    out: 'thread: pid ok 1 status 137f\nmain: pid ok 1 status 700\n',
  },
  {
    name: 'a tracer that exits while its tracee is in its SIGSTOP stop: the tracee runs on',
    fixture: 'ptrace_family',
    args: ['death'],
    out: 'tracer: pid ok 1 status 2c00\ntracee ran on: 1\n',
  },
  {
    name: 'PTRACE_TRACEME, raise(SIGSTOP), PTRACE_O_TRACEEXIT set later',
    fixture: 'ptrace_family',
    args: ['traceme'],
    out: 'traceme again: -1\nstop: pid ok 1 status 137f\nexit event: pid ok 1 status 6057f\nend: pid ok 1 status 600\n',
  },
  {
    name: 'PTRACE_SEIZE: a SIGSTOP stop, re-injected into the group-stop reported as PTRACE_EVENT_STOP, CONT out of it',
    fixture: 'ptrace_group',
    args: ['seize'],
    out: 'signal stop: pid ok 1 status 137f\ngroup stop: pid ok 1 status 80137f\ncont: 0\nkilled: pid ok 1 status 9\n',
  },
  {
    name: 'PTRACE_INTERRUPT of a seized child blocked in read',
    fixture: 'ptrace_group',
    args: ['interrupt'],
    out: 'interrupt: 0\ninterrupted: pid ok 1 status 80057f\ncont: 0\nkilled: pid ok 1 status 9\n',
  },
  {
    name: 'PTRACE_ATTACH to a child in its group-stop',
    fixture: 'ptrace_group',
    args: ['attach'],
    out: 'attach: 0\nstopped: pid ok 1 status 137f\nkilled: pid ok 1 status 9\n',
  },
  {
    name: 'PTRACE_SEIZE of a child in its group-stop',
    fixture: 'ptrace_group',
    args: ['seize-stopped'],
    out: 'seize-stopped: 0\nstopped: pid ok 1 status 80137f\nkilled: pid ok 1 status 9\n',
  },
  {
    name: 'PTRACE_INTERRUPT of a tracee resumed out of its group-stop: the trap names the stop still in force',
    fixture: 'ptrace_group',
    args: ['seize-interrupt'],
    out: 'signal stop: pid ok 1 status 137f\ngroup stop: pid ok 1 status 80137f\ncont: 0\ninterrupt: 0\ninterrupted: pid ok 1 status 80137f\nkilled: pid ok 1 status 9\n',
  },
  {
    name: 'PTRACE_SYSCALL: getppid turned into gettid at its entry stop, its result replaced at its exit stop',
    fixture: 'ptrace_edit',
    args: ['syscall'],
    out: 'entry: status 857f getppid 1 op 1\nsetregs: 0\nexit: status 857f gettid 1 result is its pid 1 op 2\nend: exited 1 status 42\n',
  },
  {
    name: 'PTRACE_SYSCALL: every syscall of the child, entry and exit, as strace sees them',
    fixture: 'ptrace_edit',
    args: ['trace'],
    out: `${'stop entry nr 1\nstop exit nr 1 = 0\n'.repeat(3)}stop entry nr 110\nstop exit nr 110 = parent 1\nstop entry nr 231\nexited 7\n`,
  },
  {
    name: 'SETREGS to fault, then registers, memory (POKEDATA), eflags (POKEUSER) and FP state set at the fault: the tracee goes on changed',
    fixture: 'ptrace_edit',
    args: ['regs'],
    out: [
      'fault: sig 11 addr 0x4d',
      'setregs: 0',
      'poke: 0',
      'peek: abcdef',
      'poke at 0: -1',
      'pokeuser eflags: 0',
      'pokeuser dr0: 0 55 0',
      'setfpregs: 0',
      'end: exited 1 status 77',
      '',
    ].join('\n'),
  },
  {
    name: 'PTRACE_ARCH_PRCTL: the tracee reads through the gs base its tracer set',
    fixture: 'ptrace_edit',
    args: ['tls'],
    out: 'stop: 137f\nget gs: 0 base 0\nset gs: 0\ngs now: 1\nend: exited 1 status 9\n',
  },
  {
    name: 'an exec by a task attached without PTRACE_O_TRACEEXEC: its SIGTRAP after the exec, suppressed',
    fixture: 'ptrace_exec',
    args: ['attach'],
    out: 'attached: 0 status 137f\nstop: 57f execve 1 result 0\nevent msg is its pid: 1\nend: exited 1 status 77\n',
  },
  {
    name: 'an exec by a task seized with PTRACE_O_TRACEEXEC: its exec event before the result, then the syscall-exit stop',
    fixture: 'ptrace_exec',
    args: ['seize'],
    out: 'stop: 4057f execve 1 result -38\nstop: 57f execve 1 result 0\nevent msg is its pid: 0\nend: exited 1 status 77\n',
  },
  {
    name: 'PTRACE_ATTACH to a child in the group-stop it put itself in, CONT to the SIGTRAP after its exec (rr\'s ptrace_exec)',
    fixture: 'ptrace_exec_stopped',
    args: ['attach'],
    out: 'attach: 1\n',
  },
  {
    name: 'PTRACE_SEIZE of a child in the group-stop it put itself in, PTRACE_SYSCALL out of that stop (the syscall buffer turned off there) to its exec event',
    fixture: 'ptrace_exec_stopped',
    args: ['seize'],
    out: 'seize: 1\n',
  },
  {
    name: 'attach and seize while the child may still be on its way to its own SIGSTOP: no SIGSTOP comes after its exec',
    fixture: 'ptrace_exec_stopped',
    args: ['race'],
    out: 'race: 20\n',
  },
];

describe('ptrace by the recorded program', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const exe = compile(c.fixture, { extra: ['-pthread'] });
      const native = await run(exe, c.args);
      expect(native.stdout.toString(), describeRun(native)).toBe(c.out);
      for (let i = 0; i < RUNS; i++) {
        const { rec } = await recordReplay(exe, c.args, { expectStatus: 0 });
        expect(rec.stdout.toString()).toBe(c.out);
      }
    });
  }

  it('a request rewind does not emulate is refused by name', async () => {
    const exe = compile('ptrace_refused');
    const native = await run(exe, []);
    expect(native.status, describeRun(native)).toBe(0);
    expectCleanFailure(await record(exe, []), /ptrace request PTRACE_SINGLEBLOCK \(33\) is not supported yet/);
  });
});
