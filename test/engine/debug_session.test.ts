// The engine's debug session (issue 5), driven directly: breakpoints, watchpoints, steps, and
// going back and forth through a recording always shows the same state.
import { execFileSync } from 'node:child_process';
import { openSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadEngine, stubPath, type DebugSession, type DebugStop } from '../../native/index.js';
import { cleanupTemps, compile, eventsBlob, expectRecorded, FIXTURES, record, requireCli } from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const RIP = 16 * 8; // offsets in user_regs_struct
const RDI = 14 * 8;
const RSI = 13 * 8;
const RSP = 19 * 8;

function symbols(exe: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of execFileSync('nm', [exe], { encoding: 'utf8' }).split('\n')) {
    const [addr, , name] = line.split(' ');
    if (addr && name) out.set(name, BigInt('0x' + addr));
  }
  return out;
}

/**
 * Resumes forwards past the stops at recorded signals (a child's SIGCHLD, the program's own
 * handled fault), which the tests that use it do not look at.
 */
function forwardPastSignals(s: DebugSession): DebugStop {
  for (;;) {
    const stop = s.resume({ reverse: false, step: false });
    if (stop.reason !== 'signal') return stop;
  }
}

/** Where the program's output goes: it is not what these tests look at (and replay stops on a failed write). */
const devNull = openSync('/dev/null', 'w');

function open(traceDir: string): DebugSession {
  return loadEngine().debug({ traceDir, eventsPath: eventsBlob(traceDir).path, stubPath: stubPath(), stdoutFd: devNull, stderrFd: devNull });
}

function rip(s: DebugSession, thread = s.pid): bigint {
  return s.registers(thread).general.readBigUInt64LE(RIP);
}

describe('debug session', () => {
  let exe: string;
  let trace: string;
  let sym: Map<string, bigint>;

  beforeAll(async () => {
    exe = compile('debuggee', { extra: ['-g', '-O0', '-no-pie'] });
    const rec = await record(exe, [], { input: Buffer.from('Ada\n36\n') });
    expect(rec.stdout.toString()).toBe('Ada is 74\n');
    trace = rec.traceDir;
    sym = symbols(exe);
  });

  it('stops at breakpoints forwards and backwards, and at both ends of the recording', () => {
    const s = open(trace);
    try {
      const main = sym.get('main')!;
      const make = sym.get('make')!;
      expect(s.threads()).toEqual([s.pid]);
      expect(s.exe()).toBe(exe);
      s.setBreakpoint(main);
      s.setBreakpoint(make);
      expect(s.resume({ reverse: false, step: false })).toEqual({ reason: 'breakpoint', thread: s.pid });
      expect(rip(s)).toBe(main);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(make);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(make);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(main);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
      expect(s.when().event).toBeLessThan(s.when().events);
    } finally {
      s.close();
    }
  });

  it('a write watchpoint stops after each write, forwards and backwards, with the same values each time', () => {
    const s = open(trace);
    try {
      s.setBreakpoint(sym.get('make')!);
      s.resume({ reverse: false, step: false });
      const agePtr = s.registers(s.pid).general.readBigUInt64LE(RDI) + 32n;
      s.removeBreakpoint(sym.get('make')!);
      s.setWatchpoint('write', agePtr, 4);
      const age = () => s.readMemory(agePtr, 4).readInt32LE();
      const seen: string[] = [];
      const where = () => `${age()}@${rip(s).toString(16)}`;
      for (let round = 0; round < 3; round++) {
        const fwd = s.resume({ reverse: false, step: false });
        expect(fwd).toEqual({ reason: 'watchpoint', thread: s.pid, watch: { kind: 'write', address: agePtr } });
        const first = where();
        expect(s.resume({ reverse: false, step: false }).reason).toBe('watchpoint');
        const second = where();
        // Backwards, it stops before the instruction that wrote: the old value is still there.
        expect(s.resume({ reverse: true, step: false }).reason).toBe('watchpoint');
        const beforeSecond = where();
        expect(s.resume({ reverse: true, step: false }).reason).toBe('watchpoint');
        const beforeFirst = where();
        // One instruction forwards runs the write again.
        expect(s.resume({ reverse: false, step: true }).reason).toBe('watchpoint');
        expect(where()).toBe(first);
        expect(s.resume({ reverse: true, step: true }).reason).toBe('step');
        expect(where()).toBe(beforeFirst);
        seen.push(`${first} ${second} ${beforeSecond} ${beforeFirst}`);
      }
      expect(new Set(seen).size).toBe(1);
      expect(seen[0]).toMatch(/^37@\w+ 74@\w+ 37@\w+ 0@\w+$/);
    } finally {
      s.close();
    }
  });

  it('stepping back and forth by instructions shows the same registers', () => {
    const s = open(trace);
    try {
      s.setBreakpoint(sym.get('parse_age')!);
      s.resume({ reverse: false, step: false });
      const regs: string[] = [s.registers(s.pid).general.toString('hex')];
      for (let i = 0; i < 20; i++) {
        expect(s.resume({ reverse: false, step: true }).reason).toBe('step');
        regs.push(s.registers(s.pid).general.toString('hex'));
      }
      for (let i = 19; i >= 0; i--) {
        expect(s.resume({ reverse: true, step: true }).reason).toBe('step');
        expect(s.registers(s.pid).general.toString('hex'), `step back to ${i}`).toBe(regs[i]);
      }
      // Back over the read() before parse_age: the thread stands at its syscall instruction.
      s.seek(0);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
    } finally {
      s.close();
    }
  });

  it('a set interrupt word stops a resume at the next segment', () => {
    const s = open(trace);
    try {
      const flag = new Int32Array(new SharedArrayBuffer(4));
      s.watchInterrupt(flag);
      Atomics.store(flag, 0, 1);
      const first = s.resume({ reverse: false, step: false });
      expect(first).toEqual({ reason: 'interrupted', thread: s.pid });
      const at = s.when().event;
      expect(s.resume({ reverse: false, step: false }).reason).toBe('interrupted');
      expect(s.when().event).toBeGreaterThan(at);
      Atomics.store(flag, 0, 0);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(() => s.watchInterrupt(new Int32Array(0))).toThrow(/Int32Array/);
    } finally {
      s.close();
    }
  });

  it('bad requests are refused with a code and leave the session usable', () => {
    const s = open(trace);
    try {
      expect(() => s.setBreakpoint(0x10n)).toThrow(expect.objectContaining({ code: 'EUNSUPPORTED' }) as Error);
      expect(() => s.setWatchpoint('write', 0x1001n, 4)).toThrow(/aligned/);
      expect(() => s.registers(12345678)).toThrow(/no thread/);
      expect(s.readMemory(0n, 16).length).toBe(0);
      for (const n of [1n, 2n, 3n, 4n]) s.setWatchpoint('access', 0x100000n * n, 8);
      expect(() => s.setWatchpoint('access', 0x500000n, 8)).toThrow(/more than 4 watchpoints/);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
    } finally {
      s.close();
    }
    expect(() => s.threads()).toThrow(/closed/);
  });
});

describe('debug session with threads', () => {
  it('breakpoints stop in each thread; reverse-continue visits them again in reverse order', async () => {
    const exe = compile('thread_steps', { extra: ['-g', '-O0', '-no-pie', '-pthread'] });
    const rec = await record(exe, []);
    expect(rec.stdout.toString()).toMatch(/visits 9\n$/);
    const s = open(rec.traceDir);
    try {
      const sym = symbols(exe);
      const visit = sym.get('visit')!;
      const work = sym.get('work')!;
      s.setBreakpoint(visit);
      const forward: number[] = [];
      let threads = 0;
      for (;;) {
        const stop = s.resume({ reverse: false, step: false });
        if (stop.reason === 'end') break;
        expect(stop.reason).toBe('breakpoint');
        expect(rip(s, stop.thread)).toBe(visit);
        forward.push(stop.thread);
        threads = Math.max(threads, s.threads().length);
      }
      expect(forward).toHaveLength(9);
      expect(new Set(forward).size).toBe(3);
      expect(threads).toBe(4);
      const backward: number[] = [];
      for (;;) {
        const stop = s.resume({ reverse: true, step: false });
        if (stop.reason === 'begin') break;
        backward.push(stop.thread);
        // Each thread shows its own stack: visit() was called from work().
        expect(rip(s, stop.thread)).toBe(visit);
        const rsp = s.registers(stop.thread).general.readBigUInt64LE(RSP);
        const ret = s.readMemory(rsp, 8).readBigUInt64LE();
        expect(ret > work && ret < work + 100n, `return address 0x${ret.toString(16)}`).toBe(true);
      }
      expect(backward).toEqual([...forward].reverse());
    } finally {
      s.close();
    }
  });
});

describe('debug session with threads, checkpointed', () => {
  it('going back from among running threads shows what going forwards showed', async () => {
    // In source order: milestone() alone on the last page.
    const exe = compile('thread_rounds', { extra: ['-O1', '-no-pie', '-pthread', '-fno-toplevel-reorder'] });
    const rec = await record(exe, []);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/^15 15 15 \d+\n$/);
    const s = open(rec.traceDir);
    try {
      const tick = symbols(exe).get('tick')!;
      s.setBreakpoint(tick);
      const seen = (stop: { thread: number }): string => {
        const regs = s.registers(stop.thread).general;
        return `${stop.thread} ${regs.readBigUInt64LE(RDI)}:${regs.readBigUInt64LE(RSI)} ${regs.toString('hex')}`;
      };
      const forward: string[] = [];
      for (;;) {
        const stop = s.resume({ reverse: false, step: false });
        if (stop.reason === 'end') break;
        expect(stop.reason).toBe('breakpoint');
        forward.push(seen(stop));
      }
      expect(forward).toHaveLength(45);
      // Checkpoints were taken while the threads ran, not only before and after them.
      expect(s.stats().checkpoints).toBeGreaterThan(4);
      const backward: string[] = [];
      for (;;) {
        const stop = s.resume({ reverse: true, step: false });
        if (stop.reason === 'begin') break;
        backward.push(seen(stop));
      }
      expect(backward).toEqual([...forward].reverse());
      // And single steps around a stop in the middle, back and forth.
      for (let i = 0; i < 20; i++) s.resume({ reverse: false, step: false });
      const thread = s.resume({ reverse: false, step: false }).thread;
      const regs = (): string => s.registers(thread).general.toString('hex');
      const steps = [regs()];
      for (let i = 0; i < 10; i++) {
        expect(s.resume({ reverse: false, step: true, thread }).reason).toBe('step');
        steps.push(regs());
      }
      for (let i = 9; i >= 0; i--) {
        expect(s.resume({ reverse: true, step: true, thread }).reason).toBe('step');
        expect(regs(), `step back to ${i}`).toBe(steps[i]);
      }
      // Windows among the threads are skipped when they did not run the breakpoint's page.
      s.removeBreakpoint(tick);
      const milestone = symbols(exe).get('milestone')!;
      s.setBreakpoint(milestone);
      const arg = (stop: { thread: number }): bigint => s.registers(stop.thread).general.readBigUInt64LE(RDI);
      expect(arg(s.resume({ reverse: false, step: false }))).toBe(2n);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(arg(s.resume({ reverse: true, step: false }))).toBe(2n);
      const skipped = s.stats().windowsSkipped;
      expect(arg(s.resume({ reverse: true, step: false }))).toBe(1n);
      expect(s.stats().windowsSkipped).toBeGreaterThan(skipped);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
    } finally {
      s.close();
    }
  });
});

describe('debug session with preempted threads, or with a child process, checkpointed', () => {
  it.each([
    ['threads preempted in tight loops', 'compute_threads.c', ['-pthread']],
    ['a child computing beside its parent', 'fork_rounds.c', []],
    ['a shell with short-lived children and a background job', 'children.sh', []],
    ['memory kept out of forks (MADV_DONTFORK)', 'dontfork.c', []],
  ])('%s: seeking back to an event shows what seeking forwards to it shows', async (_what, fixture, flags) => {
    const rec = fixture.endsWith('.sh')
      ? await record('/bin/bash', [join(FIXTURES, fixture)])
      : await record(compile(fixture.replace(/\.c$/, ''), { extra: ['-O1', ...flags] }), []);
    expectRecorded(rec, 0);
    const snapshot = (s: DebugSession): string =>
      `${s.when().event} ${s.threads()
        .map((t) => `${t}:${s.registers(t).general.toString('hex')}`)
        .join(' ')}`;
    const back = open(rec.traceDir);
    const events: number[] = [];
    const seenBack: string[] = [];
    try {
      expect(forwardPastSignals(back).reason).toBe('end');
      const total = back.when().events;
      for (let e = total - 3; e > 0; e -= Math.max(1, Math.floor(total / 20))) events.push(e);
      for (const e of events) {
        back.seek(e);
        seenBack.push(snapshot(back));
      }
      // Taken while the threads or both processes ran, not only before and after them (one
      // every 20 ms of replay: each of these runs for 100 ms or more).
      expect(back.stats().checkpoints).toBeGreaterThan(2);
    } finally {
      back.close();
    }
    const forward = open(rec.traceDir);
    try {
      const seenForward = [...events].reverse().map((e) => {
        forward.seek(e);
        return snapshot(forward);
      });
      expect(seenBack).toEqual(seenForward.reverse());
    } finally {
      forward.close();
    }
  });
});

describe('debug session and blocked SIGSEGV', () => {
  it('following code coverage never lets a blocked SIGSEGV through', async () => {
    const exe = compile('segv_blocked', { extra: ['-O1', '-no-pie'] });
    const rec = await record(exe, []);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/^(blocked\n){40}5460 \d+\n$/);
    const s = open(rec.traceDir);
    try {
      s.setBreakpoint(symbols(exe).get('far_away')!);
      for (let r = 0; r < 40; r++) expect(s.resume({ reverse: false, step: false }).reason).toBe('breakpoint');
      s.removeBreakpoint(symbols(exe).get('far_away')!);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
    } finally {
      s.close();
    }
  });
});

describe('debug session and signals waiting to be delivered', () => {
  it('stopping at every event in turn (a checkpoint at each stop) leaves every signal delivered', async () => {
    const rec = await record(compile('signal_rounds', { extra: ['-O1'] }), ['12']);
    expectRecorded(rec, 0);
    const s = open(rec.traceDir);
    try {
      const total = s.when().events;
      // A pause of more than the checkpoint interval makes the session take a checkpoint at the
      // next stop, wherever it is: also right after a signal stop, before the handler runs.
      const pause = (): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 25);
      for (let e = 1; e < total; e++) {
        s.seek(e);
        pause();
      }
      expect(s.resume({ reverse: false, step: false }).reason).toBe('end');
      expect(s.stats().checkpoints).toBeGreaterThan(total / 2);
    } finally {
      s.close();
    }
  });
});

describe('debug session after a long loop', () => {
  it('steps back from a function entered after a loop of 100 M iterations, without single-stepping the loop', async () => {
    const exe = compile('long_loop', { extra: ['-no-pie'] });
    const rec = await record(exe, []);
    expectRecorded(rec, 0);
    const s = open(rec.traceDir);
    const regs = () => s.registers(s.pid).general.toString('hex');
    try {
      s.setBreakpoint(symbols(exe).get('after_loop')!);
      expect(s.resume({ reverse: false, step: false }).reason).toBe('breakpoint');
      const entry = regs();
      // One instruction back: the call in main, found by its return address.
      expect(s.resume({ reverse: true, step: true }).reason).toBe('step');
      const call = regs();
      const rip = s.registers(s.pid).general.readBigUInt64LE(RIP);
      expect(s.readMemory(rip, 1)[0], 'a call instruction').toBe(0xe8);
      expect(s.resume({ reverse: false, step: true }).reason).toBe('step');
      expect(regs()).toBe(entry);
      expect(s.resume({ reverse: true, step: true }).reason).toBe('step');
      expect(regs()).toBe(call);
      // Before the call is the loop's last conditional jump, which runs 100 M times: stepping
      // back there is refused clearly (not a hang), and the session stays where it was.
      expect(() => s.resume({ reverse: true, step: true })).toThrow(/cannot step back here/);
      expect(regs()).toBe(call);
      expect(s.resume({ reverse: false, step: true }).reason).toBe('step');
      expect(regs()).toBe(entry);
    } finally {
      s.close();
    }
  });
});

describe('debug session and syscalls', () => {
  it('a watchpoint sees memory a syscall wrote: after the syscall forwards, at its instruction backwards', async () => {
    const exe = compile('read_into', { extra: ['-g', '-O0', '-no-pie'] });
    const rec = await record(exe, [], { input: Buffer.from('ABCD') });
    expect(rec.stdout.toString()).toBe(`${0x44434242}\n`);
    const s = open(rec.traceDir);
    try {
      const value = symbols(exe).get('value')!;
      const read = () => s.readMemory(value, 4).readInt32LE();
      s.setWatchpoint('write', value, 4);
      const forward: number[] = [];
      for (let i = 0; i < 3; i++) {
        expect(s.resume({ reverse: false, step: false }).reason).toBe('watchpoint');
        forward.push(read());
      }
      expect(forward).toEqual([1, 0x44434241, 0x44434242]);
      const backward: number[] = [];
      for (let i = 0; i < 3; i++) {
        expect(s.resume({ reverse: true, step: false }).reason).toBe('watchpoint');
        backward.push(read());
      }
      expect(backward).toEqual([0x44434241, 1, 0]);
      // Backwards from right after the read(), the stop is at its syscall instruction, not run yet.
      s.resume({ reverse: false, step: false });
      s.resume({ reverse: false, step: false });
      expect(read()).toBe(0x44434241);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('watchpoint');
      expect(read()).toBe(1);
      const rip = s.registers(s.pid).general.readBigUInt64LE(RIP);
      expect(s.readMemory(rip, 2).toString('hex')).toBe('0f05');
    } finally {
      s.close();
    }
  });
});

describe('debug session going back by code coverage', () => {
  it('skips the windows where a breakpoint’s page did not run, and still stops at every hit', async () => {
    const exe = compile('code_pages', { extra: ['-O0', '-no-pie'] });
    const rec = await record(exe, []);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/^[a-z]{140}\n3 42 7 1 6 6 \d+\n$/);
    const sym = symbols(exe);
    const s = open(rec.traceDir);
    const rdi = () => s.registers(s.pid).general.readBigUInt64LE(RDI);
    try {
      // Forwards to the end, running every window once with coverage on (through the made code,
      // the changed protection, the fault and the fork).
      expect(forwardPastSignals(s).reason).toBe('end');
      s.setBreakpoint(sym.get('rare')!);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(sym.get('rare')!);
      expect(rdi()).toBe(2n);
      const afterFirst = s.stats();
      expect(afterFirst.windowsSkipped, 'windows skipped on the way to rare(2)').toBeGreaterThan(0);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rdi()).toBe(1n);
      expect(s.stats().windowsSkipped).toBeGreaterThan(afterFirst.windowsSkipped);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
      s.removeBreakpoint(sym.get('rare')!);

      // The program changed the protection of that code: it was followed again from the next
      // checkpoint only.
      expect(forwardPastSignals(s).reason).toBe('end');
      s.setBreakpoint(sym.get('reprotected')!);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(sym.get('reprotected')!);
      // Code the program made is not followed: its windows are always replayed. (The program
      // writes that code after the mmap, over any int3: a hardware breakpoint finds it.)
      const made = s.readMemory(sym.get('made')!, 8).readBigUInt64LE();
      s.setWatchpoint('execute', made, 1);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('watchpoint');
      expect(rip(s)).toBe(made);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('begin');
      // And forwards again, the same stops.
      expect(forwardPastSignals(s).reason).toBe('watchpoint');
      expect(rip(s)).toBe(made);
      expect(forwardPastSignals(s).reason).toBe('breakpoint');
      expect(rip(s)).toBe(sym.get('reprotected')!);

      // Interrupted going back, it stops at the start of the window it was replaying.
      s.removeWatchpoint('execute', made, 1);
      s.removeBreakpoint(sym.get('reprotected')!);
      expect(forwardPastSignals(s).reason).toBe('end');
      const end = s.when().event;
      s.setBreakpoint(sym.get('main')!);
      const flag = new Int32Array(new SharedArrayBuffer(4));
      s.watchInterrupt(flag);
      Atomics.store(flag, 0, 1);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('interrupted');
      expect(s.when().event).toBeLessThan(end);
      Atomics.store(flag, 0, 0);
      expect(s.resume({ reverse: true, step: false }).reason).toBe('breakpoint');
      expect(rip(s)).toBe(sym.get('main')!);
    } finally {
      s.close();
    }
  });
});
