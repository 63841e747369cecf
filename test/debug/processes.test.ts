// Issue 13, problem 4: `monitor processes` lists the recorded process tree, each process with
// its parent and the programs it ran, the debugged one marked; `--pid N` and `--exec NAME`
// debug another process of the tree (breakpoints in a fork child), and an exec is followed in
// place, forwards and backwards (gdb loads the program that runs at each stop).
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, readManifest, record, requireCli, rewind } from '../engine/harness.js';
import { gdbBatch, lineOf, startServer } from './gdb_harness.js';
import { expectSessionEnded, gdbMi, miField } from './mi_harness.js';

interface Process {
  pid: number;
  parent: number;
  execs: { exe: string; argv: string[] }[];
}

const processes = (traceDir: string): Process[] => readManifest(traceDir).processes as Process[];

afterAll(cleanupTemps);
beforeAll(requireCli);

async function monitorProcesses(traceDir: string): Promise<{ out: string; ctx: string }> {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, ['monitor processes']);
  return { out: gdb.sections[0]!, ctx: await expectSessionEnded(server, children, gdb.transcript) };
}

it('lists a fork child under its parent, the parent debugged', async () => {
  const exe = compile('fork');
  const rec = await record(exe);
  expectRecorded(rec, 0);
  const [parent, child] = processes(rec.traceDir);
  expect(child, 'the recording has the child').toBeDefined();
  const { out, ctx } = await monitorProcesses(rec.traceDir);
  expect(out, ctx).toMatch(/pid +parent +program/);
  expect(out, ctx).toMatch(new RegExp(`^\\* +${parent!.pid} +- +${exe}$`, 'm'));
  expect(out, ctx).toMatch(new RegExp(`^ +${child!.pid} +${parent!.pid} +\\(no exec: a fork of its parent\\)$`, 'm'));
});

it('shows the programs a process ran, in order, when it execs', async () => {
  const exe = compile('exec');
  const rec = await record(exe);
  expectRecorded(rec, 0);
  const execs = processes(rec.traceDir)[0]!.execs;
  expect(execs.length).toBe(2);
  const { out, ctx } = await monitorProcesses(rec.traceDir);
  expect(out, ctx).toContain(`${exe}  then  ${execs[1]!.exe} ${execs[1]!.argv.slice(1).join(' ')}`);
});

/** debug_tree (a parent, and a child that execs debug_tree_exec), recorded; its two processes. */
async function recordTree(): Promise<{ traceDir: string; parent: Process; child: Process; execd: string }> {
  const exe = compile('debug_tree');
  const execd = compile('debug_tree_exec', { outDir: dirname(exe) });
  const rec = await record(exe, [execd]);
  expectRecorded(rec, 0);
  expect(rec.stdout.toString()).toContain('computed 30');
  const [parent, child] = processes(rec.traceDir);
  expect(child?.execs.map((e) => e.exe), 'the child execs').toEqual([execd]);
  return { traceDir: rec.traceDir, parent: parent!, child: child!, execd };
}

let tree: Awaited<ReturnType<typeof recordTree>>;
beforeAll(async () => {
  tree = await recordTree();
});

const PENDING = ['-iex', 'set breakpoint pending on'];

it('--pid: breakpoints in a fork child stop there, forwards and backwards', async () => {
  const server = await startServer(tree.traceDir, ['--pid', String(tree.child.pid)]);
  const children = server.descendants();
  const commands = ['info threads', 'break child_step', 'continue', 'bt', 'continue', 'continue', 'print i', 'reverse-continue', 'print i', 'monitor processes', 'kill'];
  const gdb = await gdbBatch(server.port, commands);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  const out = (c: string, from = 0): string => gdb.sections[commands.indexOf(c, from)] ?? '';
  expect(out('info threads'), ctx).toContain(`Thread ${tree.child.pid}.${tree.child.pid}`);
  const line = lineOf('debug_tree.c', 'child_step');
  expect(gdb.sections[2], ctx).toMatch(new RegExp(`Breakpoint 1, child_step \\(i=i@entry=0\\) at .*debug_tree.c:${line}`));
  expect(out('bt'), ctx).toMatch(/#1 .* in main \(/);
  expect(gdb.sections[6], ctx).toMatch(/\$1 = 2/);
  expect(gdb.sections[8], ctx).toMatch(/\$2 = 1/);
  expect(out('monitor processes'), ctx).toMatch(new RegExp(`^\\* +${tree.child.pid} +${tree.parent.pid} `, 'm'));
});

it('follows the exec of the debugged process in place, and back over it', async () => {
  const server = await startServer(tree.traceDir, ['--pid', String(tree.child.pid)]);
  const children = server.descendants();
  const commands = [
    'break child_step if i == 4',
    'break compute',
    'continue',
    'continue',
    'info symbol $pc',
    'continue',
    'print result',
    'reverse-continue',
    'reverse-continue',
    'info symbol main',
    'enable 1',
    'continue',
    'print i',
    'kill',
  ];
  const gdb = await gdbBatch(server.port, commands, { pre: PENDING });
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  expect(gdb.sections[1], ctx).toMatch(/Breakpoint 2 \(compute\) pending/);
  expect(gdb.sections[2], ctx).toMatch(/Breakpoint 1, child_step \(i=i@entry=4\)/);
  // The exec: gdb reads the new program and sets the pending breakpoint in it.
  expect(gdb.sections[3], ctx).toContain(`process ${tree.child.pid} is executing new program: ${tree.execd}`);
  expect(gdb.sections[3], ctx).toMatch(new RegExp(`Breakpoint 2, compute \\(x=x@entry=1\\) at .*debug_tree_exec.c:${lineOf('debug_tree_exec.c', 'compute')}`));
  expect(gdb.sections[4], ctx).toMatch(/^compute in section \.text of .*debug_tree_exec/m);
  expect(gdb.sections[5], ctx).toMatch(/Breakpoint 2, compute \(x=x@entry=2\)/);
  expect(gdb.sections[6], ctx).toMatch(/\$1 = 1/);
  expect(gdb.sections[7], ctx).toMatch(/Breakpoint 2, compute \(x=x@entry=1\)/);
  // Back over the exec: the program before it again (gdb disabled breakpoint 1, which it could
  // not set in the new program, as it does natively), back to the child's start.
  expect(gdb.sections[8], ctx).toMatch(new RegExp(`process ${tree.child.pid} is executing new program: ${join(dirname(tree.execd), 'debug_tree')}\\n`));
  expect(gdb.sections[8], ctx).toContain('No more reverse-execution history.');
  expect(gdb.sections[9], ctx).toMatch(/^main in section \.text of .*debug_tree$/m);
  expect(gdb.sections[11], ctx).toMatch(/Breakpoint 1, child_step \(i=i@entry=4\)/);
  expect(gdb.sections[12], ctx).toMatch(/\$2 = 4/);
});

it('--exec NAME starts at the exec of that program, and its history begins there', async () => {
  const server = await startServer(tree.traceDir, ['--exec', 'debug_tree_exec']);
  const children = server.descendants();
  const commands = ['info symbol $pc', 'break compute', 'continue', 'reverse-continue', 'info symbol $pc', 'kill'];
  const gdb = await gdbBatch(server.port, commands);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  expect(gdb.sections[0], ctx).toMatch(/^_start in section \.text of .*ld-linux-x86-64\.so\.2$/m);
  expect(gdb.sections[2], ctx).toMatch(/Breakpoint 1, compute \(x=x@entry=1\)/);
  expect(gdb.sections[3], ctx).toContain('No more reverse-execution history.');
  expect(gdb.sections[4], ctx).toMatch(/^_start in section/m);
});

it('in MI (as cppdbg drives it), --pid stops in the child and follows its exec', async () => {
  const server = await startServer(tree.traceDir, ['--pid', String(tree.child.pid)]);
  const children = server.descendants();
  const mi = await gdbMi(server.port, ['-gdb-set breakpoint pending on', '-break-insert child_step', '-break-insert -f compute', '-exec-continue', '-break-delete 1', '-exec-continue', '-exec-continue --reverse', '-exec-continue']);
  const ctx = await expectSessionEnded(server, children, mi.transcript);
  const stopped = (i: number): string => mi.replies[i]?.stopped ?? '';
  expect(miField(stopped(3), 'reason'), ctx).toBe('breakpoint-hit');
  expect(stopped(3), ctx).toContain('func="child_step"');
  expect(stopped(5), ctx).toContain('func="compute"');
  expect(mi.replies[5]?.lines.join('\n'), ctx).toContain(`is executing new program: ${tree.execd}`);
  // Back: over the exec to the child's start (gdb 13 gives the end of history no reason), and
  // forwards again through the exec to compute.
  expect(mi.replies[6]?.lines.join('\n'), ctx).toContain(`is executing new program: ${join(dirname(tree.execd), 'debug_tree')}`);
  expect(mi.replies[6]?.lines.join('\n'), ctx).toContain('No more reverse-execution history.');
  expect(miField(stopped(6), 'func'), ctx).toBe('arch_fork');
  expect(stopped(7), ctx).toContain('func="compute"');
});

it('--pid and --exec that name nothing in the recording are refused by name', async () => {
  const none = await rewind(['debug', tree.traceDir, '--no-launch', '--pid', '1']);
  expect(none.status).not.toBe(0);
  expect(none.stderr.toString()).toContain('--pid 1: no such process in the recording');
  const noExec = await rewind(['debug', tree.traceDir, '--no-launch', '--pid', String(tree.parent.pid), '--exec', 'debug_tree_exec']);
  expect(noExec.status).not.toBe(0);
  expect(noExec.stderr.toString()).toContain(`--exec debug_tree_exec: no process ${tree.parent.pid} of the recording runs it`);
});
