// Queries over a whole recording (docs/queries.md), on real programs compiled here: every call of
// a function and every write to a variable, compared with what the program itself printed, and
// each answer's moment opened in real gdb, which must show the same values there.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, CLI, describeRun, expectRecorded, FIXTURES, record, requireCli, rewind, tempDir, type Recording } from './harness.js';
import { gdbBatch, lineContaining } from '../support/gdb.js';
import type { QueryAnswer } from '../../trace/query.js';

interface Step {
  n: number;
  k: number;
  rest: string;
  total: number;
}

/** The program's own account: one `step n=N k=K ... counter=T` (or total=T) line a call. */
function stepsOf(rec: Recording): Step[] {
  return [...rec.stdout.toString().matchAll(/^step n=(\d+) k=(\d+) (.*) (?:counter|total)=(\d+)$/gm)].map((m) => ({ n: Number(m[1]), k: Number(m[2]), rest: m[3]!, total: Number(m[4]) }));
}

async function query(dir: string, ...words: string[]): Promise<QueryAnswer> {
  const r = await rewind(['query', dir, ...words, '--json']);
  expect(r.status, describeRun(r)).toBe(0);
  return JSON.parse(r.stdout.toString()) as QueryAnswer;
}

/** gdb started by `rewind debug DIR --moment M` (over stdio), running `commands` there. */
async function atMoment(dir: string, moment: string, commands: string[]): Promise<string[]> {
  const run = await gdbBatch(`| ${process.execPath} ${CLI} debug ${dir} --stdio --moment ${moment}`, commands);
  expect(run.status, run.transcript).toBe(0);
  return run.sections;
}

/** The value gdb printed for `print/d X` or `x/1gd ADDR`. */
function printed(section: string | undefined): number {
  const m = /(?:\$\d+ = |:\s+)(-?\d+)\s*$/m.exec(section ?? '');
  if (!m) throw new Error(`no value in ${section}`);
  return Number(m[1]);
}

/** Some of the answers: the first, one in the middle, the last. */
function some<T>(xs: T[]): T[] {
  return [...new Set([0, xs.length >> 1, xs.length - 1])].map((i) => xs[i]!);
}

function watched(moment: string): string {
  const m = /\.w([0-9a-f]+)\+8\./.exec(moment);
  if (!m) throw new Error(`not a write's moment: ${moment}`);
  return `0x${m[1]}`;
}

beforeAll(requireCli);
afterAll(cleanupTemps);

describe('a C program (gcc -O1 -g)', () => {
  const ROUNDS = 9;
  let rec: Recording;
  let steps: Step[];

  beforeAll(async () => {
    rec = await record(compile('query_target'), [String(ROUNDS)]);
    expectRecorded(rec, 0);
    steps = stepsOf(rec);
    expect(rec.stdout.toString()).toContain(`calls=${ROUNDS}\n`);
    expect(steps.length).toBe(ROUNDS);
  }, 60_000);

  it('calls: every call of step, with each argument by name and type as the program passed it', async () => {
    const a = await query(rec.traceDir, 'calls', 'step');
    expect(a.subject).toBe('step');
    expect(a.rows.length).toBe(ROUNDS);
    a.rows.forEach((row, i) => {
      const s = steps[i]!;
      const c = 'a'.charCodeAt(0) + (s.n % 26);
      expect(row.arguments).toEqual([
        { name: 'n', type: 'long int', value: String(s.n) },
        { name: 'k', type: 'int', value: String(s.k) },
        { name: 'c', type: 'char', value: `${c} '${String.fromCharCode(c)}'` },
        { name: 'd', type: 'double', value: String(s.n / 2) },
        { name: 's', type: 'const char *', value: expect.stringMatching(/^0x[0-9a-f]+$/) as unknown as string },
      ]);
      expect(row.thread).toBe(a.rows[0]!.thread);
    });
    expect(new Set(a.rows.map((r) => r.moment)).size).toBe(ROUNDS);
  }, 60_000);

  it("calls: each moment opens in gdb at step's first instruction, with those arguments and the counter before the call", async () => {
    const a = await query(rec.traceDir, 'calls', 'step');
    for (const i of some(a.rows.map((_, j) => j))) {
      const [rdi, rsi, counter, where] = await atMoment(rec.traceDir, a.rows[i]!.moment, ['print/d $rdi', 'print/d $esi', 'print/d counter', 'x/i $pc']);
      expect(printed(rdi)).toBe(steps[i]!.n);
      expect(printed(rsi)).toBe(steps[i]!.k);
      expect(printed(counter)).toBe(i === 0 ? 0 : steps[i - 1]!.total);
      expect(where).toMatch(/=> 0x[0-9a-f]+ <step>:/);
    }
  }, 180_000);

  it('writes: every write to counter, old and new value as the program printed them, by the line that writes it', async () => {
    const a = await query(rec.traceDir, 'writes', 'counter');
    expect(a.subject).toBe('counter (8 bytes)');
    expect(a.rows.length).toBe(ROUNDS);
    const line = lineContaining('query_target.c', 'counter += n * k');
    const value = (hex: string | undefined): number => Number(Buffer.from(hex ?? '', 'hex').readBigInt64LE(0));
    a.rows.forEach((row, i) => {
      expect(row.cause).toBe('instruction');
      expect(value(row.old)).toBe(i === 0 ? 0 : steps[i - 1]!.total);
      expect(value(row.new)).toBe(steps[i]!.total);
      expect(row.line).toBe(`${join(FIXTURES, 'query_target.c')}:${line}`);
      expect(row.instruction).toMatch(/^0x[0-9a-f]+$/);
    });
    // The same memory named by its address: the same answers.
    const byAddress = await query(rec.traceDir, 'writes', `${watched(a.rows[0]!.moment)}:8`);
    expect(byAddress.rows.map((r) => [r.moment, r.old, r.new])).toEqual(a.rows.map((r) => [r.moment, r.old, r.new]));
  }, 60_000);

  it('writes: each moment opens in gdb right after the write, the new value in memory and the writer just before pc', async () => {
    const a = await query(rec.traceDir, 'writes', 'counter');
    for (const i of some(a.rows.map((_, j) => j))) {
      const row = a.rows[i]!;
      const [counter, pc] = await atMoment(rec.traceDir, row.moment, ['print/d counter', 'print/x $pc']);
      expect(printed(counter)).toBe(steps[i]!.total);
      expect(pc).toContain(`= ${row.pc}`);
    }
  }, 180_000);

  it('syscalls: every write(2), with its result; its moment is the syscall instruction about to run', async () => {
    const a = await query(rec.traceDir, 'syscalls', 'write');
    const dumped = (await rewind(['dump', rec.traceDir])).stdout.toString().split('\n').filter((l) => / write\(0x1, /.test(l));
    expect(a.rows.length).toBe(dumped.length);
    expect(a.rows.length).toBeGreaterThan(0);
    for (const row of a.rows) expect(row.text).toMatch(/^write\(0x1, 0x[0-9a-f]+, 0x[0-9a-f]+\) = \d+, to stdout$/);
    const [rax, rdi, insn] = await atMoment(rec.traceDir, a.rows[a.rows.length - 1]!.moment, ['print/d $rax', 'print/d $rdi', 'x/i $pc']);
    expect(printed(rax)).toBe(1);
    expect(printed(rdi)).toBe(1);
    expect(insn).toMatch(/=> 0x[0-9a-f]+ .*:\s+syscall/);
    const all = await query(rec.traceDir, 'syscalls');
    expect(all.rows.length).toBe((await rewind(['dump', rec.traceDir])).stdout.toString().split('\n').filter((l) => /^\s*\d+ {2}task \d+ {2}[a-z0-9_]+\(/.test(l)).length);
  }, 120_000);
});

describe('a Rust program (rustc -g -C opt-level=1) with two threads', () => {
  const ROUNDS = 8;
  let rec: Recording;
  let steps: Step[];

  beforeAll(async () => {
    const exe = join(tempDir('rewind-query-rs-'), 'query_target');
    const built = spawnSync('rustc', ['-g', '-C', 'opt-level=1', '-o', exe, join(FIXTURES, 'query_target.rs')], { encoding: 'utf8', timeout: 120_000 });
    if (built.status !== 0) throw new Error(`rustc failed:\n${built.stderr}`);
    rec = await record(exe, [String(ROUNDS)]);
    expectRecorded(rec, 0);
    steps = stepsOf(rec);
    expect(rec.stdout.toString()).toContain(`calls=${ROUNDS}\n`);
    expect(steps.length).toBe(ROUNDS);
  }, 180_000);

  it('calls: every call of step from both threads, with its arguments', async () => {
    const a = await query(rec.traceDir, 'calls', 'step');
    expect(a.subject).toBe('query_target::step');
    expect(a.rows.length).toBe(ROUNDS);
    a.rows.forEach((row, i) => {
      const s = steps[i]!;
      expect(row.arguments).toEqual([
        { name: 'n', type: 'u64', value: String(s.n) },
        { name: 'k', type: 'u32', value: String(s.k) },
        { name: 'odd', type: 'bool', value: String(s.n % 2 === 1) },
      ]);
    });
    const threads = [...new Set(a.rows.map((r) => r.thread))];
    expect(threads.length).toBe(2);
    expect(a.rows.slice(0, ROUNDS / 2).every((r) => r.thread === threads[0])).toBe(true);
    expect(a.rows.slice(ROUNDS / 2).every((r) => r.thread === threads[1])).toBe(true);
    // In full, the same.
    expect((await query(rec.traceDir, 'calls', 'query_target::step')).rows).toEqual(a.rows);
  }, 60_000);

  it('writes: every write to the static TOTAL, with the totals the program printed', async () => {
    const a = await query(rec.traceDir, 'writes', 'TOTAL');
    expect(a.subject).toBe('query_target::TOTAL (8 bytes)');
    expect(a.rows.length).toBe(ROUNDS);
    a.rows.forEach((row, i) => {
      expect(Number(Buffer.from(row.new!, 'hex').readBigUInt64LE(0))).toBe(steps[i]!.total);
      expect(Number(Buffer.from(row.old!, 'hex').readBigUInt64LE(0))).toBe(i === 0 ? 0 : steps[i - 1]!.total);
      expect(row.line).toMatch(/:\d+$/);
    });
  }, 60_000);

  it("each moment opens in gdb on the thread that made the call or the write, with the same values", async () => {
    const calls = await query(rec.traceDir, 'calls', 'step');
    const writes = await query(rec.traceDir, 'writes', 'TOTAL');
    const total = watched(writes.rows[0]!.moment);
    // The first call (main thread) and the last (the other one): gdb on a Rust binary is slow to start.
    for (const i of [0, calls.rows.length - 1]) {
      const [rdi, before, thread, where] = await atMoment(rec.traceDir, calls.rows[i]!.moment, ['print/d $rdi', `x/1gd ${total}`, 'info threads', 'x/i $pc']);
      expect(printed(rdi)).toBe(steps[i]!.n);
      expect(printed(before)).toBe(i === 0 ? 0 : steps[i - 1]!.total);
      expect(thread).toMatch(new RegExp(`^\\* +\\d+ +Thread \\d+\\.${calls.rows[i]!.thread} `, 'm'));
      expect(where).toMatch(/=> 0x[0-9a-f]+ <_ZN12query_target4step17h[0-9a-f]{16}E>:/);
      const [after] = await atMoment(rec.traceDir, writes.rows[i]!.moment, [`x/1gd ${total}`]);
      expect(printed(after)).toBe(steps[i]!.total);
    }
  }, 300_000);
});
