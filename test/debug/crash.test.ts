// Issue 13, problem 1: a recording that ends in a crash stops at the crash with its signal, as
// gdb shows it natively; the crash moment can be inspected and left backwards, a second continue
// reports the end of history, and the session never dies. In gdb batch and in MI (as VS Code's
// cppdbg drives it). Handled signals are stops too, passed on by the next continue.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  cleanupTemps,
  compile,
  encodeEventStream,
  EVENT_TYPES,
  eventsBlob,
  expectRecorded,
  parseEventStream,
  record,
  replaceEventsBlob,
  requireCli,
  setSyscallNr,
  syscallOf,
  tempDir,
} from '../engine/harness.js';
import { gdbBatch, lineContaining, lineOf, loggedAsk, RawClient, sourceLines, startServer, type GdbRun } from './gdb_harness.js';
import { expectSessionEnded, gdbMi, miField, type MiSession } from './mi_harness.js';

afterAll(cleanupTemps);

async function recorded(fixture: string, status: number): Promise<string> {
  const exe = compile(fixture, { extra: ['-O0'] });
  const rec = await record(exe);
  expectRecorded(rec, status);
  return rec.traceDir;
}

/** Runs gdb batch against a fresh server; the session must end cleanly with gdb. */
async function batch(traceDir: string, commands: string[]): Promise<{ gdb: GdbRun; ctx: string }> {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, commands);
  return { gdb, ctx: await expectSessionEnded(server, children, gdb.transcript) };
}


const rip = (text: string | undefined): string | undefined => /rip +(0x[0-9a-f]+)/.exec(text ?? '')?.[1];

describe('a NULL dereference (crash.c)', () => {
  let traceDir: string;
  beforeAll(async () => {
    requireCli();
    traceDir = await recorded('crash', 139);
  });

  it('stops with SIGSEGV at the faulting line, with everything readable, and goes back from there', async () => {
    const crashLine = lineContaining('crash.c', '*(volatile int *)null_base = 1');
    const printLine = lineContaining('crash.c', 'printf("about to crash');
    const commands = [
      'continue',
      'bt',
      'info all-registers',
      'print null_base',
      'x/i $pc',
      'continue',
      'info registers rip',
      'bt',
      'reverse-stepi',
      'info registers rip',
      'stepi',
      'info registers rip',
      'stepi',
      `break crash.c:${printLine}`,
      'reverse-continue',
      'continue',
      'continue',
    ];
    const { gdb, ctx } = await batch(traceDir, commands);
    const s = gdb.sections;
    expect(s[0], ctx).toMatch(/Program received signal SIGSEGV, Segmentation fault\.\n.*main \(\) at .*crash\.c/);
    expect(sourceLines(s[0]!).pop(), ctx).toBe(crashLine);
    expect(s[1], ctx).toMatch(new RegExp(`#0 +main \\(\\) at .*crash\\.c:${crashLine}`));
    const at = rip(s[2]);
    // Every register, general, segment, x87 and SSE, as the crash left them.
    for (const r of ['rax', 'rsp', 'rip', 'eflags', 'cs', 'st0', 'xmm0', 'mxcsr']) expect(s[2], ctx).toMatch(new RegExp(`^${r} `, 'm'));
    expect(s[2], ctx).not.toMatch(/value is not available|Could not/);
    expect(at, ctx).toBeDefined();
    expect(s[3], ctx).toMatch(/^\$1 = 0$/m);
    expect(s[4], ctx).toMatch(/=> 0x[0-9a-f]+ <main\+\d+>:\s+mov/);
    // Past the crash: the end of history, still at the crash, still readable.
    expect(s[5], ctx).toMatch(/No more reverse-execution history\.\n.*main \(\) at .*crash\.c/);
    expect(rip(s[6]), ctx).toBe(at);
    expect(s[7], ctx).toMatch(new RegExp(`#0 +main \\(\\) at .*crash\\.c:${crashLine}`));
    // One instruction back is another instruction; one forwards is the faulting one, not run
    // yet; the next faults again.
    expect(rip(s[9]), ctx).toBeDefined();
    expect(rip(s[9]), ctx).not.toBe(at);
    expect(s[10], ctx).not.toMatch(/signal/);
    expect(rip(s[11]), ctx).toBe(at);
    expect(s[12], ctx).toMatch(/Program received signal SIGSEGV/);
    expect(s[14], ctx).toMatch(/Breakpoint 1, main \(\) at .*crash\.c/);
    expect(sourceLines(s[14]!).pop(), ctx).toBe(printLine);
    expect(s[15], ctx).toMatch(/Program received signal SIGSEGV, Segmentation fault\./);
    expect(s[16], ctx).toMatch(/No more reverse-execution history\./);
  });
});

describe('abort()', () => {
  it('stops with SIGABRT inside abort, with the caller on the stack, and reverse-continues to main', async () => {
    requireCli();
    const traceDir = await recorded('abort', 134);
    const commands = ['break main', 'continue', 'continue', 'bt', 'continue', 'reverse-continue', 'info threads'];
    const { gdb, ctx } = await batch(traceDir, commands);
    const s = gdb.sections;
    expect(s[1], ctx).toMatch(/Breakpoint 1, main \(\)/);
    expect(s[2], ctx).toMatch(/Program received signal SIGABRT, Aborted\./);
    expect(s[3], ctx).toMatch(/#\d+ +0x[0-9a-f]+ in (__GI_)?abort \(\)[^]*#\d+ +0x[0-9a-f]+ in main \(\) at .*abort\.c/);
    expect(s[4], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[5], ctx).toMatch(/Breakpoint 1, main \(\)/);
    expect(s[6], ctx).toMatch(/\* 1 +Thread \d+\.\d+/);
  });
});

describe('a use-after-free found from the crash', () => {
  let traceDir: string;
  beforeAll(async () => {
    requireCli();
    traceDir = await recorded('use_after_free', 139);
  });
  const L = (mark: string): number => lineOf('use_after_free.c', mark);

  it('in gdb: the crash, then watch -l and reverse-continue to the store that cleared the pointer', async () => {
    const commands = [
      'continue',
      'bt',
      'print s->on_close',
      'watch -l s->on_close',
      'reverse-continue',
      'bt',
      'reverse-continue',
      'bt 1',
      'continue',
      'continue',
      'continue',
    ];
    const { gdb, ctx } = await batch(traceDir, commands);
    const s = gdb.sections;
    expect(s[0], ctx).toMatch(/Program received signal SIGSEGV, Segmentation fault\.\n.*close_session \(s=0x[0-9a-f]+\) at .*use_after_free\.c/);
    expect(sourceLines(s[0]!).pop(), ctx).toBe(L('crash'));
    expect(s[1], ctx).toMatch(/#0 +close_session[^]*#1 +0x[0-9a-f]+ in main \(\)/);
    expect(s[2], ctx).toMatch(/^\$1 = \(struct handler \*\) 0x0$/m);
    expect(s[3], ctx).toMatch(/Hardware watchpoint 1: -location s->on_close/);
    // The culprit: the message's store into the freed session's memory. Going backwards gdb
    // shows the change backwards: the old value is the one after the store.
    expect(s[4], ctx).toMatch(/Old value = \(struct handler \*\) 0x0\s+New value = \(struct handler \*\) 0x[0-9a-f]+ <greeter>/);
    expect(sourceLines(s[4]!).pop(), ctx).toBe(L('culprit'));
    expect(s[5], ctx).toMatch(/#0 +(0x[0-9a-f]+ in )?new_message \(text=[^)]*\) at .*use_after_free\.c:\d+\n#1 +0x[0-9a-f]+ in main \(\)/);
    // Further back: where the pointer was set, when the memory was still the session's.
    expect(s[6], ctx).toMatch(/Old value = \(struct handler \*\) 0x[0-9a-f]+ <greeter>\s+New value = \(struct handler \*\) 0x0/);
    expect(sourceLines(s[6]!).pop(), ctx).toBe(L('assign'));
    expect(s[7], ctx).toMatch(/#0 +(0x[0-9a-f]+ in )?open_session/);
    // Forwards again: each store just after it ran, then the crash.
    expect(sourceLines(s[8]!).pop(), ctx).toBe(L('assign') + 1);
    expect(sourceLines(s[9]!).pop(), ctx).toBe(L('culprit') + 1);
    expect(s[10], ctx).toMatch(/Program received signal SIGSEGV/);
  });

  it('in MI: every *running is followed by *stopped, with the signal, the frames and the culprit', async () => {
    const server = await startServer(traceDir);
    const children = server.descendants();
    const commands = [
      '-exec-continue',
      '-stack-list-frames',
      '-data-evaluate-expression s->on_close',
      '-exec-continue',
      '-data-evaluate-expression s->on_close',
      '-interpreter-exec console "watch -l s->on_close"',
      '-exec-continue --reverse',
      '-stack-list-frames',
      '-exec-continue',
      '-exec-continue',
      '-thread-info',
    ];
    const mi: MiSession = await gdbMi(server.port, commands);
    const ctx = await expectSessionEnded(server, children, mi.transcript);
    const r = mi.replies;
    expect(r.length, ctx).toBe(commands.length);
    for (const reply of r) {
      if (reply.result.startsWith('^running')) expect(reply.stopped, `${reply.command}: no *stopped\n${ctx}`).toBeDefined();
    }
    expect(miField(r[0]!.stopped, 'reason'), ctx).toBe('signal-received');
    expect(miField(r[0]!.stopped, 'signal-name'), ctx).toBe('SIGSEGV');
    expect(miField(r[0]!.stopped, 'func'), ctx).toBe('close_session');
    expect(miField(r[0]!.stopped, 'line'), ctx).toBe(String(L('crash')));
    expect(r[1]!.result, ctx).toMatch(/^\^done,stack=\[frame=\{level="0",addr="0x[0-9a-f]+",func="close_session".*frame=\{level="1",addr="0x[0-9a-f]+",func="main"/);
    expect(miField(r[2]!.result, 'value'), ctx).toBe('0x0');
    // The end of history: a stop like any other, at the crash (gdb 13 gives this *stopped no
    // reason; the console stream says why).
    expect(miField(r[3]!.stopped, 'reason') ?? 'no-history', ctx).toBe('no-history');
    expect(r[3]!.lines.join('\n'), ctx).toContain('No more reverse-execution history.');
    expect(miField(r[3]!.stopped, 'func'), ctx).toBe('close_session');
    expect(miField(r[4]!.result, 'value'), ctx).toBe('0x0');
    expect(r[5]!.result, ctx).toMatch(/^\^done/);
    expect(miField(r[6]!.stopped, 'reason'), ctx).toBe('watchpoint-trigger');
    expect(miField(r[6]!.stopped, 'func'), ctx).toBe('new_message');
    expect(miField(r[6]!.stopped, 'line'), ctx).toBe(String(L('culprit')));
    expect(r[7]!.result, ctx).toMatch(/func="new_message".*func="main"/);
    expect(miField(r[8]!.stopped, 'reason'), ctx).toBe('watchpoint-trigger');
    expect(miField(r[9]!.stopped, 'reason'), ctx).toBe('signal-received');
    expect(r[10]!.result, ctx).toMatch(/^\^done,threads=\[\{id="1"/);
  });
});

describe('a handled signal', () => {
  it('stops with SIGUSR1 as natively, and the next continue passes it to the handler', async () => {
    requireCli();
    const traceDir = await recorded('raise', 143);
    const commands = ['break handler', 'continue', 'bt 1', 'continue', 'bt', 'continue', 'continue', 'reverse-continue', 'info registers rip'];
    const { gdb, ctx } = await batch(traceDir, commands);
    const s = gdb.sections;
    expect(s[1], ctx).toMatch(/Program received signal SIGUSR1, User defined signal 1\./);
    expect(s[2], ctx).toMatch(/#0 .*(raise|pthread_kill|__pthread_kill_implementation)/);
    expect(s[3], ctx).toMatch(/Breakpoint 1, handler \(sig=10\)/);
    expect(s[4], ctx).toMatch(/#0 +handler \(sig=10\)[^]*<signal handler called>/);
    expect(s[5], ctx).toMatch(/Program received signal SIGUSR1/);
    expect(s[6], ctx).toMatch(/Breakpoint 1, handler \(sig=10\)/);
    // Backwards, the breakpoint before.
    expect(s[7], ctx).toMatch(/Breakpoint 1, handler \(sig=10\)/);
    expect(rip(s[8]), ctx).toBeDefined();
  });
});

describe('a replay that fails under MI', () => {
  it('still answers a resume with *stopped, and the session goes on', async () => {
    requireCli();
    // A copy of a trace with a syscall late in the run renumbered: replay diverges there.
    const good = await recorded('crash', 139);
    const bad = join(tempDir('rewind-debug-mi-diverge-'), 'trace');
    cpSync(good, bad, { recursive: true });
    const stream = parseEventStream(readFileSync(eventsBlob(bad).path));
    const syscalls = stream.records.filter((r) => r.type === EVENT_TYPES.syscall);
    const victim = syscalls[syscalls.length - 1]!;
    setSyscallNr(victim, syscallOf(victim).nr === 39 ? 110 : 39);
    replaceEventsBlob(bad, encodeEventStream(stream));
    const server = await startServer(bad);
    const children = server.descendants();
    const commands = ['-exec-continue', '-data-evaluate-expression $pc', '-exec-continue --reverse', '-exec-continue'];
    const mi = await gdbMi(server.port, commands);
    const ctx = await expectSessionEnded(server, children, mi.transcript);
    expect(mi.replies.length, ctx).toBe(commands.length);
    for (const reply of mi.replies) {
      if (reply.result.startsWith('^running')) expect(reply.stopped, `${reply.command}: no *stopped\n${ctx}`).toBeDefined();
    }
    expect(mi.replies[0]!.lines.join('\n'), ctx).toMatch(/replay diverged at event \d+/);
    expect(mi.replies[1]!.result, ctx).toMatch(/^\^done,value="0x[0-9a-f]+/);
    expect(mi.replies[2]!.lines.join('\n'), ctx).toContain('No more reverse-execution history.');
  });
});

describe('a crash in one thread of several', () => {
  it('stops on the crashing thread, the others readable where they were, and goes back from there', async () => {
    requireCli();
    const exe = compile('thread_crash', { extra: ['-O0', '-pthread'] });
    const rec = await record(exe);
    expectRecorded(rec, 139);
    const commands = ['continue', 'bt', 'info threads', 'thread 1', 'bt', 'continue', 'break spinner', 'reverse-continue', 'bt 1'];
    const { gdb, ctx } = await batch(rec.traceDir, commands);
    const s = gdb.sections;
    const crashed = /Thread (\d+) "thread_crash" received signal SIGSEGV, Segmentation fault\./.exec(s[0]!);
    expect(crashed, ctx).not.toBeNull();
    expect(sourceLines(s[0]!).pop(), ctx).toBe(lineOf('thread_crash.c', 'crash'));
    expect(s[1], ctx).toMatch(/#0 +crasher \(arg=0x0\)[^]*start_thread/);
    expect([...s[2]!.matchAll(/Thread \d+\.\d+ "thread_crash"/g)].length, ctx).toBe(3);
    expect(s[2], ctx).toMatch(new RegExp(`^\\* ${crashed![1]} +Thread \\d+\\.\\d+ "thread_crash" crasher`, 'm'));
    expect(s[4], ctx).toMatch(/#\d+ +0x[0-9a-f]+ in main \(\) at .*thread_crash\.c/);
    // The end of history is the crash, on the crashing thread.
    expect(s[5], ctx).toMatch(/No more reverse-execution history\.[^]*crasher \(arg=0x0\)/);
    expect(s[7], ctx).toMatch(/hit Breakpoint 1, spinner \(arg=0x0\)/);
    expect(s[8], ctx).toMatch(/#0 +spinner/);
  });
});

describe('a death no signal stop announces (SIGKILL)', () => {
  it('ends history at the syscall that killed it, inspectable, and goes back from there', async () => {
    requireCli();
    const exe = compile('selfkill', { extra: ['-O0'] });
    const rec = await record(exe, ['kill']);
    expectRecorded(rec, 137);
    const killLine = lineContaining('selfkill.c', 'kill(getpid(), sig)');
    const commands = ['continue', 'bt', 'info registers rip', 'continue', 'break main', 'reverse-continue'];
    const { gdb, ctx } = await batch(rec.traceDir, commands);
    const s = gdb.sections;
    expect(s[0], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[1], ctx).toMatch(new RegExp(`#\\d+ +0x[0-9a-f]+ in main \\(.*\\) at .*selfkill\\.c:${killLine}`));
    expect(rip(s[2]), ctx).toBeDefined();
    expect(s[3], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[5], ctx).toMatch(/Breakpoint 1, main \(/);
  });
});

describe('signals gdb passes silently', () => {
  it('are not reported once gdb lists them in QPassSignals; the others still are', async () => {
    requireCli();
    const traceDir = await recorded('raise', 143);
    const server = await startServer(traceDir);
    const children = server.descendants();
    const c = await RawClient.connect(server.port);
    const log: string[] = [];
    const ask = loggedAsk(c, log, 100);
    try {
      await ask('QStartNoAckMode');
      expect(await ask('qSupported:multiprocess+;swbreak+;hwbreak+'), log.join('\n')).toContain('QPassSignals+');
      // SIGUSR1 (gdb's 0x1e) is a stop until gdb says to pass it.
      expect(await ask('vCont;c'), log.join('\n')).toMatch(/^T1ethread:/);
      expect(await ask('QPassSignals:e;14;1e;'), log.join('\n')).toBe('OK');
      // The other SIGUSR1s go to the handler unreported; SIGTERM (0x0f) stops.
      expect(await ask('vCont;C1e'), log.join('\n')).toMatch(/^T0fthread:/);
      // An empty list passes none: back at the start, SIGUSR1 stops again.
      expect(await ask('QPassSignals:'), log.join('\n')).toBe('OK');
      expect(await ask('bc'), log.join('\n')).toMatch(/^T05replaylog:begin;/);
      expect(await ask('vCont;c'), log.join('\n')).toMatch(/^T1ethread:/);
      await ask('D');
    } finally {
      c.close();
    }
    await expectSessionEnded(server, children, log.join('\n'));
  });
});
