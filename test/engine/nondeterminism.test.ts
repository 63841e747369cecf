// Issue 2, acceptance 3: every single-thread source of non-determinism in DESIGN.md's table is
// handled. Each fixture prints values that change between native runs; the recorded run's bytes
// must come back from replay exactly.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanupTemps,
  compile,
  describeRun,
  expectCleanFailure,
  expectSameRun,
  lines,
  record,
  recordReplay,
  replay,
  requireCli,
  run,
  type RunResult,
} from './harness.js';
import { rewind } from '../support/cli.js';

afterAll(cleanupTemps);

interface Case {
  fixture: string;
  link: 'dynamic' | 'static' | 'static-pie';
  /** Every stdout line of a native run matches this. */
  line: RegExp;
  lineCount: number;
  /** Two native runs print different output. */
  varies: boolean;
  status?: number;
}

const cases: Case[] = [
  { fixture: 'hello', link: 'dynamic', line: /^hello from rewind$/, lineCount: 1, varies: false, status: 3 },
  { fixture: 'hello', link: 'static', line: /^hello from rewind$/, lineCount: 1, varies: false, status: 3 },
  {
    fixture: 'vdso_time',
    link: 'dynamic',
    line: /^realtime=\d+\.\d{9} monotonic=\d+\.\d{9} tod=\d+\.\d{6} time=\d+$/,
    lineCount: 3,
    varies: true,
  },
  {
    fixture: 'vdso_time',
    link: 'static',
    line: /^realtime=\d+\.\d{9} monotonic=\d+\.\d{9} tod=\d+\.\d{6} time=\d+$/,
    lineCount: 3,
    varies: true,
  },
  { fixture: 'rdtsc', link: 'dynamic', line: /^rdtsc=\d+ rdtscp=\d+ aux=\d+ monotonic=yes$/, lineCount: 8, varies: true },
  { fixture: 'rdtsc', link: 'static', line: /^rdtsc=\d+ rdtscp=\d+ aux=\d+ monotonic=yes$/, lineCount: 8, varies: true },
  { fixture: 'getrandom', link: 'dynamic', line: /^getrandom=[0-9a-f]{64}$/, lineCount: 1, varies: true },
  { fixture: 'getrandom', link: 'static', line: /^getrandom=[0-9a-f]{64}$/, lineCount: 1, varies: true },
  { fixture: 'urandom', link: 'dynamic', line: /^urandom=[0-9a-f]{64}$/, lineCount: 1, varies: true },
  { fixture: 'at_random', link: 'dynamic', line: /^at_random=[0-9a-f]{32}$/, lineCount: 1, varies: true },
  { fixture: 'at_random', link: 'static', line: /^at_random=[0-9a-f]{32}$/, lineCount: 1, varies: true },
  {
    fixture: 'aslr',
    link: 'dynamic',
    line: /^(stack|heap|bigheap|libc_printf|main)=0x[0-9a-f]+$|^anon=0x[0-9a-f]+ anon$/,
    lineCount: 6,
    varies: true,
  },
  {
    fixture: 'aslr',
    link: 'static-pie',
    line: /^(stack|heap|bigheap|libc_printf|main)=0x[0-9a-f]+$|^anon=0x[0-9a-f]+ anon$/,
    lineCount: 6,
    varies: true,
  },
  {
    fixture: 'rseq',
    link: 'dynamic',
    line: /^rseq_registered=(yes|no) rseq_size=\d+ rseq_offset=-?\d+$|^cpu=\d+ getcpu_ok=1000$/,
    lineCount: 2,
    varies: false,
  },
];

function build(c: Case): string {
  return compile(c.fixture, { static: c.link === 'static', staticPie: c.link === 'static-pie' });
}

function expectShape(c: Case, r: RunResult): void {
  expect(r.status, describeRun(r)).toBe(c.status ?? 0);
  const ls = lines(r.stdout);
  expect(ls.length, describeRun(r)).toBe(c.lineCount);
  for (const l of ls) expect(l, describeRun(r)).toMatch(c.line);
}

describe('fixtures run natively', () => {
  for (const c of cases) {
    it(`${c.fixture} (${c.link}) prints the expected shape${c.varies ? ' and differs between two runs' : ''}`, async () => {
      const exe = build(c);
      const a = await run(exe, []);
      const b = await run(exe, []);
      expectShape(c, a);
      expectShape(c, b);
      if (c.varies) {
        expect(a.stdout.toString(), `two native runs printed the same:\n${describeRun(a)}`).not.toBe(b.stdout.toString());
      }
    });
  }
});

describe('record and replay reproduce the recorded run byte for byte', () => {
  beforeAll(requireCli);
  for (const c of cases) {
    it(`${c.fixture} (${c.link})`, async () => {
      const exe = build(c);
      const { rec, rep } = await recordReplay(exe, [], { expectStatus: c.status ?? 0 });
      expectShape(c, rec);
      // A second replay of the same trace is identical too.
      expectSameRun(rec, await replay(rec.traceDir));
      expect(rep.status).toBe(rec.status);
    });
  }

  it('rseq: replay prints what the recorded run printed (registration refused under record)', async () => {
    const exe = compile('rseq');
    const { rec } = await recordReplay(exe, []);
    // DESIGN.md: the recorder makes rseq fail with ENOSYS so glibc falls back.
    expect(rec.stdout.toString(), describeRun(rec)).toMatch(/^rseq_registered=no rseq_size=0 /);
  });

  it('tsc_prctl: the program enabling rdtsc itself (PR_SET_TSC) still replays its rdtsc values', async () => {
    const exe = compile('tsc_prctl');
    const a = await run(exe, []);
    const b = await run(exe, []);
    expect(a.stdout.toString()).toMatch(/^set=0 mode=1\n(rdtsc=\d+\n){3}$/);
    expect(a.stdout.toString()).not.toBe(b.stdout.toString());
    const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^set=0 mode=\d\n(rdtsc=\d+\n){3}$/);
  });

  it('random_device: std::random_device (rdrand natively) draws the recorded numbers in replay', async () => {
    const exe = compile('random_device', { sources: ['random_device.cc'], extra: ['-lstdc++'] });
    const a = await run(exe, []);
    const b = await run(exe, []);
    expect(a.stdout.toString(), describeRun(a)).toMatch(/^random_device=[0-9a-f]{16}\n$/);
    expect(a.stdout.toString()).not.toBe(b.stdout.toString());
    const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
    expect(rec.stdout.toString(), describeRun(rec)).toMatch(/^random_device=[0-9a-f]{16}\n$/);
    expectSameRun(rec, await replay(rec.traceDir));
  });

  for (const link of ['dynamic', 'static'] as const) {
    it(`vsyscall (${link}): calls of the vsyscall page are patched into syscalls and replay their results`, async () => {
      const exe = compile('vsyscall', { static: link === 'static' });
      const shape = /^(tod=0 \d+\.\d{6} time=(\d+) \2 getcpu=0 \d+\n){3}$/;
      const native = await run(exe, []);
      expect(native.stdout.toString(), describeRun(native)).toMatch(shape);
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString(), describeRun(rec)).toMatch(shape);
      expectSameRun(rec, await replay(rec.traceDir));
      // One patch per call site (its later calls are syscalls).
      const dump = await rewind(['dump', rec.traceDir]);
      expect(dump.status, describeRun(dump)).toBe(0);
      const patches = dump.stdout.toString().match(/patch of the call of the vsyscall page/g) ?? [];
      expect(patches.length, dump.stdout.toString()).toBe(3);
    });
  }

  it('vsyscall: a call of the vsyscall page of another shape is refused at record time, by name', async () => {
    const exe = compile('vsyscall');
    const native = await run(exe, ['rcx']);
    expect(native.stdout.toString(), describeRun(native)).toMatch(/^(time through rcx|vsyscall=none)\n$/);
    if (native.stdout.toString() === 'vsyscall=none\n') return; // a kernel without the page: nothing to refuse
    const rec = await record(exe, ['rcx']);
    expectCleanFailure(rec, /cannot record .*: the program called the vsyscall page at 0xffffffffff600400 \(returning to 0x[0-9a-f]+\) other than by `mov \$entry,%rax; call \*%rax`, which rewind cannot record yet/);
  });

  it('hello: the recorded run prints what a native run prints', async () => {
    const exe = compile('hello');
    const native = await run(exe, []);
    const { rec } = await recordReplay(exe, [], { expectStatus: 3 });
    expect(rec.stdout.toString('latin1')).toBe(native.stdout.toString('latin1'));
    expect(rec.programStderr.toString('latin1')).toBe('');
  });
});
