// Issue 5, acceptance 4: bad or hostile input to a real `rewind debug DIR --no-launch` session:
// garbage, truncated and over-long packets, bad checksums, out-of-range reads, breakpoints in
// unmapped memory, writes, and clients that vanish mid-command. Every one gets a clear reply;
// the session survives, and ends cleanly with no process left behind.
import { spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cpSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  baseEnv,
  CLI,
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
import { checksum, MAX_PACKET, unescapeBinary } from '../../debugserver/packet.js';
import { alive, expectNoStray, gdbBatch, RawClient, startServer, type DebugServer } from './gdb_harness.js';

let traceDir: string;
let server: DebugServer | undefined;

beforeAll(async () => {
  requireCli();
  const rec = await record(compile('stdin_cat'), [], { input: 'one\ntwo\nthree\n' });
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
});

afterEach(() => {
  if (server && alive(server.child.pid!)) server.kill();
  server = undefined;
});

afterAll(cleanupTemps);

/** Waits until the server has noticed `n` disconnections (it logs each). */
async function untilDisconnected(n: number): Promise<void> {
  await server!.waitFor(new RegExp(`(the debugger disconnected[^]*){${n}}`), 'stderr', 20_000);
}

/** A connected client in no-ack mode, after gdb's first packets. */
async function connect(port: number): Promise<{ client: RawClient; pid: number; tid: number }> {
  const client = await RawClient.connect(port);
  const supported = await client.ask('qSupported:multiprocess+;swbreak+;hwbreak+;vContSupported+;xmlRegisters=i386');
  for (const f of ['PacketSize=4000', 'QStartNoAckMode+', 'ReverseStep+', 'ReverseContinue+', 'qXfer:features:read+', 'swbreak+', 'hwbreak+']) {
    expect(supported.split(';')).toContain(f);
  }
  expect(await client.ask('QStartNoAckMode')).toBe('OK');
  const stop = await client.ask('?');
  const m = /^T05.*thread:p([0-9a-f]+)\.([0-9a-f]+);/.exec(stop);
  expect(m, stop).not.toBeNull();
  return { client, pid: parseInt(m![1]!, 16), tid: parseInt(m![2]!, 16) };
}

describe('hostile input', () => {
  it('answers damaged, unknown and forbidden packets and keeps serving', async () => {
    server = await startServer(traceDir);
    const client = await RawClient.connect(server.port);

    // Acknowledged mode: a bad checksum asks for a retransmit.
    client.raw('$qC#00');
    expect(await client.next()).toBe('-');
    // Garbage between packets is ignored; the next good packet is answered.
    client.raw('this is not a packet\x00\xff\x7f}}##');
    expect(await client.ask('qC')).toMatch(/^QCp[0-9a-f]+\.[0-9a-f]+$/);
    // A packet cut short by the next one is dropped; the next one is answered.
    client.raw('$m4000');
    expect(await client.ask('qC')).toMatch(/^QC/);
    expect(await client.ask('QStartNoAckMode')).toBe('OK');

    // No-ack mode: a bad checksum gets an error reply instead.
    client.raw('$qC#00');
    expect(await client.next()).toMatch(/^E\.bad checksum/);
    // Over-long: refused without being buffered whole.
    const long = 'm'.repeat(MAX_PACKET * 8);
    client.raw(`$${long}#${checksum(Buffer.from(long)).toString(16).padStart(2, '0')}`);
    expect(await client.next()).toMatch(/^E\.packet longer than/);

    // Unsupported: empty replies.
    for (const p of ['qFooBar', 'vRun;2f62696e2f7368', 'QNonStop:1', 'vAttach;1', 'x', 'jThreadsInfo', 'qXfer:libraries-svr4:read::0,1000']) {
      expect(await client.ask(p), p).toBe('');
    }
    // History cannot change.
    for (const p of ['G00', 'P0=0000000000000000', 'M1000,1:00', 'X1000,1:a']) {
      expect(await client.ask(p), p).toMatch(/^E\.rewind replays a recording/);
    }
    // Malformed and out-of-range reads.
    expect(await client.ask('mzz,4')).toMatch(/^E/);
    expect(await client.ask('m0,8')).toMatch(/^E/);
    expect(await client.ask('mffffffffffffff00,100')).toMatch(/^E/);
    expect(await client.ask('p999')).toMatch(/^E/);
    expect(await client.ask('Hgp1.1')).toMatch(/^E/);
    expect(await client.ask('T99999')).toMatch(/^E/);
    expect(await client.ask('qXfer:features:read:nonsense.xml:0,100')).toMatch(/^E/);
    expect(await client.ask('vFile:open:2f6574632f706173737764,0,0')).toBe('F-1,2'); // /etc/passwd: not in the trace
    expect(await client.ask('vFile:pread:77,10,0')).toBe('F-1,9');
    // A breakpoint where nothing is mapped, and watchpoints the hardware cannot hold.
    expect(await client.ask('Z0,0,1')).toMatch(/^E\.cannot set a breakpoint at 0x0: nothing is mapped there/);
    expect(await client.ask('Z0,dead0000,1')).toMatch(/^E\..*nothing is mapped/);
    expect(await client.ask('Z2,1000,40')).toMatch(/^E/);
    // Monitor commands: known and unknown.
    const when = await client.ask(`qRcmd,${Buffer.from('when').toString('hex')}`);
    expect(Buffer.from(when.slice(1), 'hex').toString()).toMatch(/^event \d+ of \d+\n$/);
    expect(await client.next()).toBe('OK');
    const bad = await client.ask(`qRcmd,${Buffer.from('frobnicate').toString('hex')}`);
    expect(Buffer.from(bad.slice(1), 'hex').toString()).toMatch(/unknown monitor command "frobnicate"/);
    expect(await client.next()).toBe('OK');

    // After all that, the session still works: registers, memory at the stack pointer.
    const regs = await client.ask('g');
    expect(regs).toMatch(/^[0-9a-f]+$/);
    const rsp = Buffer.from(regs.slice(7 * 16, 8 * 16), 'hex').readBigUInt64LE();
    expect(await client.ask(`m${rsp.toString(16)},8`)).toMatch(/^[0-9a-f]{16}$/);
    expect(server.stderr()).not.toMatch(/internal error|\n\s+at /);
    const children = server.descendants();
    expect(await client.ask('vKill;1')).toBe('OK');
    expect(await server.exited).toBe(0);
    expectNoStray(children, server.stderr());
  });

  it('survives clients that disconnect mid-command, and serves the next one', async () => {
    server = await startServer(traceDir);
    // Gone in the middle of a packet.
    const a = await RawClient.connect(server.port);
    a.raw('$qSupp');
    a.close();
    await untilDisconnected(1);
    // Gone right after asking to run on, with a breakpoint left set at the program's entry
    // (AT_ENTRY: reached once, after the dynamic loader).
    const b = await connect(server.port);
    const auxv = unescapeBinary(Buffer.from((await b.client.ask('qXfer:auxv:read::0,1000')).slice(1), 'latin1'))!;
    let entry = 0n;
    for (let i = 0; i + 16 <= auxv.length; i += 16) if (auxv.readBigUInt64LE(i) === 9n) entry = auxv.readBigUInt64LE(i + 8);
    expect(entry).not.toBe(0n);
    expect(await b.client.ask(`Z0,${entry.toString(16)},1`)).toBe('OK');
    b.client.send('vCont;c');
    b.client.close();
    await untilDisconnected(2);
    // The next client is served from where the session is.
    const c = await connect(server.port);
    expect(c.pid).toBe(b.pid);
    expect(await c.client.ask('qfThreadInfo')).toMatch(/^mp[0-9a-f]+\.[0-9a-f]+/);
    // To the end and back to the beginning: the breakpoint at the entry went with its client.
    expect(await c.client.ask('vCont;c')).toMatch(/^T05replaylog:end;thread:/);
    expect(await c.client.ask('bc')).toMatch(/^T05replaylog:begin;thread:/);
    expect(alive(server.child.pid!)).toBe(true);
    const children = server.descendants();
    expect(children.length).toBeGreaterThan(0);
    c.client.send('k');
    expect(await server.exited).toBe(0);
    expectNoStray(children, server.stderr());
  });

  it('refuses a second debugger while one is connected', async () => {
    server = await startServer(traceDir);
    const first = await connect(server.port);
    const second = await RawClient.connect(server.port);
    await expect(second.next(5000)).rejects.toThrow(/closed/);
    expect(await first.client.ask('qC')).toMatch(/^QC/);
    first.client.send('D;1');
    expect(await first.client.next()).toBe('OK');
    expect(await server.exited).toBe(0);
  });

  it('ends the session when killed, with no process left behind', async () => {
    server = await startServer(traceDir);
    const { client } = await connect(server.port);
    const children = server.descendants();
    expect(children.length).toBeGreaterThan(0);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(0);
    client.close();
    expectNoStray(children, server.stderr());
  });
});

describe('engine errors', () => {
  it('a divergence is an error reply and a console line; the session goes on', async () => {
    // A copy of the trace with a syscall late in the run renumbered: replay diverges there.
    const bad = join(tempDir('rewind-debug-diverge-'), 'trace');
    cpSync(traceDir, bad, { recursive: true });
    const stream = parseEventStream(readFileSync(eventsBlob(bad).path));
    const syscalls = stream.records.filter((r) => r.type === EVENT_TYPES.syscall);
    const victim = syscalls[syscalls.length - 2]!;
    setSyscallNr(victim, syscallOf(victim).nr === 39 ? 110 : 39);
    replaceEventsBlob(bad, encodeEventStream(stream));

    server = await startServer(bad);
    const children = server.descendants();
    const gdb = await gdbBatch(server.port, ['continue', 'monitor when', 'reverse-stepi', 'info registers rip']);
    const ctx = `${gdb.transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
    expect(gdb.sections[0], ctx).toMatch(new RegExp(`rewind: replay diverged at event ${victim.index}\\b.*\\(EDIVERGED\\)`));
    expect(gdb.sections[0], ctx).toMatch(/Remote failure reply: E\.replay diverged/);
    expect(gdb.sections[1], ctx).toMatch(/^event \d+ of \d+$/m);
    expect(gdb.sections[3], ctx).toMatch(/^rip +0x[0-9a-f]+/m);
    expect(gdb.transcript, ctx).not.toMatch(/Remote connection closed|internal-error/);
    expect(await server.exited, ctx).toBe(0);
    expectNoStray(children, ctx);
    expect(server.stderr(), ctx).toMatch(/replay diverged/);
  });
});

describe('--stdio', () => {
  it('speaks the protocol on stdin/stdout and nothing else', async () => {
    const child = spawn(process.execPath, [CLI, 'debug', traceDir, '--stdio'], { env: baseEnv(), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString('latin1')));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const send = (p: string): void => {
      child.stdin.write(`$${p}#${checksum(Buffer.from(p)).toString(16).padStart(2, '0')}`);
    };
    send('qSupported');
    send('QStartNoAckMode');
    send('?');
    send('k');
    expect(await exited).toBe(0);
    // k: the process's end for lldb, which waits for it (gdb expects nothing and has hung up).
    expect(out).toMatch(/^\+\$PacketSize=4000;[^#]*#[0-9a-f]{2}\+\$OK#9a\$T05thread:p[0-9a-f]+\.[0-9a-f]+;#[0-9a-f]{2}\$X09;process:[0-9a-f]+#[0-9a-f]{2}$/);
  });

  it('serves gdb through `target extended-remote | rewind debug DIR --stdio`', async () => {
    const gdb = await gdbBatch(`| ${process.execPath} ${CLI} debug ${traceDir} --stdio`, ['break main', 'continue', 'info threads', 'monitor when']);
    const ctx = gdb.transcript;
    expect(gdb.timedOut, ctx).toBe(false);
    expect(gdb.sections[1], ctx).toMatch(/Breakpoint 1, main \(/);
    expect(gdb.sections[2], ctx).toMatch(/\* 1 +Thread \d+\.\d+ "stdin_cat"/);
    expect(gdb.sections[3], ctx).toMatch(/^event \d+ of \d+$/m);
  });
});
