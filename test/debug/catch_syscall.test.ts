// Issue 13, problem 6: gdb's `catch syscall` (QCatchSyscalls, syscall_entry/syscall_return stop
// replies) stops at every recorded syscall of the program, in the recorded order, on entry with
// the syscall not run yet and on return with its recorded result.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli, rewind } from '../engine/harness.js';
import { gdbBatch, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

afterAll(cleanupTemps);

let traceDir: string;
/** The recorded syscalls, as rewind dump shows them: name and result. */
let syscalls: { name: string; result: string }[];

beforeAll(async () => {
  requireCli();
  const rec = await record(compile('stdin_cat'), [], { input: 'one\ntwo\nthree\n' });
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
  const dump = await rewind(['dump', traceDir, '--json']);
  expect(dump.status, dump.stderr.toString()).toBe(0);
  const events = JSON.parse(dump.stdout.toString()) as { kind: string; text: string }[];
  syscalls = events
    .filter((e) => e.kind === 'syscall')
    // gdb names a syscall it does not know (the syscall buffer's own, syscall_29271) by its number.
    .map((e) => ({ name: /^(?:syscall_)?(\w+)\(/.exec(e.text)![1]!, result: /\) = (-?\d+|0x[0-9a-f]+)/.exec(e.text)![1]! }));
});

async function batch(commands: string[]): Promise<{ sections: string[]; ctx: string }> {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, commands);
  return { sections: gdb.sections, ctx: await expectSessionEnded(server, children, gdb.transcript) };
}

it('catch syscall stops at the entry and the return of every recorded syscall, in order', async () => {
  // exit_group is the end of history, not a stop of its own.
  const caught = syscalls.slice(0, -1);
  expect(syscalls.at(-1)?.name).toBe('exit_group');
  const commands = ['catch syscall', ...caught.flatMap(() => ['continue', 'continue']), 'continue'];
  const { sections: s, ctx } = await batch(commands);
  const seen = s.slice(1, -1).map((out) => /Catchpoint 1 \((call to|returned from) syscall (\w+)\)/.exec(out)?.slice(1, 3).join(' '));
  expect(seen, ctx).toEqual(caught.flatMap((c) => [`call to ${c.name}`, `returned from ${c.name}`]));
  expect(s.at(-1), ctx).toMatch(/No more reverse-execution history\./);
});

it('catch syscall NAME: on entry the syscall has not run, on return rax holds the recorded result', async () => {
  const reads = syscalls.filter((c) => c.name === 'read');
  expect(reads.length).toBeGreaterThan(1);
  const commands = ['catch syscall read', 'continue', 'info registers orig_rax rax', 'x/2i $pc', 'continue', 'info registers rax', 'continue', 'continue', 'info registers rax', 'delete', 'continue'];
  const { sections: s, ctx } = await batch(commands);
  expect(s[1], ctx).toMatch(/Catchpoint 1 \(call to syscall read\)/);
  expect(s[2], ctx).toMatch(/orig_rax +0x0 +0/);
  // Stopped at the syscall instruction itself.
  expect(s[3], ctx).toMatch(/=> 0x[0-9a-f]+ <[^>]+>:\tsyscall/);
  expect(s[4], ctx).toMatch(/Catchpoint 1 \(returned from syscall read\)/);
  expect(BigInt(/rax +(0x[0-9a-f]+)/.exec(s[5]!)![1]!), ctx).toBe(BigInt(reads[0]!.result));
  expect(s[7], ctx).toMatch(/Catchpoint 1 \(returned from syscall read\)/);
  expect(BigInt(/rax +(0x[0-9a-f]+)/.exec(s[8]!)![1]!), ctx).toBe(BigInt(reads[1]!.result));
  expect(s[10], ctx).toMatch(/No more reverse-execution history\./);
});

it('reverse-continue stops at the same catchpoints backwards: each return, then its entry', async () => {
  const reads = syscalls.filter((c) => c.name === 'read');
  expect(reads.length).toBeGreaterThan(1);
  const commands = [
    'catch syscall read',
    'continue',
    'continue',
    'continue',
    'continue',
    'info registers rax',
    'reverse-continue',
    'x/i $pc',
    'reverse-continue',
    'info registers rax',
    'reverse-continue',
    'reverse-continue',
    'continue',
  ];
  const { sections: s, ctx } = await batch(commands);
  expect(s[4], ctx).toMatch(/Catchpoint 1 \(returned from syscall read\)/);
  expect(BigInt(/rax +(0x[0-9a-f]+)/.exec(s[5]!)![1]!), ctx).toBe(BigInt(reads[1]!.result));
  expect(s[6], ctx).toMatch(/Catchpoint 1 \(call to syscall read\)/);
  expect(s[7], ctx).toMatch(/=> 0x[0-9a-f]+ <[^>]+>:\tsyscall/);
  expect(s[8], ctx).toMatch(/Catchpoint 1 \(returned from syscall read\)/);
  expect(BigInt(/rax +(0x[0-9a-f]+)/.exec(s[9]!)![1]!), ctx).toBe(BigInt(reads[0]!.result));
  expect(s[10], ctx).toMatch(/Catchpoint 1 \(call to syscall read\)/);
  expect(s[11], ctx).toMatch(/No more reverse-execution history\./);
  // And forwards again from the start: the first read's entry.
  expect(s[12], ctx).toMatch(/Catchpoint 1 \(call to syscall read\)/);
});
