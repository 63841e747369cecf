// Issue 5, acceptance 2: the same gdb batch session against a trace stored on a real server
// (uploaded over loopback, debugged in a server worker through the CLI's TCP bridge) prints the
// same as against the local trace. Real gdb, real engine, real server with a real SQLite file.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRemoteDebugBridge } from '../../remote/debug_bridge.js';
import { pushTrace } from '../../remote/upload.js';
import { gdbBatch, gdbInterrupted } from '../debug/gdb_harness.js';
import { cleanEnv, rewind } from './cli.js';
import { descendants, REPO, startTestServer, tmpDir, until, type TestServer } from './helpers.js';

const CLI = path.join(REPO, 'dist/cli/main.js');

function why(): string | undefined {
  if (spawnSync('gdb', ['--version']).status !== 0) return 'gdb is not installed';
  if (spawnSync('gcc', ['--version']).status !== 0) return 'gcc is not installed';
  if (!fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'))) return 'the native engine is not built';
  return undefined;
}
const skip = why();

const PROGRAM = `#include <stdio.h>
#include <stdlib.h>

static int square(int x) { return x * x; }

int main(void) {
  int total = 0;
  char *env = getenv("HOME");
  total = square(7);
  total += 3;
  printf("total %d %s\\n", total, env ? "home" : "none");
  total = square(total);
  return total % 7;
}
`;

/** About 3 s of computation in 10 ms rounds, each ending in a write: a long run to interrupt. */
const TICKER = `#include <stdint.h>
#include <unistd.h>

int main(void) {
  uint64_t x = 1;
  for (int r = 0; r < 300; r++) {
    for (int i = 0; i < 4000000; i++) x = x * 6364136223846793005ULL + 1;
    char c = (char)('a' + x % 26);
    if (write(1, &c, 1) != 1) return 1;
  }
  return 0;
}
`;

const GDB_SCRIPT = ['break main', 'continue', 'next', 'next', 'next', 'print total', 'reverse-next', 'print total', 'next', 'next', 'print total', 'info line'];

interface Run {
  out: string;
  status: number | null;
}

/** gdb in batch mode against `target` (a port, or `| command` for a pipe), with the support's driver. */
async function gdb(target: string, script = GDB_SCRIPT, timeoutMs = 90_000): Promise<Run> {
  const r = await gdbBatch(target, script, { timeoutMs });
  return { out: r.stdout.toString(), status: r.status };
}

/** What may differ between two runs: the port, and the local path of the stdio worker. */
function normalise(s: string): string {
  return s.replace(/127\.0\.0\.1:\d+/g, '127.0.0.1:PORT').replace(/\| \S+ \S+ debug \S+ --stdio/g, 'TARGET');
}

describe.skipIf(skip !== undefined)(`gdb through a remote debug session${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let ts: TestServer;
  let traceDir: string;
  let traceId: string;
  let reader: string;

  beforeAll(async () => {
    const work = tmpDir('rewind-gdb-');
    const exe = path.join(work, 'squares');
    fs.writeFileSync(path.join(work, 'squares.c'), PROGRAM);
    const cc = spawnSync('gcc', ['-g', '-O0', '-o', exe, path.join(work, 'squares.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
    traceDir = path.join(work, 'trace');
    const rec = spawnSync(process.execPath, [CLI, 'record', '-o', traceDir, '--', exe], { encoding: 'utf8', timeout: 60_000 });
    expect(rec.stdout).toBe('total 52 home\n');
    expect(rec.status).toBe(2704 % 7);
    ts = await startTestServer({ maxSessions: 2 });
    const agent = ts.client(await ts.token('agent'));
    traceId = (await pushTrace(agent, traceDir)).traceId;
    reader = await ts.token('reader');
  });
  afterAll(async () => {
    await ts?.close();
  });

  it('prints the same as against the local trace: break main, next, print, reverse-next, print', async () => {
    const local = await gdb(`| ${process.execPath} ${CLI} debug ${traceDir} --stdio`);
    expect(local.status, local.out).toBe(0);
    expect(local.out).toMatch(/Breakpoint 1, main \(\) at .*squares\.c:7/);
    expect(local.out).toContain('$1 = 49');
    expect(local.out).toMatch(/\$2 = \d+/);
    expect(local.out).toMatch(/\$3 = \d+/);

    const bridge = await openRemoteDebugBridge(traceId, { server: ts.address, token: reader }, 0);
    let remote: Run;
    try {
      remote = await gdb(`127.0.0.1:${bridge.port}`);
    } finally {
      await bridge.close();
    }
    expect(remote.status, remote.out).toBe(0);
    expect(normalise(remote.out)).toBe(normalise(local.out));
  });

  it('rewind debug ID --no-launch: prints the port, gdb connects, Ctrl-C ends it; an unknown id is a clear error', async () => {
    const env = { ...cleanEnv(), REWIND_SERVER: ts.address, REWIND_TOKEN: reader };
    const child = spawn(process.execPath, [CLI, 'debug', traceId, '--no-launch', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      await until('the port', () => out.includes('\n'));
      const info = JSON.parse(out.split('\n')[0]!) as { port: number; trace: string };
      expect(info.trace).toBe(traceId);
      const r = await gdb(`127.0.0.1:${info.port}`, ['break main', 'continue', 'next', 'next', 'next', 'print total']);
      expect(r.status, r.out).toBe(0);
      expect(r.out).toContain('$1 = 49');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(err).toBe('');
    } finally {
      child.kill('SIGKILL');
    }

    const unknown = await rewind(['debug', '00000000-0000-4000-8000-000000000000', '--no-launch'], { REWIND_SERVER: ts.address, REWIND_TOKEN: reader });
    expect(unknown.stderr).toBe('rewind: not found: no trace 00000000-0000-4000-8000-000000000000\n');
    expect(unknown.status).toBe(66);
    const badToken = await rewind(['debug', traceId, '--no-launch'], { REWIND_SERVER: ts.address, REWIND_TOKEN: 'rwt_nope' });
    expect(badToken.stderr).toBe('rewind: not authenticated: invalid or revoked token\n');
    expect(badToken.status).toBe(77);
  });

  it('Ctrl-C in gdb reaches the session on the server and stops a continue there', async () => {
    const work = tmpDir('rewind-gdb-ticker-');
    const exe = path.join(work, 'ticker');
    fs.writeFileSync(path.join(work, 'ticker.c'), TICKER);
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(work, 'ticker.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc failed: ${cc.stderr}`);
    const trace = path.join(work, 'trace');
    const rec = spawnSync(process.execPath, [CLI, 'record', '-o', trace, '--', exe], { encoding: 'utf8', timeout: 60_000 });
    expect(rec.status, rec.stderr).toBe(0);
    const id = (await pushTrace(ts.client(await ts.token('agent')), trace)).traceId;
    const bridge = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
    try {
      const gdb = await gdbInterrupted(bridge.port, ['continue', 'monitor when']);
      expect(gdb.status, gdb.transcript).toBe(0);
      expect(gdb.sections[0], gdb.transcript).toMatch(/Program received signal SIGINT, Interrupt\./);
      expect(gdb.stopMs, gdb.transcript).toBeLessThan(2000);
      const when = /event (\d+) of (\d+)/.exec(gdb.sections[1]!);
      expect(when, gdb.transcript).not.toBeNull();
      expect(Number(when![1]), gdb.transcript).toBeLessThan(Number(when![2]) / 2);
    } finally {
      await bridge.close();
    }
  }, 120_000);

  it('a worker killed mid-session ends that stream with a clear error; the server keeps serving', async () => {
    const bridge = await openRemoteDebugBridge(traceId, { server: ts.address, token: reader }, 0);
    const orig = process.stderr.write.bind(process.stderr);
    let printed = '';
    process.stderr.write = ((chunk: string | Uint8Array): boolean => {
      printed += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
      return true;
    }) as typeof process.stderr.write;
    try {
      // A raw remote-protocol client: ask for the features, then kill the worker under it.
      const sock = net.connect(bridge.port, '127.0.0.1');
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const closed = new Promise<void>((r) => sock.on('close', () => r()));
      sock.on('error', () => {});
      const body = 'qSupported:multiprocess+;swbreak+;hwbreak+';
      const sum = [...Buffer.from(body)].reduce((a, b) => (a + b) & 0xff, 0);
      sock.write(`$${body}#${sum.toString(16).padStart(2, '0')}`);
      await until('the qSupported reply', () => /\$[^#]*ReverseContinue\+[^#]*#/.test(got));
      const workers = descendants('debug', '--stdio');
      expect(workers).toHaveLength(1);
      process.kill(workers[0]!, 'SIGKILL');
      await closed;
      await until('the message', () => printed.includes('\n'));
      expect(printed).toMatch(/^rewind: remote debug session failed: debug worker crashed \(killed by SIGKILL\)[^\n]*; only this session was affected\n$/);

      // The same bridge and server serve the next session.
      const again = await gdb(`127.0.0.1:${bridge.port}`, ['break main', 'continue', 'next', 'next', 'next', 'print total']);
      expect(again.status, again.out).toBe(0);
      expect(again.out).toContain('$1 = 49');
    } finally {
      process.stderr.write = orig;
      await bridge.close();
    }
    await until('no debug workers left', () => descendants('debug', '--stdio').length === 0);
  });
});
