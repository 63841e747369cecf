// Remote debug sessions (ReplayService.Debug) and the CLI's TCP bridge, against a real server on
// loopback with a stand-in debug worker (test/server/fixtures/fake_debug.mjs) that echoes bytes
// upper-cased, crashes, fails or hangs on demand. The gdb scenario against the real
// `rewind debug DIR --stdio` is in debug_gdb.test.ts.
import net from 'node:net';
import path from 'node:path';
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { openRemoteDebugBridge } from '../../remote/debug_bridge.js';
import { pushTrace } from '../../remote/upload.js';
import type { DebugRequest, DebugResponse } from '../../gen/rewind/replay/v1/replay.js';
import { descendants, makeTrace, REPO, startTestServer, until, type TestServer } from './helpers.js';

let ts: TestServer;
let agent: Clients;
let reader: string;

beforeAll(async () => {
  ts = await startTestServer({
    debugCommand: [process.execPath, path.join(REPO, 'test/server/fixtures/fake_debug.mjs')],
    maxSessions: 2,
    debugIdleTimeoutMs: 1500,
  });
  agent = ts.client(await ts.token('agent'));
  reader = await ts.token('reader');
});
afterAll(async () => {
  await ts.close();
});

async function upload(name: string): Promise<string> {
  const t = makeTrace({ argv: [name], exe: `/usr/bin/${name}` });
  return (await pushTrace(agent, t.dir)).traceId;
}

async function activeSessions(): Promise<number> {
  const admin = ts.client(ts.adminToken);
  const s = await call(admin, admin.catalog.getStats.bind(admin.catalog), {});
  return s.activeReplaySessions;
}

interface RawResult {
  sessionId?: string;
  data: Buffer;
  error?: ServiceError;
}

/** A Debug call straight over gRPC: sends `first` then `send`, half-closes, collects everything. */
function rawDebug(token: string | undefined, first: DebugRequest, send: Buffer[] = [], opts: { endInput?: boolean } = {}): Promise<RawResult> {
  const c = ts.client(token);
  const md = token ? c.metadata() : new Metadata();
  const stream = c.replay.debug(md);
  const out: RawResult = { data: Buffer.alloc(0) };
  const chunks: Buffer[] = [];
  return new Promise((resolve) => {
    stream.on('data', (m: DebugResponse) => {
      if (m.sessionId) out.sessionId = m.sessionId;
      if (m.data) chunks.push(m.data);
    });
    stream.on('error', (e: ServiceError) => {
      out.error = e;
      out.data = Buffer.concat(chunks);
      resolve(out);
    });
    stream.on('end', () => {
      out.data = Buffer.concat(chunks);
      resolve(out);
    });
    stream.write(first);
    for (const d of send) stream.write({ data: d });
    if (opts.endInput !== false) stream.end();
  });
}

/** Captures what this process writes to stderr while fn runs. */
async function captureStderr<T>(fn: () => Promise<T>): Promise<{ value: T; text: string }> {
  const orig = process.stderr.write.bind(process.stderr);
  let text = '';
  process.stderr.write = ((chunk: string | Uint8Array): boolean => {
    text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  }) as typeof process.stderr.write;
  try {
    const value = await fn();
    return { value, text };
  } finally {
    process.stderr.write = orig;
  }
}

/** Connects to the bridge, sends `data`, reads until `expectBytes` arrived or the socket closed. */
function tcpExchange(port: number, data: Buffer[], expectBytes: number, hangUp = true): Promise<{ got: Buffer; closedByPeer: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let n = 0;
    let done = false;
    const finish = (closedByPeer: boolean): void => {
      if (done) return;
      done = true;
      if (hangUp) s.end();
      resolve({ got: Buffer.concat(chunks), closedByPeer });
    };
    s.on('connect', () => {
      for (const d of data) s.write(d);
    });
    s.on('data', (d: Buffer) => {
      chunks.push(d);
      n += d.length;
      if (n >= expectBytes) finish(false);
    });
    s.on('close', () => finish(true));
    s.on('error', (e) => (done ? undefined : reject(e)));
  });
}

describe('Debug rpc', () => {
  it('pipes bytes both ways and ends OK when the client half-closes', async () => {
    const id = await upload('echo');
    const r = await rawDebug(reader, { start: { traceId: id } }, [Buffer.from('$qSupported#37'), Buffer.from('+$g#67')]);
    expect(r.error).toBeUndefined();
    expect(r.sessionId).toMatch(/^[0-9a-f-]{36}$/);
    expect(r.data.toString()).toBe('$QSUPPORTED#37+$G#67');
    await until('the session slot to be free', async () => (await activeSessions()) === 0);
  });

  it('no token, unknown trace, missing start, reader role suffices but agent does not', async () => {
    const id = await upload('echo');
    const none = await rawDebug(undefined, { start: { traceId: id } });
    expect(none.error?.code).toBe(status.UNAUTHENTICATED);
    expect(none.error?.details).toMatch(/no token given/);
    const wrong = await rawDebug('rwt_wrong', { start: { traceId: id } });
    expect(wrong.error?.code).toBe(status.UNAUTHENTICATED);
    const unknown = await rawDebug(reader, { start: { traceId: '00000000-0000-4000-8000-000000000000' } });
    expect(unknown.error?.code).toBe(status.NOT_FOUND);
    const nostart = await rawDebug(reader, { data: Buffer.from('$g#67') });
    expect(nostart.error?.code).toBe(status.INVALID_ARGUMENT);
    expect(nostart.error?.details).toMatch(/first Debug message must be start/);
    const agentRole = await rawDebug(await ts.token('agent'), { start: { traceId: id } });
    expect(agentRole.error?.code).toBe(status.PERMISSION_DENIED);
    const twice = ts.client(reader).replay.debug(ts.client(reader).metadata());
    const twiceErr = new Promise<ServiceError>((r) => twice.on('error', r));
    twice.on('data', () => {});
    twice.write({ start: { traceId: id } });
    twice.write({ start: { traceId: id } });
    const e = await twiceErr;
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.details).toBe('start may only be sent in the first Debug message');
    const ok = await rawDebug(reader, { start: { traceId: id } }, [Buffer.from('x')]);
    expect(ok.error).toBeUndefined();
    expect(ok.data.toString()).toBe('X');
  });

  it('a worker that fails or crashes ends its stream with its message; the server keeps serving', async () => {
    const fail = await upload('fail');
    const f = await rawDebug(reader, { start: { traceId: fail } });
    expect(f.error?.code).toBe(status.ABORTED);
    expect(f.error?.details).toBe('debug worker failed (exit status 70): cannot debug this trace: it is damaged');

    const echo = await upload('echo');
    const c = await rawDebug(reader, { start: { traceId: echo } }, [Buffer.from('abc crash!')], { endInput: false });
    expect(c.error?.code).toBe(status.ABORTED);
    expect(c.error?.details).toMatch(/^debug worker crashed \(killed by SIGSEGV\): about to crash; only this session was affected$/);
    expect(c.data.toString()).toBe('ABC CRASH!');

    const ok = await rawDebug(reader, { start: { traceId: echo } }, [Buffer.from('still here')]);
    expect(ok.data.toString()).toBe('STILL HERE');
    await until('the session slots to be free', async () => (await activeSessions()) === 0);
  });

  it('a worker killed from outside mid-session ends only its stream', async () => {
    const echo = await upload('echo');
    const victim = rawDebug(reader, { start: { traceId: echo } }, [Buffer.from('hello')], { endInput: false });
    await until('the worker to start', () => descendants('fake_debug.mjs').length === 1);
    const [pid] = descendants('fake_debug.mjs');
    const other = rawDebug(reader, { start: { traceId: echo } }, [Buffer.from('other')]);
    process.kill(pid!, 'SIGKILL');
    const r = await victim;
    expect(r.error?.code).toBe(status.ABORTED);
    expect(r.error?.details).toMatch(/^debug worker crashed \(killed by SIGKILL\)/);
    const o = await other;
    expect(o.error).toBeUndefined();
    expect(o.data.toString()).toBe('OTHER');
  });

  it('an idle session is closed after the idle timeout', async () => {
    const hang = await upload('hang');
    const t0 = Date.now();
    const r = await rawDebug(reader, { start: { traceId: hang } }, [Buffer.from('$g#67')], { endInput: false });
    expect(r.error?.code).toBe(status.DEADLINE_EXCEEDED);
    expect(r.error?.details).toBe('debug session idle for 2 s; closed');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(1400);
    expect(Date.now() - t0).toBeLessThan(6000);
  });

  it('bounds concurrent sessions (shared with replay) and kills the worker when the client goes away', async () => {
    const hang = await upload('hang');
    const c = ts.client(reader);
    const held = [c.replay.debug(c.metadata()), c.replay.debug(c.metadata())];
    for (const s of held) {
      s.on('error', () => {});
      s.write({ start: { traceId: hang } });
    }
    await until('two workers', () => descendants('fake_debug.mjs').length === 2);
    const third = await rawDebug(reader, { start: { traceId: hang } });
    expect(third.error?.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(third.error?.details).toMatch(/already runs 2 replay sessions/);
    for (const s of held) s.cancel();
    await until('the workers to be killed', () => descendants('fake_debug.mjs').length === 0);
    await until('the session slots to be free', async () => (await activeSessions()) === 0);
  });

  it('backpressure: 16 MiB from the worker and 8 MiB to it arrive intact', async () => {
    const echo = await upload('echo');
    const input = Buffer.alloc(8 << 20, 'q');
    const r = await rawDebug(reader, { start: { traceId: echo } }, [input, Buffer.from('blast!')]);
    expect(r.error).toBeUndefined();
    expect(r.data.length).toBe((8 << 20) + 6 + (16 << 20));
    expect(r.data.subarray(0, 8 << 20).equals(Buffer.alloc(8 << 20, 'Q'))).toBe(true);
    const big = r.data.subarray((8 << 20) + 6);
    expect(big[0]).toBe(65);
    expect(big[big.length - 1]).toBe(65 + (((16 << 20) - 1) % 26));
  });
});

describe('openRemoteDebugBridge', () => {
  it('unknown id and a bad token fail before listening, with clear messages', async () => {
    await expect(openRemoteDebugBridge('00000000-0000-4000-8000-000000000000', { server: ts.address, token: reader }, 0)).rejects.toThrow(
      /^not found: no trace 00000000-0000-4000-8000-000000000000/,
    );
    const id = await upload('echo');
    await expect(openRemoteDebugBridge(id, { server: ts.address, token: 'rwt_wrong' }, 0)).rejects.toThrow(
      /^not authenticated: invalid or revoked token$/,
    );
    await expect(openRemoteDebugBridge(id, { server: ts.address }, 0)).rejects.toThrow(/^not authenticated: no token given/);
    await expect(openRemoteDebugBridge(id, { server: ts.address, token: (await ts.token('agent')) }, 0)).rejects.toThrow(
      /^permission denied: GetTrace needs a reader or admin token; this is an agent token$/,
    );
  });

  it('a port in use is a clear error', async () => {
    const id = await upload('echo');
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      await expect(openRemoteDebugBridge(id, { server: ts.address, token: reader }, port)).rejects.toThrow(
        `cannot listen on 127.0.0.1:${port}: the port is in use`,
      );
    } finally {
      busy.close();
    }
  });

  it('bridges TCP connections one at a time, each with a session of its own', async () => {
    const id = await upload('echo');
    const b = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
    try {
      expect(b.port).toBeGreaterThan(0);
      const first = await tcpExchange(b.port, [Buffer.from('+$qSupported:multiprocess+#c6')], 29);
      expect(first.got.toString()).toBe('+$QSUPPORTED:MULTIPROCESS+#C6');
      await until('the first session to end', async () => (await activeSessions()) === 0);

      // A second connection while one is open is refused with a message; the first is unaffected.
      const s1 = net.connect(b.port, '127.0.0.1');
      await new Promise((r) => s1.once('connect', r));
      await until('the worker to start', () => descendants('fake_debug.mjs').length === 1);
      const { value: second, text } = await captureStderr(() => tcpExchange(b.port, [Buffer.from('x')], 1));
      expect(second.closedByPeer).toBe(true);
      expect(second.got.length).toBe(0);
      expect(text).toMatch(/^rewind: a debugger is already connected to this session; closing the connection from 127\.0\.0\.1:\d+\n$/);
      const echoed = new Promise<string>((r) => s1.once('data', (d: Buffer) => r(d.toString())));
      s1.write('$m0,4#fd');
      expect(await echoed).toBe('$M0,4#FD');
      s1.end();
      await until('the worker to exit', () => descendants('fake_debug.mjs').length === 0);

      // Big transfers both ways through the bridge (backpressure on the socket and the stream).
      const input = Buffer.alloc(4 << 20, 'z');
      const big = await tcpExchange(b.port, [input, Buffer.from('blast!')], (4 << 20) + 6 + (16 << 20));
      expect(big.got.length).toBe((4 << 20) + 6 + (16 << 20));
      expect(big.got.subarray(0, 4 << 20).equals(Buffer.alloc(4 << 20, 'Z'))).toBe(true);
    } finally {
      await b.close();
    }
    await b.closed;
    await expect(tcpExchange(b.port, [Buffer.from('x')], 1)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('a worker crash closes the connection with a message; the bridge keeps listening', async () => {
    const id = await upload('echo');
    const b = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
    try {
      const { value, text } = await captureStderr(() => tcpExchange(b.port, [Buffer.from('crash!')], 1 << 30, false));
      expect(value.closedByPeer).toBe(true);
      expect(text).toBe(
        'rewind: remote debug session failed: debug worker crashed (killed by SIGSEGV): about to crash; only this session was affected\n',
      );
      const again = await tcpExchange(b.port, [Buffer.from('ok')], 2);
      expect(again.got.toString()).toBe('OK');
    } finally {
      await b.close();
    }
  });

  it('a trace deleted after the bridge opened: the message is printed and the bridge closes', async () => {
    const id = await upload('echo');
    const b = await openRemoteDebugBridge(id, { server: ts.address, token: reader }, 0);
    const admin = ts.client(ts.adminToken);
    await call(admin, admin.catalog.deleteTrace.bind(admin.catalog), { id });
    const { value, text } = await captureStderr(async () => {
      const r = await tcpExchange(b.port, [Buffer.from('+')], 1 << 30, false);
      await b.closed;
      return r;
    });
    expect(value.closedByPeer).toBe(true);
    expect(text).toBe(`rewind: not found: no trace ${id}\n`);
  });
});
