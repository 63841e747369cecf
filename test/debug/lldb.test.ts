// Issue 13, problem 6: lldb connected the way `rewind debug --no-launch` tells the user to
// (its lldb command line): the executable and libraries are the trace's, forward debugging,
// registers, memory and threads work, watchpoints are counted (qWatchpointSupportInfo), and a
// crash is a stop without a storm of thread queries. lldb comes from Debian's packages
// (`apt-get install -y lldb`; .ci/run installs it).
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { testEnv } from '../support/env.js';
import { start } from '../support/process.js';
import { startServer, type DebugServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

afterAll(cleanupTemps);

beforeAll(() => {
  requireCli();
  if (spawnSync('lldb', ['--version']).status !== 0) throw new Error('lldb is not installed: apt-get install -y lldb (CI installs it in .ci/run)');
});

interface LldbRun {
  out: string;
  ctx: string;
  server: DebugServer;
}

/**
 * lldb in batch mode as the server's printed command line runs it, then `commands`; `onCrash`
 * run once a command stops at a crash (lldb's batch mode stops there otherwise).
 */
async function lldb(traceDir: string, commands: string[], onCrash: string[] = []): Promise<LldbRun> {
  const server = await startServer(traceDir, [], { REWIND_DEBUG_RSP: '1' });
  const children = server.descendants();
  const [cmd, ...args] = server.lldb;
  const run = start(cmd!, ['--batch', '--no-use-colors', ...args, ...commands.flatMap((c) => ['-o', c]), ...onCrash.flatMap((c) => ['-k', c])], {
    timeoutMs: 120_000,
    env: testEnv({ HOME: '/nonexistent' }),
  });
  const r = await run.done;
  const out = `${r.stdout.toString()}${r.stderr.toString()}`;
  const ctx = await expectSessionEnded(server, children, out);
  return { out, ctx, server };
}

describe('lldb', () => {
  let hello: string;
  let threads: string;
  let crash: string;

  beforeAll(async () => {
    const h = await record(compile('hello'));
    expectRecorded(h, 3);
    hello = h.traceDir;
    const t = await record(compile('thread_switch', { extra: ['-O0', '-pthread'] }));
    expectRecorded(t, 0);
    threads = t.traceDir;
    const c = await record(compile('crash', { extra: ['-O0'] }));
    expectRecorded(c, 139);
    crash = c.traceDir;
  });

  it('debugs forwards with the recorded executable and libraries: breakpoints, registers, memory, images', async () => {
    const { out, ctx } = await lldb(hello, ['breakpoint set -n main', 'continue', 'bt', 'register read rip rsp', 'memory read -c 8 -f x $rip', 'image list', 'watchpoint list', 'continue', 'kill']);
    expect(out, ctx).toMatch(/stop reason = breakpoint 1\.1\n\s+frame #0: 0x[0-9a-f]+ hello`main at hello\.c:6/);
    expect(out, ctx).toMatch(/frame #1: 0x[0-9a-f]+ libc\.so\.6`__libc_start_call_main/);
    expect(out, ctx).toMatch(/rip = 0x[0-9a-f]+ +hello`main \+ \d+ at hello\.c:6/);
    // The instruction bytes at rip are the program's (not a breakpoint's int3).
    expect(out, ctx).toMatch(/0x[0-9a-f]+: 0x[0-9a-f]{8}/);
    // Every image is the trace's copy, in the session's own sysroot: none from this machine.
    const images = out.split('\n').filter((l) => /^\[\s*\d+\] /.test(l));
    expect(images.length, ctx).toBeGreaterThanOrEqual(3);
    for (const l of images.filter((i) => !i.includes('linux-vdso'))) expect(l, ctx).toMatch(/rewind-gdb-[^/]+\/sysroot\//);
    expect(out, ctx).toMatch(/Number of supported hardware watchpoints: 4/);
    expect(out, ctx).not.toMatch(/no associated executable|error:/);
  });

  it('switches threads and reads each one', async () => {
    const { out, ctx } = await lldb(threads, ['breakpoint set -n worker', 'continue', 'thread list', 'thread select 1', 'register read rip', 'bt 1', 'continue', 'thread list', 'kill']);
    expect(out, ctx).toMatch(/stop reason = breakpoint 1\.1/);
    const listed = out.split('(lldb) thread list')[1]!.split('(lldb)')[0]!;
    expect(listed.match(/thread #\d+: tid = \d+/g)?.length ?? 0, ctx).toBeGreaterThanOrEqual(2);
    expect(listed, ctx).toMatch(/\* thread #\d+: tid = \d+, 0x[0-9a-f]+ thread_switch`worker/);
    expect(out.split('(lldb) thread select 1')[1], ctx).toMatch(/frame #0: 0x[0-9a-f]+ /);
  });

  it('stops at the crash with SIGSEGV, without a storm of thread queries', async () => {
    const { out, ctx, server } = await lldb(crash, ['continue'], ['bt', 'register read rip', 'kill']);
    expect(out, ctx).toMatch(/stop reason = signal SIGSEGV/);
    expect(out, ctx).toMatch(/frame #0: 0x[0-9a-f]+ crash`main at crash\.c:9/);
    expect(out, ctx).toMatch(/rip = 0x[0-9a-f]+ +crash`main \+ \d+/);
    const queries = server.stderr().match(/<- qfThreadInfo/g)?.length ?? 0;
    expect(queries, ctx).toBeLessThan(20);
  });
});
