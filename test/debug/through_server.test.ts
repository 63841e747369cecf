// Issue 13, acceptance: the crash scenario and the thread-switching scenario through a real
// server (uploaded over loopback, debugged in a server worker through the CLI's TCP bridge), in
// gdb batch and in MI, as locally; and an exec followed, and a leftover breakpoint's cost.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { openRemoteDebugBridge } from '../../remote/debug_bridge.js';
import { pushTrace } from '../../remote/upload.js';
import type { DebugStart } from '../../gen/rewind/replay/v1/replay.js';
import { dirname } from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { cleanupTemps, compile, expectRecorded, readManifest, record, requireCli } from '../engine/harness.js';
import { startTestServer, type TestServer } from '../server/helpers.js';
import { gdbBatch, lineOf, sourceLines } from './gdb_harness.js';
import { gdbMi, miField } from './mi_harness.js';

let ts: TestServer;
let reader: string;

async function upload(fixture: string, extra: string[], status: number, args: string[] = []): Promise<string> {
  const rec = await record(compile(fixture, { extra }), args);
  expectRecorded(rec, status);
  return (await pushTrace(ts.client(await ts.token('agent')), rec.traceDir)).traceId;
}

beforeAll(async () => {
  requireCli();
  ts = await startTestServer({ maxSessions: 2 });
  reader = await ts.token('reader');
}, 120_000);

afterAll(async () => {
  await ts?.close();
  cleanupTemps();
});

it('the use-after-free: the crash, the end of history, and the culprit found backwards, in gdb and in MI', async () => {
  const id = await upload('use_after_free', ['-O0'], 139);
  const L = (mark: string): number => lineOf('use_after_free.c', mark);
  const bridge = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const gdb = await gdbBatch(bridge.port, ['continue', 'bt', 'continue', 'watch -l s->on_close', 'reverse-continue', 'bt 1']);
    const s = gdb.sections;
    expect(s[0], gdb.transcript).toMatch(/Program received signal SIGSEGV, Segmentation fault\.\n.*close_session/);
    // The program's output reaches the user's gdb, not the server's log.
    expect(s[0], gdb.transcript).toMatch(/session for \w+\n/);
    expect(s[1], gdb.transcript).toMatch(/#0 +close_session[^]*#1 +0x[0-9a-f]+ in main \(\)/);
    expect(s[2], gdb.transcript).toMatch(/No more reverse-execution history\./);
    expect(sourceLines(s[4]!).pop(), gdb.transcript).toBe(L('culprit'));
    expect(s[5], gdb.transcript).toMatch(/#0 +(0x[0-9a-f]+ in )?new_message/);
    expect(gdb.transcript).not.toMatch(/Could not read registers|Remote connection closed/);
  } finally {
    await bridge.close();
  }
  const again = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const mi = await gdbMi(again.port, ['-exec-continue', '-exec-continue', '-interpreter-exec console "watch -l s->on_close"', '-exec-continue --reverse']);
    const r = mi.replies;
    expect(r.length, mi.transcript).toBe(4);
    expect(miField(r[0]!.stopped, 'signal-name'), mi.transcript).toBe('SIGSEGV');
    expect(r[1]!.stopped, mi.transcript).toBeDefined();
    expect(miField(r[3]!.stopped, 'reason'), mi.transcript).toBe('watchpoint-trigger');
    expect(miField(r[3]!.stopped, 'line'), mi.transcript).toBe(String(L('culprit')));
  } finally {
    await again.close();
  }
}, 180_000);

it('thread switches between stops lose no hit, in gdb and in MI', async () => {
  const id = await upload('thread_switch', ['-O0', '-pthread'], 0);
  const bridge = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const commands = ['break worker', 'continue', 'thread 1', 'continue', 'info threads', 'continue', 'thread 1', 'continue', 'bt 1', 'continue'];
    const gdb = await gdbBatch(bridge.port, commands);
    const s = gdb.sections;
    const ids = [1, 3, 5, 7].map((i) => /hit Breakpoint 1, worker \(arg=0x(\d)\)/.exec(s[i]!)?.[1]);
    expect(ids.sort(), gdb.transcript).toEqual(['0', '1', '2', '3']);
    expect(s[8], gdb.transcript).toMatch(/#0 +worker/);
    expect(s[9], gdb.transcript).toMatch(/No more reverse-execution history\./);
  } finally {
    await bridge.close();
  }
  const again = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const mi = await gdbMi(again.port, ['-break-insert worker', '-exec-continue', '-thread-select 1', '-exec-continue', '-thread-info', '-exec-continue', '-thread-select 1', '-exec-continue']);
    const stops = [1, 3, 5, 7].map((i) => mi.replies[i]?.stopped);
    for (const st of stops) expect(miField(st, 'func'), mi.transcript).toBe('worker');
    expect(new Set(stops.map((st) => miField(st, 'thread-id'))).size, mi.transcript).toBe(4);
  } finally {
    await again.close();
  }
}, 180_000);

it('starts a trace on the server at its end (the crash) or at event N, as locally', async () => {
  const id = await upload('use_after_free', ['-O0'], 139);
  const L = (mark: string): number => lineOf('use_after_free.c', mark);
  const atEnd = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0, 'end');
  try {
    const gdb = await gdbBatch(atEnd.port, ['bt 1', 'monitor when', 'watch -l s->on_close', 'reverse-continue']);
    const s = gdb.sections;
    // Connected at the crash: its frame, and the way back from it.
    expect(s[0], gdb.transcript).toMatch(/#0 +(0x[0-9a-f]+ in )?close_session/);
    const when = /event (\d+) of (\d+)/.exec(s[1]!);
    expect(Number(when?.[1]), gdb.transcript).toBeGreaterThan(0);
    expect(sourceLines(s[3]!).pop(), gdb.transcript).toBe(L('culprit'));
  } finally {
    await atEnd.close();
  }
  const atEvent = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0, { event: 5 });
  try {
    const gdb = await gdbBatch(atEvent.port, ['monitor when']);
    expect(gdb.sections[0], gdb.transcript).toMatch(/^event 5 of \d+/m);
  } finally {
    await atEvent.close();
  }
}, 180_000);

it('follows the exec of the recorded program in place, forwards and backwards, in gdb and in MI', async () => {
  const execd = compile('debug_tree_exec');
  const id = await upload('exec', [], 0, [execd]);
  const bridge = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const gdb = await gdbBatch(bridge.port, ['break compute', 'continue', 'info symbol $pc', 'reverse-continue', 'info symbol main'], { pre: ['-iex', 'set breakpoint pending on'] });
    const s = gdb.sections;
    expect(s[1], gdb.transcript).toContain(`is executing new program: ${execd}`);
    expect(s[1], gdb.transcript).toMatch(/Breakpoint 1, compute \(x=x@entry=1\)/);
    expect(s[2], gdb.transcript).toMatch(/^compute in section \.text of .*debug_tree_exec/m);
    // Back over the exec: the program before it (exec.c) again, to its start.
    expect(s[3], gdb.transcript).toMatch(/is executing new program: .*\/exec\n/);
    expect(s[3], gdb.transcript).toContain('No more reverse-execution history.');
    expect(s[4], gdb.transcript).toMatch(/^main in section \.text of .*\/exec$/m);
  } finally {
    await bridge.close();
  }
  const again = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const mi = await gdbMi(again.port, ['-break-insert -f compute', '-exec-continue', '-exec-continue']);
    const r = mi.replies;
    expect(r[1]!.lines.join('\n'), mi.transcript).toContain(`is executing new program: ${execd}`);
    expect(miField(r[1]!.stopped, 'func'), mi.transcript).toBe('compute');
    expect(r[2]!.stopped, mi.transcript).toMatch(/func="compute",args=\[\{name="x",value="2"\}/);
  } finally {
    await again.close();
  }
}, 180_000);

it('a breakpoint left beside a hot loop costs no replay of the windows it never ran in', async () => {
  const id = await upload('leftover', [], 1);
  const bridge = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
  try {
    const gdb = await gdbBatch(bridge.port, ['break beside', 'continue', 'break leftover.c:setup', 'reverse-continue', 'monitor history']);
    const s = gdb.sections;
    expect(s[1], gdb.transcript).toMatch(/Breakpoint 1, beside \(/);
    expect(s[3], gdb.transcript).toMatch(/Breakpoint 2, setup \(\)/);
    const m = /replayed (\d+) windows between them and skipped (\d+)/.exec(s[4]!);
    expect(Number(m?.[1]), gdb.transcript).toBeLessThanOrEqual(2);
    expect(Number(m?.[2]), gdb.transcript).toBeGreaterThanOrEqual(5);
  } finally {
    await bridge.close();
  }
}, 180_000);

it('--pid and --exec choose the process of a recorded tree on the server, as locally', async () => {
  const exe = compile('debug_tree');
  const execd = compile('debug_tree_exec', { outDir: dirname(exe) });
  const rec = await record(exe, [execd]);
  expectRecorded(rec, 0);
  const [parent, child] = readManifest(rec.traceDir).processes as { pid: number }[];
  const id = (await pushTrace(ts.client(await ts.token('agent')), rec.traceDir)).traceId;
  const flags = { server: ts.address, token: reader };
  const byPid = await openRemoteDebugBridge(id, flags, 0, undefined, { pid: child!.pid });
  try {
    const gdb = await gdbBatch(byPid.port, ['info threads', 'break child_step', 'continue', 'continue', 'continue', 'print i', 'reverse-continue', 'print i', 'monitor processes']);
    const s = gdb.sections;
    expect(s[0], gdb.transcript).toContain(`Thread ${child!.pid}.${child!.pid}`);
    expect(s[2], gdb.transcript).toMatch(/Breakpoint 1, child_step \(i=i@entry=0\)/);
    expect(s[5], gdb.transcript).toMatch(/\$1 = 2/);
    expect(s[7], gdb.transcript).toMatch(/\$2 = 1/);
    expect(s[8], gdb.transcript).toMatch(new RegExp(`^\\* +${child!.pid} +${parent!.pid} `, 'm'));
  } finally {
    await byPid.close();
  }
  const byExec = await openRemoteDebugBridge(id, flags, 0, undefined, { pid: child!.pid, exec: 'debug_tree_exec' });
  try {
    const gdb = await gdbBatch(byExec.port, ['info symbol $pc', 'break compute', 'continue', 'reverse-continue', 'info symbol $pc']);
    const s = gdb.sections;
    expect(s[0], gdb.transcript).toMatch(/^_start in section \.text of .*ld-linux-x86-64\.so\.2$/m);
    expect(s[2], gdb.transcript).toMatch(/Breakpoint 1, compute \(x=x@entry=1\)/);
    expect(s[3], gdb.transcript).toContain('No more reverse-execution history.');
  } finally {
    await byExec.close();
  }
  // A pid the recording does not hold ends the stream with the worker's message; a malformed
  // one is refused before a worker starts.
  const refused = async (start: DebugStart): Promise<ServiceError> => {
    const c = ts.client(reader);
    const stream = c.replay.debug(c.metadata());
    const err = new Promise<ServiceError>((resolve) => stream.on('error', resolve));
    stream.on('data', () => undefined);
    stream.write({ start });
    return err;
  };
  expect((await refused({ traceId: id, pid: 1 })).details).toContain('--pid 1: no such process in the recording');
  expect((await refused({ traceId: id, pid: 0 })).code).toBe(status.INVALID_ARGUMENT);
  expect((await refused({ traceId: id, exec: '' })).code).toBe(status.INVALID_ARGUMENT);
}, 180_000);
