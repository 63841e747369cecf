// Issue 13, problem 4 (in part): `monitor processes` lists the recorded process tree, each
// process with its parent and the programs it ran, the debugged one marked.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, readManifest, record, requireCli } from '../engine/harness.js';
import { gdbBatch, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

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
