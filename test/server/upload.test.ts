import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import { makeTrace, manifestMessageOf, sha256, startTestServer, until, type TestServer } from './helpers.js';
import { validateManifest } from '../../trace/manifest.js';
import { manifestFromMessage } from '../../trace/manifest_message.js';
import { Manifest as ManifestMessage } from '../../gen/rewind/trace/v1/manifest.js';

let ts: TestServer;
let agent: Clients;
let reader: Clients;
let admin: Clients;

beforeAll(async () => {
  ts = await startTestServer();
  agent = ts.client(await ts.token('agent'));
  reader = ts.client(await ts.token('reader'));
  admin = ts.client(ts.adminToken);
});
afterAll(async () => {
  await ts.close();
});

async function expectCode(p: Promise<unknown>, code: status, text?: RegExp): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code: number; details: string },
  );
  expect(err, 'the call should have failed').toBeDefined();
  expect(status[err!.code]).toBe(status[code]);
  if (text) expect(err!.details).toMatch(text);
}

describe('upload', () => {
  it('writes the admin token 0600 at first start', () => {
    const st = fs.statSync(path.join(ts.dataDir, 'admin.token'));
    expect(st.mode & 0o777).toBe(0o600);
    expect(ts.adminToken).toMatch(/^rwt_/);
  });

  it('uploads a trace, stores blobs content-addressed, lists and shows it', async () => {
    const t = makeTrace({ argv: ['myprog', '--flag'], exe: '/opt/bin/myprog' });
    const res = await pushTrace(agent, t.dir, { labels: { team: 'infra' } });
    expect(res.traceId).toBe(t.id);
    expect(res.created).toBe(true);
    expect(res.bytesSent).toBe(64 * 1024 + 256 * 1024);
    for (const b of t.blobs) {
      const p = path.join(ts.dataDir, 'blobs', b.sha256.slice(0, 2), b.sha256.slice(2, 4), b.sha256);
      expect(sha256(fs.readFileSync(p))).toBe(b.sha256);
    }
    const list = await call(reader, reader.catalog.listTraces.bind(reader.catalog), ListTracesRequest.fromPartial({ program: 'myprog' }));
    expect(list.traces.map((x) => x.id)).toEqual([t.id]);
    const t2 = makeTrace({ argv: ['python3', '-c', 'pass'], exe: '/usr/bin/python3.11' });
    await pushTrace(agent, t2.dir);
    for (const program of ['python3', 'python3.11', '/usr/bin/python3.11']) {
      const l = await call(reader, reader.catalog.listTraces.bind(reader.catalog), ListTracesRequest.fromPartial({ program }));
      expect(l.traces.map((x) => x.id), program).toEqual([t2.id]);
    }
    // An empty blob is a blob too.
    const t3 = makeTrace({ blobs: [{ data: Buffer.alloc(0), role: 'events' }] });
    expect((await pushTrace(agent, t3.dir)).created).toBe(true);
    expect(list.traces[0]!.labels).toEqual({ team: 'infra' });
    const got = await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: t.id });
    expect(manifestFromMessage(got.manifest!)).toEqual(validateManifest(t.manifest));
    expect(got.blobs.length).toBe(2);
  });

  it('sends only missing blobs the second time (dedup counters)', async () => {
    const shared = randomBytes(2 << 20);
    const a = makeTrace({ blobs: [{ data: randomBytes(10_000), role: 'events' }, { data: shared, role: 'file', path: '/lib/libc.so.6' }] });
    const b = makeTrace({ blobs: [{ data: randomBytes(10_000), role: 'events' }, { data: shared, role: 'file', path: '/lib/libc.so.6' }] });
    const before = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    const r1 = await pushTrace(agent, a.dir);
    const mid = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    const r2 = await pushTrace(agent, b.dir);
    const after = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    const first = Number(mid.bytesReceived - before.bytesReceived);
    const second = Number(after.bytesReceived - mid.bytesReceived);
    expect(first).toBe(r1.bytesSent);
    expect(second).toBe(r2.bytesSent);
    expect(second).toBeLessThan(first * 0.05);
    // Pushing the same trace again is a no-op.
    const again = await pushTrace(agent, b.dir);
    expect(again.created).toBe(false);
    expect(again.bytesSent).toBe(0);
  });

  it('rejects a chunk whose bytes do not match its hash, then the client re-sends it', async () => {
    const t = makeTrace({ blobs: [{ data: randomBytes(3 << 20), role: 'events' }] });
    const before = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    const retries: string[] = [];
    const res = await pushTrace(agent, t.dir, { corruptChunk: 2, backoffMs: 10, onRetry: (e) => retries.push(e.message) });
    const after = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    expect(res.created).toBe(true);
    expect(retries.join('\n')).toMatch(/does not match its CRC-32/);
    expect(Number(after.chunksRejected - before.chunksRejected)).toBe(1);
    const p = path.join(ts.dataDir, 'blobs', t.blobs[0]!.sha256.slice(0, 2), t.blobs[0]!.sha256.slice(2, 4), t.blobs[0]!.sha256);
    expect(sha256(fs.readFileSync(p))).toBe(t.blobs[0]!.sha256);
  });

  it('rejects a blob larger than declared and a blob whose content does not match', async () => {
    const data = randomBytes(1000);
    const h = sha256(data);
    const send = (c: Clients, msgs: { data: Buffer; offset: number; size: number; sha: string }[]): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const s = c.upload.uploadBlob(c.metadata(), (err, res) => (err ? reject(err) : resolve(res)));
        for (const m of msgs) s.write({ sha256: m.sha, size: BigInt(m.size), offset: BigInt(m.offset), data: m.data, chunkSha256: Buffer.alloc(0), compression: 0 });
        s.end();
      });
    await expectCode(send(agent, [{ sha: h, size: 500, offset: 0, data }]), status.INVALID_ARGUMENT, /larger than its declared size/);
    const wrong = sha256(Buffer.from('something else'));
    await expectCode(send(agent, [{ sha: wrong, size: 1000, offset: 0, data }]), status.DATA_LOSS, /does not match its sha256/);
    expect(fs.existsSync(path.join(ts.dataDir, 'blobs', wrong.slice(0, 2), wrong.slice(2, 4), wrong))).toBe(false);
    // Nothing half-written: a fresh prepare reports the blob missing from offset 0.
    const t = makeTrace({ blobs: [{ data, role: 'events' }] });
    const prep = await call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest: manifestMessageOf(t.dir) });
    expect(prep.missing).toEqual([{ sha256: h, size: 1000n, offset: 0n }]);
  });

  it('compresses chunks that shrink and stores the decoded bytes', async () => {
    const zeros = Buffer.alloc(3 << 20);
    zeros.write('snapshot header', 100);
    const t = makeTrace({ blobs: [{ data: zeros, role: 'snapshot' }, { data: randomBytes(3 << 20), role: 'file', path: '/x' }] });
    const before = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    const res = await pushTrace(agent, t.dir);
    const after = await call(reader, reader.catalog.getStats.bind(reader.catalog), {});
    expect(res.blobBytesSent).toBe(6 << 20);
    expect(res.bytesSent).toBeLessThan((3 << 20) + (256 << 10));
    expect(Number(after.bytesReceived - before.bytesReceived)).toBe(res.bytesSent);
    expect(Number(after.blobBytesReceived - before.blobBytesReceived)).toBe(6 << 20);
    const sha = t.blobs[0]!.sha256;
    expect(fs.readFileSync(path.join(ts.dataDir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha)).equals(zeros)).toBe(true);
  });

  it('keeps the bytes of a cancelled stream and resumes from them', async () => {
    const data = randomBytes(3 << 20);
    const t = makeTrace({ blobs: [{ data, role: 'snapshot' }] });
    const manifest = manifestMessageOf(t.dir);
    const sha = t.blobs[0]!.sha256;
    const s = agent.upload.uploadBlob(agent.metadata(), () => {});
    for (let i = 0; i < 2; i++) {
      s.write({ sha256: sha, size: BigInt(data.length), offset: BigInt(i << 20), data: data.subarray(i << 20, (i + 1) << 20), chunkSha256: Buffer.alloc(0), compression: 0 });
    }
    const held = async (): Promise<bigint> =>
      (await call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest })).missing[0]!.offset;
    await until('the server to hold both chunks', async () => (await held()) >= 2n << 20n);
    s.cancel();
    expect(await held()).toBe(2n << 20n);
    const res = await pushTrace(agent, t.dir, { backoffMs: 20 });
    expect(res.blobBytesSent).toBe(1 << 20);
    expect(fs.readFileSync(path.join(ts.dataDir, 'blobs', sha.slice(0, 2), sha.slice(2, 4), sha)).equals(data)).toBe(true);
  });

  it('never lists a trace whose blobs are not all uploaded', async () => {
    const t = makeTrace();
    await expectCode(call(agent, agent.upload.commitUpload.bind(agent.upload), { manifest: manifestMessageOf(t.dir), labels: {} }), status.FAILED_PRECONDITION, /not uploaded/);
    await expectCode(call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: t.id }), status.NOT_FOUND);
  });
});

describe('auth', () => {
  it('UNAUTHENTICATED without a token or with a wrong one', async () => {
    const none = ts.client();
    await expectCode(call(none, none.catalog.listTraces.bind(none.catalog), ListTracesRequest.fromPartial({})), status.UNAUTHENTICATED, /no token/);
    const bad = ts.client('rwt_nope');
    await expectCode(call(bad, bad.catalog.listTraces.bind(bad.catalog), ListTracesRequest.fromPartial({})), status.UNAUTHENTICATED, /invalid or revoked/);
  });

  it('PERMISSION_DENIED for a reader pushing or an agent listing', async () => {
    const t = makeTrace();
    await expectCode(pushTrace(reader, t.dir), status.PERMISSION_DENIED, /needs an agent or admin token/);
    await expectCode(call(agent, agent.catalog.listTraces.bind(agent.catalog), ListTracesRequest.fromPartial({})), status.PERMISSION_DENIED);
    await expectCode(call(reader, reader.tokens.createToken.bind(reader.tokens), { role: 2, name: '' }), status.PERMISSION_DENIED);
  });

  it('creates and revokes tokens (admin), stored hashed', async () => {
    const res = await call(admin, admin.tokens.createToken.bind(admin.tokens), { role: 2, name: 'laptop' });
    const c = ts.client(res.secret);
    await call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({}));
    const db = new Database(path.join(ts.dataDir, 'catalog.sqlite'), { readonly: true });
    const dump = db.prepare('SELECT hash FROM tokens').all() as { hash: string }[];
    db.close();
    expect(dump.some((r) => r.hash === res.secret)).toBe(false);
    await call(admin, admin.tokens.revokeToken.bind(admin.tokens), { token: 'laptop' });
    await expectCode(call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({})), status.UNAUTHENTICATED);
  });
});

describe('bad manifests', () => {
  const prepare = (manifest: ManifestMessage | undefined): Promise<unknown> => call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest });
  it('rejects a missing manifest and missing or malformed fields', async () => {
    await expectCode(prepare(undefined), status.INVALID_ARGUMENT, /carries no manifest/);
    await expectCode(prepare(ManifestMessage.fromPartial({})), status.INVALID_ARGUMENT, /not a rewind trace manifest/);
    const t = makeTrace({ extra: { id: 'not-a-uuid' } });
    await expectCode(prepare(manifestMessageOf(t.dir)), status.INVALID_ARGUMENT, /"id" must be a UUID/);
    const u = makeTrace({ extra: { blobs: [{ sha256: 'xyz', size: 1, role: 'events' }] } });
    await expectCode(prepare(manifestMessageOf(u.dir)), status.INVALID_ARGUMENT, /sha256/);
    const v = makeTrace({ extra: { host: undefined } });
    await expectCode(prepare(manifestMessageOf(v.dir)), status.INVALID_ARGUMENT, /"host" must be an object/);
  });
  it('a trace cut short: refused without its events, by default by pushTrace (the agent); pushed with allowIncomplete, marked incomplete', async () => {
    // What a killed recorder leaves: the provisional manifest (no blobs listed, no exit), the
    // blobs written so far, and the event stream it was writing.
    const t = makeTrace({ extra: { complete: false, exit: null, blobs: [] } });
    const partial = randomBytes(30_000);
    fs.writeFileSync(path.join(t.dir, 'events.partial'), partial);
    await expectCode(
      prepare(manifestMessageOf(t.dir)),
      status.INVALID_ARGUMENT,
      /an incomplete trace \(its recording was cut short\) must carry the events it holds/,
    );
    await expect(pushTrace(agent, t.dir)).rejects.toThrow(/is incomplete \(its recording is still running or was cut short\)/);

    const res = await pushTrace(agent, t.dir, { allowIncomplete: true });
    expect(res.created).toBe(true);
    expect(res.incomplete).toBe(true);
    const got = await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: t.id });
    expect(got.summary!.complete).toBe(false);
    expect(got.summary!.exitStatus).toBe(-1);
    const roles = got.blobs.map((b) => `${b.role}:${b.sha256}`).sort();
    expect(roles).toEqual([...t.blobs.map((b) => `recorded:${b.sha256}`), `events:${sha256(partial)}`].sort());
    expect(manifestFromMessage(got.manifest!)).toMatchObject({ complete: false, exit: null });
    // The server holds the events byte for byte.
    const ev = got.blobs.find((b) => b.role === 'events')!;
    expect(fs.readFileSync(path.join(ts.dataDir, 'blobs', ev.sha256.slice(0, 2), ev.sha256.slice(2, 4), ev.sha256)).equals(partial)).toBe(true);
    // An unknown exit status is not a failure.
    const failed = await call(reader, reader.catalog.listTraces.bind(reader.catalog), ListTracesRequest.fromPartial({ failed: true, limit: 10000 }));
    expect(failed.traces.map((x) => x.id)).not.toContain(t.id);

    const empty = makeTrace({ extra: { complete: false, exit: null, blobs: [] } });
    await expect(pushTrace(agent, empty.dir, { allowIncomplete: true })).rejects.toThrow(/cut short before it recorded any event; there is nothing to push/);
  });
  it('rejects another format and an unsupported version, naming the supported ones', async () => {
    const t = makeTrace({ extra: { format: 'other' } });
    await expectCode(prepare(manifestMessageOf(t.dir)), status.INVALID_ARGUMENT, /not a rewind trace/);
    const v = makeTrace({ extra: { version: 2 } });
    await expectCode(prepare(manifestMessageOf(v.dir)), status.INVALID_ARGUMENT, /unsupported trace format version 2; this server supports version 1/);
  });
});

describe('leftovers of unfinished uploads', () => {
  it('removes uncommitted blobs and stale partials, keeps referenced blobs', async () => {
    const { sweep } = await import('../../server/gc.js');
    const { DiskBlobStore } = await import('../../server/blobstore/disk.js');
    const store = new DiskBlobStore(path.join(ts.dataDir, 'blobs'));
    const committed = makeTrace();
    await pushTrace(agent, committed.dir);
    // An upload that never commits: its blob is stored, not referenced.
    const orphan = makeTrace({ blobs: [{ data: randomBytes(5000), role: 'events' }] });
    const manifest = manifestMessageOf(orphan.dir);
    const sha = orphan.blobs[0]!.sha256;
    await new Promise<void>((resolve, reject) => {
      const s = agent.upload.uploadBlob(agent.metadata(), (e) => (e ? reject(e) : resolve()));
      s.write({ sha256: sha, size: 5000n, offset: 0n, data: fs.readFileSync(path.join(orphan.dir, 'blobs', sha)), chunkSha256: Buffer.alloc(0), compression: 0 });
      s.end();
    });
    expect(await ts.server.catalog.blobs.has(sha)).toBe(true);
    fs.writeFileSync(path.join(ts.dataDir, 'blobs', '.partial', 'f'.repeat(64)), 'stale');
    const res = await sweep(ts.server.catalog, store, 0, 0);
    expect(res.blobsRemoved).toBeGreaterThanOrEqual(1);
    expect(res.partialsRemoved).toBeGreaterThanOrEqual(1);
    expect(await ts.server.catalog.blobs.has(sha)).toBe(false);
    expect(fs.existsSync(store.pathOf(sha))).toBe(false);
    for (const b of committed.blobs) expect(fs.existsSync(store.pathOf(b.sha256))).toBe(true);
    const prep = await call(agent, agent.upload.prepareUpload.bind(agent.upload), { manifest });
    expect(prep.missing.map((m) => m.sha256)).toEqual([sha]);
  });
});
