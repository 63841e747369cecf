// Issue 11's findings, each reproduced against a real server on loopback with real tokens, and
// the defence that holds it (docs/security.md, "How each defence is tested").
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { encodeChunk } from '../../remote/upload_wire.js';
import { ListTracesRequest, ListTracesResponse } from '../../gen/rewind/catalog/v1/catalog.js';
import { makeTrace, manifestMessageOf, REPO, startTestServer, tmpDir, until, type TestServer } from './helpers.js';
import { manifestFromMessage } from '../../trace/manifest_message.js';
import { Manifest as ManifestMessage } from '../../gen/rewind/trace/v1/manifest.js';
import { rewind, type CliResult } from './cli.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));

let ts: TestServer;
let agent: Clients;
let reader: Clients;

beforeAll(async () => {
  ts = await startTestServer();
  agent = ts.client(await ts.token('agent'));
  reader = ts.client(await ts.token('reader'));
});
afterAll(async () => {
  await ts.close();
});

async function failure(p: Promise<unknown>, what = 'the call'): Promise<{ code: number; details: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code: number; details: string },
  );
  expect(err, `${what} should have failed`).toBeDefined();
  return err!;
}

async function expectCode(p: Promise<unknown>, code: status, text?: RegExp, what?: string): Promise<void> {
  const err = await failure(p, what);
  expect(status[err.code], err.details).toBe(status[code]);
  if (text) expect(err.details).toMatch(text);
}

const prepare = (c: Clients, manifest: ManifestMessage): Promise<unknown> => call(c, c.upload.prepareUpload.bind(c.upload), { manifest });
const list = (c: Clients, req: Partial<ListTracesRequest> = {}) =>
  call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({ limit: 10_000, ...req }));

describe('finding 2: one upload cannot break the catalogue', () => {
  it('range-checks every manifest field at upload', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      // 2147483648 itself no longer fits the message (exit.status is an int32); its neighbours do.
      [{ exit: { status: 2147483647, code: null, signal: null } }, /exit\.status/],
      [{ exit: { status: -2147483648, code: null, signal: null } }, /exit\.status/],
      [{ exit: { status: 3, code: -1, signal: null } }, /exit\.code/],
      [{ exit: { status: 300, code: null, signal: null } }, /exit\.status/],
      [{ exit: { status: 139, code: null, signal: 'SIGNOPE' } }, /exit\.signal/],
      [{ startTime: '+275760-09-13T00:00:00.000Z' }, /startTime/],
      [{ durationMs: 1e300 }, /durationMs/],
      [{ counts: { events: 2 ** 60, tasks: 1, syscalls: 1, bytes: 1 } }, /counts\.events/],
      [{ argv: Array.from({ length: 300_000 }, () => 'x') }, /argv/],
      [{ exe: 'x'.repeat(70_000) }, /exe/],
      [{ host: { hostname: 'h'.repeat(5000) } }, /host\.hostname/],
      [{ env: ['A=' + 'v'.repeat(7 << 20)] }, /env/],
      [{ processes: [{ pid: 5_000_000, parent: 0, execs: [], threads: [] }] }, /processes\[0\]\.pid/],
      [{ blobs: [{ sha256: 'a'.repeat(64), size: 2 ** 53 - 1, role: 'events' }] }, /blobs\[0\]\.size/],
      [{ blobs: [{ sha256: 'a'.repeat(64), size: 1, role: 'r'.repeat(300) }] }, /blobs\[0\]\.role/],
    ];
    for (const [extra, field] of cases) {
      const t = makeTrace({ extra });
      await expectCode(prepare(agent, manifestMessageOf(t.dir)), status.INVALID_ARGUMENT, field, JSON.stringify(extra).slice(0, 100));
    }
    // The limits are generous: a real recording's manifest passes (a long but sane argv too).
    const ok = makeTrace({ argv: ['prog', ...Array.from({ length: 1000 }, (_, i) => `--arg-${i}=${'y'.repeat(100)}`)] });
    expect((await pushTrace(agent, ok.dir)).created).toBe(true);
  });

  it('bounds labels: their number and their total size', async () => {
    const t = makeTrace();
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
    await expectCode(pushTrace(agent, t.dir, { labels: many, retries: 0 }), status.INVALID_ARGUMENT, /labels/);
  });

  it('bounds a list page in bytes, and says it is cut short', async () => {
    const ids: string[] = [];
    // Six traces of about 1.2 MB each (their argv), within the per-trace budget.
    for (let i = 0; i < 6; i++) {
      const t = makeTrace({ argv: ['bigargv', ...Array.from({ length: 300 }, () => 'z'.repeat(4000))], hostname: 'big-page' });
      ids.push((await pushTrace(agent, t.dir)).traceId);
    }
    const page = await list(reader, { host: 'big-page' });
    const bytes = ListTracesResponse.encode(page).finish().length;
    expect(page.traces.length).toBeGreaterThan(0);
    expect(page.traces.length).toBeLessThan(6);
    expect(bytes).toBeLessThan(5 << 20);
    expect(page.truncated).toBe(true);
    // The next page continues before the last one shown.
    const last = page.traces[page.traces.length - 1]!;
    const next = await list(reader, { host: 'big-page', until: new Date(last.startTime!.getTime() - 1) });
    expect(next.traces.length).toBeGreaterThan(0);
    expect(next.traces.map((x) => x.id)).not.toContain(last.id);
  });

  it('a bad trace already stored does not break listing', async () => {
    const t = makeTrace({ hostname: 'stored-bad' });
    await pushTrace(agent, t.dir);
    // As an older server would have let it in.
    const db = new Database(path.join(ts.dataDir, 'catalog.sqlite'));
    db.prepare('UPDATE traces SET exit_status = ?, start_ms = ?, duration_ms = ?, size_bytes = ?, argv = ? WHERE id = ?').run(
      2147483648,
      8.64e15 * 10,
      -1,
      -5,
      'not json',
      t.id,
    );
    db.close();
    const page = await list(reader, { host: 'stored-bad' });
    expect(page.traces.map((x) => x.id)).toEqual([t.id]);
    expect(page.traces[0]!.exitStatus).toBe(-1);
    const all = await list(reader);
    expect(all.traces.map((x) => x.id)).toContain(t.id);
    await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: t.id });
  });
});

/** Sends raw bytes as the request of a unary method (a client that does not speak our protobuf). */
function rawUnary(c: Clients, method: string, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    c.catalog.makeUnaryRequest<Buffer, Buffer>(
      method,
      (b) => b,
      (b) => b,
      bytes,
      c.metadata(),
      { deadline: Date.now() + 20_000 },
      (err, res) => (err ? reject(err) : resolve(res!)),
    );
  });
}

/** How long a cheap call takes to answer right now. */
async function latency(c: Clients): Promise<number> {
  const t0 = performance.now();
  await call(c, c.tokens.whoAmI.bind(c.tokens), {});
  return performance.now() - t0;
}

describe('finding 3: no request blocks the server', () => {
  it('refuses a search of thousands of words at once, and others are answered meanwhile', async () => {
    for (let i = 0; i < 20; i++) await pushTrace(agent, makeTrace({ argv: ['searchable', `w${i}`] }).dir);
    const words = Array.from({ length: 60_000 }, (_, i) => `w${i}`).join(' ');
    const t0 = performance.now();
    const big = expectCode(list(reader, { search: words }), status.INVALID_ARGUMENT, /ListTraces takes at most/);
    const meanwhile = await latency(agent);
    await big;
    // Within the request bound, the search's own: its length, and its number of words.
    const tenThousand = words.split(' ').slice(0, 10_000).join(' ');
    await expectCode(list(reader, { search: tenThousand }), status.INVALID_ARGUMENT, /search text is longer than 1024/);
    await expectCode(list(reader, { search: words.split(' ').slice(0, 17).join(' ') }), status.INVALID_ARGUMENT, /search has 17 words; at most 16/);
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(meanwhile).toBeLessThan(1000);
    // The bound leaves real searches alone.
    const found = await list(reader, { search: 'searchable w1' });
    expect(found.traces.length).toBeGreaterThanOrEqual(1);
  });

  it('bounds request sizes per method: a 16 MB listing request is refused before it is decoded', async () => {
    const huge = ListTracesRequest.encode(ListTracesRequest.fromPartial({ search: 'x'.repeat(15 << 20) })).finish();
    const t0 = performance.now();
    await expectCode(rawUnary(reader, '/rewind.catalog.v1.CatalogService/ListTraces', Buffer.from(huge)), status.INVALID_ARGUMENT, /ListTraces takes at most/);
    expect(performance.now() - t0).toBeLessThan(3000);
    // An upload's manifest may still be large.
    const t = makeTrace({ argv: ['big', 'a'.repeat(2 << 20)] });
    expect((await pushTrace(agent, t.dir)).created).toBe(true);
  });
});

describe('finding 8: small things a client can get wrong', () => {
  it('malformed protobuf is INVALID_ARGUMENT', async () => {
    // A length-delimited field 1 claiming 2^31 bytes.
    const garbage = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x01]);
    await expectCode(rawUnary(reader, '/rewind.catalog.v1.CatalogService/GetTrace', garbage), status.INVALID_ARGUMENT, /malformed/);
    await expectCode(rawUnary(agent, '/rewind.upload.v1.UploadService/PrepareUpload', garbage), status.INVALID_ARGUMENT, /malformed/);
    expect(await latency(reader)).toBeLessThan(1000);

    // In a stream: a good chunk, then garbage. The call ends INVALID_ARGUMENT, and the blob is not
    // left busy: the upload resumes from the good chunk.
    const data = randomBytes(2 << 20);
    const t = makeTrace({ blobs: [{ data, role: 'events' }] });
    const sha = t.blobs[0]!.sha256;
    const res = new Promise<unknown>((resolve, reject) => {
      const s = agent.upload.makeClientStreamRequest<Buffer, Buffer>(
        '/rewind.upload.v1.UploadService/UploadBlob',
        (b) => b,
        (b) => b,
        agent.metadata(),
        {},
        (err, r) => (err ? reject(err) : resolve(r)),
      );
      s.write(encodeChunk({ sha256: sha, size: data.length, offset: 0 }, data.subarray(0, 1 << 20)));
      s.write(garbage);
    });
    await expectCode(res, status.INVALID_ARGUMENT, /malformed UploadBlob request/);
    const pushed = await pushTrace(agent, t.dir);
    expect(pushed.created).toBe(true);
    expect(pushed.blobBytesSent).toBe(1 << 20);
  });

  it('search text "\\0" is refused as invalid, not an internal error', async () => {
    await expectCode(list(reader, { search: '\0' }), status.INVALID_ARGUMENT, /search/);
    await expectCode(list(reader, { search: 'a\0b' }), status.INVALID_ARGUMENT, /search/);
  });

  it('an oversized trace id is refused without being echoed, and the connection goes on', async () => {
    for (const id of ['x'.repeat(1 << 20), 'y'.repeat(3000)]) {
      const err = await failure(call(reader, reader.catalog.getTrace.bind(reader.catalog), { id }));
      expect(status[err.code]).toBe('INVALID_ARGUMENT');
      expect(err.details.length).toBeLessThan(200);
      expect(err.details).not.toMatch(/xxxx|yyyy/);
    }
    expect(await latency(reader)).toBeLessThan(1000);
  });
});

describe.skipIf(!engineBuilt)('finding 4: readers do not see the recorded environment\'s secrets', () => {
  const secret = 'hunter2-do-not-leak';
  const run = (args: string[], token: string): Promise<CliResult> =>
    rewind(args, { REWIND_SERVER: ts.address, REWIND_TOKEN: token, MY_SECRET_API_KEY: secret, GITHUB_TOKEN: `gh-${secret}`, PLAIN: 'visible' });

  it('record --push redacts by default; replay on the server still prints what the program printed', async () => {
    const agentToken = await ts.token('agent');
    const readerToken = await ts.token('reader');
    const dir = path.join(tmpDir('rewind-redact-'), 't');
    const rec = await run(['record', '--push', '-o', dir, '--', '/usr/bin/printenv', 'MY_SECRET_API_KEY', 'REWIND_TOKEN', 'PLAIN'], agentToken);
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toBe(`${secret}\n${agentToken}\nvisible\n`);
    const id = /uploaded as (\S+)/.exec(rec.stderr)![1]!;
    const show = await run(['show', id], readerToken);
    expect(show.status, show.stderr).toBe(0);
    expect(show.stdout).toContain('MY_SECRET_API_KEY=[redacted]');
    expect(show.stdout).toContain('REWIND_TOKEN=[redacted]');
    expect(show.stdout).toContain('GITHUB_TOKEN=[redacted]');
    expect(show.stdout).toContain('PLAIN=visible');
    const got = await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id });
    for (const leak of [secret, agentToken]) {
      expect(show.stdout).not.toContain(leak);
      expect(JSON.stringify(ManifestMessage.toJSON(got.manifest!))).not.toContain(leak);
    }
    // The local trace keeps its environment (it never left this machine).
    expect(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')).toContain(secret);
    // Replay does not need the values: the recorded memory holds what the program read.
    const rep = await run(['replay', id], readerToken);
    expect(rep.status, rep.stderr).toBe(0);
    expect(rep.stdout).toBe(rec.stdout);
  });

  it('--keep-env keeps the environment, except REWIND_TOKEN', async () => {
    const agentToken = await ts.token('agent');
    const dir = path.join(tmpDir('rewind-keepenv-'), 't');
    const rec = await run(['record', '-o', dir, '--', '/usr/bin/true'], agentToken);
    expect(rec.status, rec.stderr).toBe(0);
    const pushed = await run(['push', '--keep-env', dir], agentToken);
    expect(pushed.status, pushed.stderr).toBe(0);
    const got = await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: pushed.stdout.trim() });
    const env = got.manifest!.env;
    expect(env).toContain(`MY_SECRET_API_KEY=${secret}`);
    expect(env).toContain('REWIND_TOKEN=[redacted]');
    expect(JSON.stringify(ManifestMessage.toJSON(got.manifest!))).not.toContain(agentToken);
    const help = await rewind(['push', '--help']);
    expect(help.stdout).toMatch(/--keep-env/);
  });

  it('the server drops a token a client left in the environment', async () => {
    const leaked = await ts.token('admin');
    const t = makeTrace();
    await pushTrace(agent, t.dir);
    // Another trace of the same blobs, committed by a client that does not redact.
    const manifest = { ...t.manifest, id: randomUUID(), env: ['REWIND_TOKEN=x', `SOMETHING=${leaked}`, 'OK=1'] };
    await call(agent, agent.upload.commitUpload.bind(agent.upload), { manifest: ManifestMessage.fromJSON(manifest), labels: {} });
    const got = await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: manifest.id });
    expect(manifestFromMessage(got.manifest!).env).toEqual(['REWIND_TOKEN=[redacted]', 'SOMETHING=[redacted]', 'OK=1']);
  });
});

describe('finding 5: an agent token belongs to one host', () => {
  const facts = (hostname: string, kernel: string) => ({ facts: { hostname, kernel, arch: 'x86_64', cpuModel: '', cpuVendor: '', cpuFlags: [], rewindVersion: '' } });

  it('registration, heartbeats, jobs and completions are checked against the token', async () => {
    const a = ts.client(await ts.token('agent'));
    const b = ts.client(await ts.token('agent'));
    const admin = ts.client(ts.adminToken);
    const reg = await call(a, a.agent.register.bind(a.agent), facts('host-a', 'kernel-a'));
    // Another agent token may not take the host's name, nor its facts.
    await expectCode(call(b, b.agent.register.bind(b.agent), facts('host-a', 'forged')), status.PERMISSION_DENIED, /host-a belongs to another agent token/);
    const hosts = await call(reader, reader.agent.listHosts.bind(reader.agent), {});
    expect(hosts.hosts.find((h) => h.facts?.hostname === 'host-a')?.facts?.kernel).toBe('kernel-a');
    // Nor may one token speak for two hosts.
    await expectCode(call(a, a.agent.register.bind(a.agent), facts('host-a2', 'k')), status.PERMISSION_DENIED, /already belongs to host host-a/);
    // The same token registering again is fine.
    expect((await call(a, a.agent.register.bind(a.agent), facts('host-a', 'kernel-a'))).agentId).toBe(reg.agentId);

    const job = (await call(admin, admin.agent.createJob.bind(admin.agent), { hostname: 'host-a', argv: ['/bin/true'], labels: {} })).job!;
    await expectCode(call(b, b.agent.heartbeat.bind(b.agent), { agentId: reg.agentId }), status.PERMISSION_DENIED, /another agent token/);
    const jobs = await call(a, a.agent.heartbeat.bind(a.agent), { agentId: reg.agentId });
    expect(jobs.jobs.map((j) => j.id)).toEqual([job.id]);

    // A trace of the right host's token completes it; nobody else's does.
    const byB = makeTrace({ hostname: 'host-a' });
    await pushTrace(b, byB.dir);
    const byA = makeTrace({ hostname: 'host-a' });
    await pushTrace(a, byA.dir);
    const complete = (c: Clients, traceId: string, error = ''): Promise<unknown> =>
      call(c, c.agent.completeJob.bind(c.agent), { jobId: job.id, traceId, error });
    await expectCode(complete(b, byB.id), status.PERMISSION_DENIED, /another agent token/);
    await expectCode(complete(a, byB.id), status.PERMISSION_DENIED, /was not uploaded with this token/);
    await expectCode(complete(a, '00000000-0000-4000-8000-000000000000'), status.NOT_FOUND, /no trace/);
    await expectCode(complete(a, 'not-an-id'), status.INVALID_ARGUMENT, /trace id/);
    await complete(a, byA.id);
    await expectCode(complete(a, byA.id), status.FAILED_PRECONDITION, /not running/);
    const done = await call(reader, reader.agent.getJob.bind(reader.agent), { id: job.id, wait: false });
    expect(done.job!.traceId).toBe(byA.id);

    // A revoked token frees its host for a new one.
    await call(admin, admin.tokens.revokeToken.bind(admin.tokens), { token: (await call(a, a.tokens.whoAmI.bind(a.tokens), {})).token!.id });
    expect((await call(b, b.agent.register.bind(b.agent), facts('host-a', 'kernel-b'))).agentId).toBe(reg.agentId);
  });
});

const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('finding 6: a full disk, declared sizes and quotas', () => {
  let mnt: string;
  let small: TestServer;

  beforeAll(async () => {
    mnt = tmpDir('rewind-smallfs-');
    // A real file system of 24 MiB for the whole data directory: catalogue, blobs, sessions.
    const m = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24m,mode=0700', 'tmpfs', mnt], { encoding: 'utf8' });
    expect(m.status, m.stderr).toBe(0);
    small = await startTestServer({
      dataDir: path.join(mnt, 'data'),
      replayCommand: [process.execPath, path.join(REPO, 'test/server/fixtures/fake_replay.mjs')],
      maxBlobBytes: 40 << 20,
      uploadQuotaBytes: 48 << 20,
    });
  });
  afterAll(async () => {
    await small?.close();
    if (mnt) spawnSync('umount', ['-l', mnt]);
  });

  const partials = (): string[] => fs.readdirSync(path.join(small.dataDir, 'blobs', '.partial'));

  it('disk full: RESOURCE_EXHAUSTED saying so, the partial upload removed, every other call still works', async () => {
    const up = small.client(await small.token('agent'));
    const rd = small.client(await small.token('reader'));
    const admin = small.client(small.adminToken);
    const first = makeTrace({ argv: ['prog', 'x'], blobs: [{ data: randomBytes(64 << 10), role: 'events' }] });
    await pushTrace(up, first.dir);
    const free = (): number => fs.statfsSync(mnt).bavail * fs.statfsSync(mnt).bsize;
    const before = free();
    const big = makeTrace({ blobs: [{ data: randomBytes(32 << 20), role: 'snapshot' }] });
    await expectCode(pushTrace(up, big.dir, { retries: 0 }), status.RESOURCE_EXHAUSTED, /disk is full/);
    // The partial goes, and its space comes back (a moment after the file is gone from the listing).
    await until('the partial upload to be removed and its space freed', async () => partials().length === 0 && free() >= before - (1 << 20));
    // Everything else works: tokens, listing, a replay (which writes its session directory).
    await call(admin, admin.tokens.createToken.bind(admin.tokens), { role: 2, name: 'after-full' });
    expect((await call(rd, rd.catalog.listTraces.bind(rd.catalog), ListTracesRequest.fromPartial({}))).traces.map((t) => t.id)).toEqual([first.id]);
    const out: Buffer[] = [];
    const code = await new Promise<number>((resolve, reject) => {
      const s = rd.replay.runReplay({ traceId: first.id }, rd.metadata());
      let exit = -1;
      s.on('data', (m: { stdout?: Buffer; exit?: { status: number } }) => {
        if (m.stdout) out.push(m.stdout);
        if (m.exit) exit = m.exit.status;
      });
      s.on('error', reject);
      s.on('end', () => resolve(exit));
    });
    expect(code).toBe(0);
    expect(Buffer.concat(out).toString()).toMatch(/^out: prog x\n/);
  });

  it('declared blob sizes are bounded', async () => {
    const up = small.client(await small.token('agent'));
    const t = makeTrace({ extra: { blobs: [{ sha256: 'b'.repeat(64), size: 8 * 2 ** 50, role: 'snapshot' }] } });
    await expectCode(prepare(up, manifestMessageOf(t.dir)), status.INVALID_ARGUMENT, /blobs\[0\]\.size/);
    const u = makeTrace({ extra: { blobs: [{ sha256: 'b'.repeat(64), size: 41 << 20, role: 'snapshot' }] } });
    await expectCode(prepare(up, manifestMessageOf(u.dir)), status.INVALID_ARGUMENT, /larger than this server takes \(41943040 bytes\)/);
    // Straight to UploadBlob, without a manifest.
    const res = new Promise<unknown>((resolve, reject) => {
      const s = up.upload.uploadBlob(up.metadata(), (err, r) => (err ? reject(err) : resolve(r)));
      s.write({ sha256: 'c'.repeat(64), size: 8n * 2n ** 50n, offset: 0n, data: Buffer.alloc(10), chunkSha256: Buffer.alloc(0), compression: 0 });
      s.end();
    });
    await expectCode(res, status.INVALID_ARGUMENT, /larger than this server takes/);
    expect(partials()).toEqual([]);
  });

  it('uploads have a quota per token', async () => {
    const token = await small.token('agent');
    const up = small.client(token);
    const blob = (mib: number): ReturnType<typeof makeTrace> => makeTrace({ blobs: [{ data: randomBytes(mib << 20), role: 'events' }] });
    const kept: string[] = [];
    for (let i = 0; i < 2; i++) {
      const t = blob(4);
      await pushTrace(up, t.dir);
      kept.push(t.id);
    }
    // 8 MiB stored, 48 MiB allowed: a 41 MiB trace would pass it.
    const over = makeTrace({ extra: { blobs: [{ sha256: 'd'.repeat(64), size: 40 << 20, role: 'snapshot' }, { sha256: 'e'.repeat(64), size: 1 << 20, role: 'events' }] } });
    await expectCode(prepare(up, manifestMessageOf(over.dir)), status.RESOURCE_EXHAUSTED, /upload quota/);
    // Blobs begun outside any manifest count while they are not committed.
    const open = (sha: string, size: number): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const s = up.upload.uploadBlob(up.metadata(), (err, r) => (err ? reject(err) : resolve(r)));
        s.write({ sha256: sha, size: BigInt(size), offset: 0n, data: Buffer.alloc(1000), chunkSha256: Buffer.alloc(0), compression: 0 });
        s.end();
      });
    await open('1'.repeat(64), 39 << 20);
    await expectCode(open('2'.repeat(64), 2 << 20), status.RESOURCE_EXHAUSTED, /upload quota/);
    // Another token has its own.
    const other = small.client(await small.token('agent'));
    expect((await pushTrace(other, blob(1).dir)).created).toBe(true);
  });
});

describe('finding 7: session slots', () => {
  let srv: TestServer;
  let echo: string;
  beforeAll(async () => {
    srv = await startTestServer({
      debugCommand: [process.execPath, path.join(REPO, 'test/server/fixtures/fake_debug.mjs')],
      maxSessions: 3,
      maxSessionsPerToken: 2,
      debugStartTimeoutMs: 1000,
      reclaimIdleMs: 1500,
    });
    const up = srv.client(await srv.token('agent'));
    echo = (await pushTrace(up, makeTrace({ argv: ['echo'], exe: '/usr/bin/echo' }).dir)).traceId;
  });
  afterAll(async () => {
    await srv?.close();
  });

  /** A Debug stream that sends `start` (unless told not to) and then nothing, held open. */
  function hold(token: string, start = true): { session: Promise<string>; ended: Promise<{ code: number; details: string }>; cancel(): void } {
    const c = srv.client(token);
    const s = c.replay.debug(c.metadata());
    let gotSession!: (id: string) => void;
    const session = new Promise<string>((r) => (gotSession = r));
    const ended = new Promise<{ code: number; details: string }>((resolve) => {
      s.on('data', (m: { sessionId?: string }) => m.sessionId && gotSession(m.sessionId));
      s.on('error', (e: { code: number; details: string }) => resolve(e));
      s.on('end', () => resolve({ code: 0, details: 'ended' }));
    });
    if (start) s.write({ start: { traceId: echo } });
    return { session, ended, cancel: () => s.cancel() };
  }

  /** Waits for the session to start; a stream that ends first fails the test with its error. */
  async function started(h: ReturnType<typeof hold>): Promise<void> {
    const end = await Promise.race([h.session.then(() => undefined), h.ended]);
    if (end) throw new Error(`the session ended before it started: ${status[end.code]} ${end.details}`);
  }

  it('a token holds at most its share; the server reclaims sessions idle when another needs a slot', async () => {
    const r1 = await srv.token('reader');
    const a = hold(r1);
    const b = hold(r1);
    await Promise.all([started(a), started(b)]);
    const third = await hold(r1).ended;
    expect(status[third.code]).toBe('RESOURCE_EXHAUSTED');
    expect(third.details).toMatch(/this token already runs 2 sessions/);
    const c = hold(await srv.token('reader'));
    await started(c);
    const full = Date.now();
    // The server is full; once a session has been idle long enough, a newcomer gets its slot.
    const r4 = await srv.token('reader');
    let d: ReturnType<typeof hold> | undefined;
    await until('a slot to be reclaimed', async () => {
      const h = hold(r4);
      if (await Promise.race([h.session.then(() => true), h.ended.then(() => false)])) d = h;
      return d !== undefined;
    });
    expect(Date.now() - full).toBeGreaterThanOrEqual(1000);
    // The one idle longest: a or b as a rule, but under load a worker that took long to start
    // used CPU until later than c's did.
    const reclaimed = await Promise.race([a.ended, b.ended, c.ended]);
    expect(status[reclaimed.code]).toBe('DEADLINE_EXCEEDED');
    expect(reclaimed.details).toMatch(/idle .* closed to make room/);
    for (const h of [a, b, c, d!]) h.cancel();
  });

  it('a Debug stream that does not send start within the bound is closed', async () => {
    const tokens: string[] = [];
    for (let i = 0; i < 200; i++) tokens.push(await srv.token('reader'));
    const t0 = performance.now();
    const silent = tokens.map((t) => hold(t, false));
    const ends = await Promise.all(silent.map((h) => h.ended));
    for (const e of ends) {
      expect(status[e.code]).toBe('DEADLINE_EXCEEDED');
      expect(e.details).toMatch(/no start message within 1 s/);
    }
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});

describe('finding 8: the data directory is private; TLS mistakes are explained', () => {
  it('catalog.sqlite and its WAL are 0600 and the data directory 0700, also when an older server left them open', async () => {
    const mode = (p: string): string => (fs.statSync(p).mode & 0o777).toString(8);
    const dir = tmpDir('rewind-modes-');
    const a = await startTestServer({ dataDir: dir });
    await pushTrace(a.client(await a.token('agent')), makeTrace().dir);
    const files = ['catalog.sqlite', 'catalog.sqlite-wal', 'catalog.sqlite-shm'].map((f) => path.join(dir, f));
    expect(mode(dir)).toBe('700');
    for (const f of files) expect(mode(f), f).toBe('600');
    await a.close();
    fs.chmodSync(dir, 0o755);
    for (const f of files.filter((x) => fs.existsSync(x))) fs.chmodSync(f, 0o644);
    const b = await startTestServer({ dataDir: dir });
    expect(mode(dir)).toBe('700');
    for (const f of files.filter((x) => fs.existsSync(x))) expect(mode(f), f).toBe('600');
    await b.close();
  });

  it('a plaintext client against the TLS port is told to use TLS, and a TLS client against a plaintext one the reverse', async () => {
    const dir = tmpDir('rewind-tls-');
    const [cert, key] = [path.join(dir, 'cert.pem'), path.join(dir, 'key.pem')];
    const gen = spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
    expect(gen.status, gen.stderr).toBe(0);
    const tls = await startTestServer({ tlsCert: cert, tlsKey: key });
    try {
      const plain = await rewind(['ls', '--server', tls.address, '--token', tls.adminToken]);
      expect(plain.status).toBe(69);
      expect(plain.stderr).toMatch(/speaks TLS: connect with --tls/);
      expect(plain.stderr).not.toMatch(/ECONNREFUSED/);
      const ok = await rewind(['ls', '--server', tls.address, '--token', tls.adminToken, '--ca', cert]);
      expect(ok.status, ok.stderr).toBe(0);
      const wrongWay = await rewind(['ls', '--server', ts.address, '--token', ts.adminToken, '--tls']);
      expect(wrongWay.status).toBe(69);
      expect(wrongWay.stderr).toMatch(/does not speak TLS/);
    } finally {
      await tls.close();
    }
  });
});
