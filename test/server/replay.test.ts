import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { remoteReplay } from '../../remote/replay.js';
import { pushTrace } from '../../remote/upload.js';
import Database from 'better-sqlite3';
import { makeTrace, REPO, startTestServer, until, type TestServer } from './helpers.js';

let ts: TestServer;
let agent: Clients;
let reader: string;

beforeAll(async () => {
  ts = await startTestServer({
    replayCommand: [process.execPath, path.join(REPO, 'test/server/fixtures/fake_replay.mjs')],
    maxSessions: 2,
    idleTimeoutMs: 1500,
  });
  agent = ts.client(await ts.token('agent'));
  reader = await ts.token('reader');
});
afterAll(async () => {
  await ts.close();
});

class Sink extends Writable {
  chunks: Buffer[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    cb();
  }
  get text(): string {
    return Buffer.concat(this.chunks).toString();
  }
}

async function upload(argv: string[], status = 0): Promise<string> {
  const t = makeTrace({ argv, exe: `/usr/bin/${argv[0]}`, status });
  return (await pushTrace(agent, t.dir)).traceId;
}

function replay(id: string, token = reader): Promise<{ status: number | Error; out: Sink; err: Sink }> {
  const out = new Sink();
  const err = new Sink();
  return remoteReplay(id, { server: ts.address, token, stdout: out, stderr: err }).then(
    (status) => ({ status, out, err }),
    (e: Error) => ({ status: e, out, err }),
  );
}

describe('remote replay', () => {
  it('streams stdout and stderr and returns the recorded status', async () => {
    const id = await upload(['prog', 'a', 'b'], 3);
    const r = await replay(id);
    expect(r.status).toBe(3);
    expect(r.out.text).toBe(`out: prog a b\n${'a'.repeat(300_000)}`);
    expect(r.err.text).toBe(`err: ${id}\n`);
  });

  it('unknown id, bad id, and no permission are clear errors', async () => {
    const r = await replay('00000000-0000-4000-8000-000000000000');
    expect((r.status as Error).message).toMatch(/^not found: no trace/);
    const b = await replay('xyz');
    expect((b.status as Error).message).toMatch(/^invalid argument: bad trace id/);
    const id = await upload(['prog']);
    const a = await replay(id, (await ts.token('agent')));
    expect((a.status as Error).message).toMatch(/^permission denied: RunReplay needs a reader or admin token/);
  });

  it('a crashing worker ends only its session; the server keeps serving', async () => {
    const crash = await upload(['crash']);
    const r = await replay(crash);
    expect((r.status as Error).message).toMatch(/replay worker crashed \(killed by SIGSEGV\)/);
    expect(r.out.text).toBe('about to crash\n');
    const ok = await upload(['prog'], 0);
    expect((await replay(ok)).status).toBe(0);
  });

  it('a hung worker is killed after the idle timeout', async () => {
    const hang = await upload(['hang']);
    const t0 = Date.now();
    const r = await replay(hang);
    expect((r.status as Error).message).toMatch(/^remote replay failed: replay session idle for \d+ s; closed/);
    expect(Date.now() - t0).toBeLessThan(6000);
    const stats = await call(agent, agent.catalog.getStats.bind(agent.catalog), {}).catch(() => undefined);
    expect(stats).toBeUndefined(); // agents cannot read stats; just make sure the server answers
    const admin = ts.client(ts.adminToken);
    const s = await call(admin, admin.catalog.getStats.bind(admin.catalog), {});
    expect(s.activeReplaySessions).toBe(0);
  });

  it('a worker computing silently is not idle', async () => {
    const busy = await upload(['busy']);
    const r = await replay(busy);
    expect(r.status).toBe(0);
    expect(r.out.text).toBe('busy done\n');
  });

  it('a replay cancelled before its worker started ends as cancelled, not run to its end (holding its slot)', async () => {
    const hang = await upload(['hang']);
    const c = ts.client(reader);
    const admin = ts.client(ts.adminToken);
    const call0 = c.replay.runReplay({ traceId: hang }, c.metadata());
    call0.on('error', () => {});
    call0.on('data', () => {});
    // As soon as the server holds the session (it is still preparing the trace): the client goes.
    while ((await call(admin, admin.catalog.getStats.bind(admin.catalog), {})).activeReplaySessions === 0);
    call0.cancel();
    await until('the session ended', async () => (await call(admin, admin.catalog.getStats.bind(admin.catalog), {})).activeReplaySessions === 0);
    const db = new Database(path.join(ts.dataDir, 'catalog.sqlite'), { readonly: true });
    const row = db.prepare('SELECT error FROM sessions WHERE trace_id = ?').get(hang) as { error: string };
    db.close();
    expect(row.error).toBe('replay cancelled by the client');
  });

  it('bounds the number of concurrent sessions', async () => {
    const slow = await upload(['slow'], 0);
    const results = await Promise.all([replay(slow), replay(slow), replay(slow)]);
    const busy = results.filter((r) => r.status instanceof Error);
    expect(busy).toHaveLength(1);
    expect((busy[0]!.status as Error).message).toMatch(/^server busy: the server already runs 2 replay sessions/);
    expect(results.filter((r) => r.status === 0)).toHaveLength(2);
  });
});
