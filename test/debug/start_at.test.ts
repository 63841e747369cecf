// Issue 13, problem 6: where a session starts and what it says as it opens. `--at-end` starts at
// the end (at the crash, for a recording that crashed), `--event N` at event N of rewind dump's
// numbering; a damaged trace is refused as it opens, naming the damaged file; without a gdb in
// the terminal, the program's output goes to the debugger's console.
import { chmodSync, cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, expectCleanFailure, expectRecorded, record, requireCli, rewind, tempDir } from '../engine/harness.js';
import { gdbBatch, lineContaining, sourceLines, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

afterAll(cleanupTemps);

let hello: string;
let crash: string;

beforeAll(async () => {
  requireCli();
  const h = await record(compile('hello'));
  expectRecorded(h, 3);
  hello = h.traceDir;
  const c = await record(compile('crash', { extra: ['-O0'] }));
  expectRecorded(c, 139);
  crash = c.traceDir;
});

async function batch(traceDir: string, extra: string[], commands: string[]): Promise<{ sections: string[]; ctx: string }> {
  const server = await startServer(traceDir, extra);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, commands);
  return { sections: gdb.sections, ctx: await expectSessionEnded(server, children, gdb.transcript) };
}

describe('--at-end', () => {
  it('starts at the crash of a recording that crashed, and goes back from there', async () => {
    const line = lineContaining('crash.c', '*(volatile int *)null_base = 1');
    const { sections: s, ctx } = await batch(crash, ['--at-end'], ['bt', 'info registers rip', 'continue', 'reverse-stepi', 'info registers rip', 'continue', 'continue']);
    expect(s[0], ctx).toMatch(new RegExp(`#0 +main \\(\\) at .*crash\\.c:${line}`));
    const at = /rip +(0x[0-9a-f]+)/.exec(s[1]!)?.[1];
    // The end of history is the crash: continue stays there.
    expect(s[2], ctx).toMatch(/No more reverse-execution history\./);
    const back = /rip +(0x[0-9a-f]+)/.exec(s[4]!)?.[1];
    expect(back, ctx).toBeDefined();
    expect(BigInt(back!) < BigInt(at!), ctx).toBe(true);
    // Forwards again: the signal, at the crash, then the end.
    expect(s[5], ctx).toMatch(/Program received signal SIGSEGV/);
    expect(sourceLines(s[5]!).pop(), ctx).toBe(line);
    expect(s[6], ctx).toMatch(/No more reverse-execution history\./);
  });

  it("starts at a program's last instruction", async () => {
    const { sections: s, ctx } = await batch(hello, ['--at-end'], ['bt 1', 'continue', 'reverse-finish', 'monitor when']);
    expect(s[0], ctx).toMatch(/#0 +.*_exit/);
    expect(s[1], ctx).toMatch(/No more reverse-execution history\./);
    // Back out of _exit into its caller.
    expect(s[2], ctx).toMatch(/in __run_exit_handlers/);
  });
});

describe('--event N', () => {
  it('starts at event N as rewind dump numbers events', async () => {
    const dump = await rewind(['dump', hello, '--json']);
    expect(dump.status, dump.stderr.toString()).toBe(0);
    const events = JSON.parse(dump.stdout.toString()) as { index: number; kind: string; text: string }[];
    const write = events.find((e) => e.text.startsWith('write(0x1,'));
    expect(write, dump.stdout.toString()).toBeDefined();
    // Event N's moment is just after event N-1: the write has returned its 18 bytes.
    const n = write!.index + 1;
    const { sections: s, ctx } = await batch(hello, ['--event', String(n)], ['monitor when', 'info registers rax', 'bt 1', 'continue']);
    expect(s[0], ctx).toMatch(new RegExp(`event ${n} of ${events.length}`));
    expect(s[1], ctx).toMatch(/rax +0x12 +18/);
    expect(s[2], ctx).toMatch(/write/);
    expect(s[3], ctx).toMatch(/No more reverse-execution history\./);
  });

  it('refuses an event the recording does not have, and two places at once', async () => {
    expectCleanFailure(await rewind(['debug', hello, '--no-launch', '--event', '100000']), /--event 100000: the recording has events 0 to \d+/);
    expectCleanFailure(await rewind(['debug', hello, '--no-launch', '--event', 'x']), /not an event number/);
    expectCleanFailure(await rewind(['debug', hello, '--no-launch', '--at-end', '--event', '1']), /one place to start at/);
  });
});

describe('opening a damaged trace', () => {
  function damaged(role: string, change: (b: Buffer) => Buffer): { dir: string; sha: string } {
    const dir = join(tempDir('rewind-damaged-'), 'trace');
    cpSync(hello, dir, { recursive: true });
    const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { blobs: { sha256: string; role: string; path?: string }[] };
    const blob = manifest.blobs.find((b) => b.role === role && (role !== 'file' || b.path?.includes('libc.so')))!;
    const file = join(dir, 'blobs', blob.sha256);
    chmodSync(file, 0o644);
    writeFileSync(file, change(readFileSync(file)));
    return { dir, sha: blob.sha256 };
  }

  it('names the damaged file and does not start', async () => {
    const lib = damaged('file', (b) => b.subarray(0, b.length - 10));
    expectCleanFailure(await rewind(['debug', lib.dir, '--no-launch']), new RegExp(`is damaged: blob ${lib.sha} \\(/\\S*libc\\.so\\.6\\) is \\d+ bytes`));
    const events = damaged('events', (b) => {
      const c = Buffer.from(b);
      c[c.length >> 1]! ^= 0xff;
      return c;
    });
    const r = await rewind(['debug', events.dir, '--no-launch']);
    expectCleanFailure(r, new RegExp(`is damaged: blob ${events.sha} \\(events\\)`));
    expect(r.status).toBe(125);
  });
});

it("shows the program's output on the debugger's console when gdb is not in rewind's terminal", async () => {
  const server = await startServer(hello);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, ['continue']);
  const ctx = await expectSessionEnded(server, children, gdb.transcript);
  expect(gdb.sections[0], ctx).toMatch(/hello from rewind\n[^]*No more reverse-execution history\./);
  expect(server.stderr(), ctx).not.toContain('hello from rewind');
});
