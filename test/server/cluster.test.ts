// Two `rewind server` processes on one PostgreSQL catalogue and one S3 store (issue 15): both
// list the same traces, whichever took the upload; an agent given both servers finishes through B
// an upload that A was killed (SIGKILL) in the middle of, without resending what the store holds,
// and the trace lists once and replays through either; a recording job created on B is taken
// exactly once by an agent connected to A; a single-machine server moves into the shared stores
// (`rewind server migrate`) with its tokens and traces; one blob sent through both at once is
// written once (a claim in the catalogue), no sweep removes a blob under an upload of it, and a
// sweep racing a commit that names its orphans leaves them to the trace, which replays.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GetObjectCommand, ListMultipartUploadsCommand, ListPartsCommand } from '@aws-sdk/client-s3';
import { recordOn } from '../../remote/record.js';
import { openCatalog } from '../../server/catalog/catalog.js';
import { S3BlobStore } from '../../server/blobstore/s3.js';
import { sweep } from '../../server/gc.js';
import { pushTrace } from '../../remote/upload.js';
import { call, connect } from '../../remote/client.js';
import { compile } from '../support/compile.js';
import { CLI } from '../support/paths.js';
import { freshDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { s3SkipReason, startS3Server, type S3Server } from '../support/s3_server.js';
import { cleanEnv, rewind, spawnServer, type ServerProcess } from './cli.js';
import { makeTrace, REPO, tmpDir, until } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));
const MIB = 1 << 20;

describe.runIf(postgresAvailable() && !s3SkipReason())('two servers on one PostgreSQL catalogue and one S3 store', () => {
  let db: TestDatabase;
  let swift: S3Server;
  let a: ServerProcess;
  let b: ServerProcess;
  const agents: ChildProcess[] = [];
  const dirA = tmpDir('rewind-cluster-a-');
  const dirB = tmpDir('rewind-cluster-b-');
  const prefix = 'cluster';
  // A lease of 5 s (not 30): the killed server's claim on the upload lapses sooner.
  const serverArgs = (): string[] => ['--catalog', db.url, '--blobs', `s3://${swift.bucket}/${prefix}`, '--lease', '5'];
  const serverEnv = (): Record<string, string> => ({ ...swift.env, REWIND_HEARTBEAT_MS: '300' });

  beforeAll(async () => {
    db = await freshDatabase();
    swift = await startS3Server();
    a = await spawnServer(dirA, '127.0.0.1:0', serverArgs(), serverEnv());
    // The first server of a catalogue creates its admin token; the others are given it.
    fs.copyFileSync(path.join(dirA, 'admin.token'), path.join(dirB, 'admin.token'));
    b = await spawnServer(dirB, '127.0.0.1:0', serverArgs(), serverEnv());
  }, 300_000);
  afterAll(async () => {
    for (const p of agents) p.kill('SIGKILL');
    await a?.stop();
    await b?.stop();
    await db?.drop();
    await swift?.stop();
  }, 300_000);

  /** Starts `rewind agent` on the given servers (comma-separated); its log is collected. */
  const startAgent = (servers: string, token: string, spool: string, hostname: string): { log: () => string } => {
    let log = '';
    const p = spawn(process.execPath, [CLI, 'agent', '--spool', spool, '--hostname', hostname], {
      cwd: REPO,
      env: { ...cleanEnv(), REWIND_SERVER: servers, REWIND_TOKEN: token },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    p.stderr!.on('data', (d: Buffer) => (log += d.toString()));
    agents.push(p);
    return { log: () => log };
  };
  const agentToken = async (name: string): Promise<string> => {
    const tok = await rewind(['token', 'create', '--role', 'agent', '--name', name], { REWIND_SERVER: b.address, REWIND_TOKEN: b.adminToken });
    expect(tok.status, tok.stderr).toBe(0);
    return tok.stdout.trim();
  };

  const ids = async (srv: ServerProcess): Promise<string[]> => {
    const r = await rewind(['ls', '--json', '--limit', '1000'], { REWIND_SERVER: srv.address, REWIND_TOKEN: srv.adminToken });
    expect(r.status, r.stderr).toBe(0);
    return (JSON.parse(r.stdout) as { id: string }[]).map((t) => t.id);
  };

  it('both list the traces uploaded through either', async () => {
    const viaA = makeTrace({ argv: ['via-a'] });
    const viaB = makeTrace({ argv: ['via-b'] });
    const tokA = await rewind(['token', 'create', '--role', 'agent'], { REWIND_SERVER: a.address, REWIND_TOKEN: a.adminToken });
    expect(tokA.status, tokA.stderr).toBe(0);
    const ca = connect({ server: a.address, token: tokA.stdout.trim(), tls: false });
    const cb = connect({ server: b.address, token: tokA.stdout.trim(), tls: false });
    try {
      await pushTrace(ca, viaA.dir);
      await pushTrace(cb, viaB.dir);
    } finally {
      ca.close();
      cb.close();
    }
    const want = [viaA.id, viaB.id].sort();
    expect((await ids(a)).sort()).toEqual(want);
    expect(await ids(b)).toEqual(await ids(a));
  });

  it('one blob sent through A and B at once is written once and counted once', async () => {
    const big = randomBytes(40 * MIB);
    const t = makeTrace({ blobs: [{ data: randomBytes(64 * 1024), role: 'events' }, { data: big, role: 'file', path: '/usr/lib/libbig.so' }] });
    const sha = t.blobs[1]!.sha256;
    const tok = await agentToken('agent-race');
    const received = async (srv: ServerProcess): Promise<number> => {
      const c = connect({ server: srv.address, token: srv.adminToken, tls: false });
      try {
        return Number((await call(c, c.catalog.getStats.bind(c.catalog), {})).blobBytesReceived);
      } finally {
        c.close();
      }
    };
    const before = (await received(a)) + (await received(b));
    const clients = [a, b].map((srv) => connect({ server: srv.address, token: tok, tls: false }));
    try {
      const results = await Promise.all(clients.map((c) => pushTrace(c, t.dir, { retries: 20, backoffMs: 100, maxBackoffMs: 1000 })));
      expect(results.filter((r) => r.created)).toHaveLength(1);
    } finally {
      for (const c of clients) c.close();
    }
    // Written once: the servers together took each byte of the trace once.
    const total = t.blobs.reduce((n, x) => n + x.size, 0);
    expect((await received(a)) + (await received(b)) - before).toBe(total);
    expect((await ids(a)).filter((id) => id === t.id)).toHaveLength(1);
    const s3 = swift.client();
    try {
      const key = `${prefix}/blobs/${sha}`;
      const stored = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: swift.bucket, Key: key }))).Body!.transformToByteArray());
      expect(stored.equals(big)).toBe(true);
      expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: key }))).Uploads ?? []).toEqual([]);
    } finally {
      s3.destroy();
    }
    const pgc = new pg.Client({ connectionString: db.url });
    await pgc.connect();
    try {
      const r = await pgc.query<{ refcount: string }>('SELECT refcount FROM blobs WHERE sha256 = $1', [sha]);
      expect(r.rows.map((x) => Number(x.refcount))).toEqual([1]);
    } finally {
      await pgc.end();
    }
  });

  it('a sweep leaves a blob that another server is uploading, and removes it once that upload let go', async () => {
    // Two servers' catalogues and the store, in this process: one holds the blob's claim (its
    // upload is under way) while the other sweeps the blob, an orphan past its time.
    const [up, sweeper] = [await openCatalog(tmpDir('rewind-cluster-up-'), db.url), await openCatalog(tmpDir('rewind-cluster-gc-'), db.url)];
    const store = new S3BlobStore({ bucket: swift.bucket, prefix: `${prefix}/`, client: swift.client(), cacheDir: tmpDir('rewind-cluster-cache-'), cacheBytes: MIB });
    try {
      await up.sessions.keepAlive(60_000);
      await sweeper.sessions.keepAlive(60_000);
      const data = randomBytes(4096);
      const sha = createHash('sha256').update(data).digest('hex');
      const w = await store.openWriter(sha, data.length, 0);
      await w.write(data);
      await w.finish();
      await up.blobs.add(sha, data.length);
      const claim = (await up.blobs.claim(sha))!;
      expect(claim).toEqual(expect.any(String));
      expect((await sweep(sweeper, store, 0, 3_600_000)).blobsRemoved).toBe(0);
      expect(await store.has(sha)).toBe(true);
      expect(await sweeper.blobs.has(sha)).toBe(true); // entered again: swept later if still unreferenced
      await up.blobs.release(sha, claim);
      expect((await sweep(sweeper, store, 0, 3_600_000)).blobsRemoved).toBe(1);
      expect(await store.has(sha)).toBe(false);
      expect(await sweeper.blobs.has(sha)).toBe(false);
    } finally {
      await store.close();
      await up.close();
      await sweeper.close();
    }
  });

  it.runIf(engineBuilt)("an agent finishes through B the upload A was killed in, from what the store holds", async () => {
    const work = tmpDir('rewind-cluster-trace-');
    const data = path.join(work, 'data.bin');
    // Big enough that the upload is still going when the store is seen holding two parts, even
    // when that look is slow (a loaded machine: 64 MiB had all gone up by then once).
    const content = randomBytes(192 * MIB);
    fs.writeFileSync(data, content);
    const big = createHash('sha256').update(content).digest('hex');
    const traceDir = path.join(work, 'trace');
    const rec = await rewind(['record', '-o', traceDir, '--', compile('mmap_sum'), data]);
    expect(rec.status, rec.stderr).toBe(0);
    const local = await rewind(['replay', traceDir]);
    expect(local.stdout).toBe(rec.stdout);
    const total = fs.readdirSync(path.join(traceDir, 'blobs')).reduce((n, f) => n + fs.statSync(path.join(traceDir, 'blobs', f)).size, 0);

    const s3 = swift.client();
    const key = `${prefix}/blobs/${big}`;
    // What an upload resumes from: the run of whole parts from part 1. Parts go up several at
    // once, so a part stored after one that A's death cut short is not held: it is sent again.
    const heldBytes = async (): Promise<number> => {
      let best = 0;
      for (const u of (await s3.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: key }))).Uploads ?? []) {
        const parts = ((await s3.send(new ListPartsCommand({ Bucket: swift.bucket, Key: key, UploadId: u.UploadId }))).Parts ?? []).sort(
          (x, y) => (x.PartNumber ?? 0) - (y.PartNumber ?? 0),
        );
        let run = 0;
        while (run < parts.length && parts[run]!.PartNumber === run + 1 && parts[run]!.Size === parts[0]!.Size) run++;
        best = Math.max(best, run * (parts[0]?.Size ?? 0));
      }
      return best;
    };
    const receivedByB = async (): Promise<number> => {
      const c = connect({ server: b.address, token: b.adminToken, tls: false });
      try {
        return Number((await call(c, c.catalog.getStats.bind(c.catalog), {})).blobBytesReceived);
      } finally {
        c.close();
      }
    };
    const before = await ids(b);
    const receivedBefore = await receivedByB();

    // The agent knows both servers and talks to A, the first, until A goes away.
    const spool = tmpDir('rewind-cluster-spool-');
    const agent = startAgent(`${a.address},${b.address}`, await agentToken('agent-failover'), spool, 'failover-host');
    fs.renameSync(traceDir, path.join(spool, 'trace'));
    await until('the store to hold two parts of the big blob', async () => (await heldBytes()) >= 16 * MIB, 60_000);
    await a.stop('SIGKILL');
    const held = await heldBytes();
    expect(held).toBeLessThan(content.length);

    await until('the trace to be listed through B', async () => (await ids(b)).length > before.length, 120_000);
    const added = (await ids(b)).filter((id) => !before.includes(id));
    expect(added, agent.log()).toHaveLength(1);
    const id = added[0]!;
    expect(agent.log()).toMatch(/upload interrupted; retrying/);
    // What the store held when A died was not sent again.
    const sentToB = (await receivedByB()) - receivedBefore;
    expect(sentToB, `B received ${sentToB} of ${total} bytes; the store held ${held}`).toBeLessThanOrEqual(total - held);
    const stored = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: swift.bucket, Key: key }))).Body!.transformToByteArray());
    expect(createHash('sha256').update(stored).digest('hex')).toBe(big);
    s3.destroy();

    // A comes back on its data directory; each server lists the trace once and replays it.
    a = await spawnServer(dirA, '127.0.0.1:0', serverArgs(), serverEnv());
    for (const srv of [a, b]) {
      expect((await ids(srv)).filter((t) => t === id)).toHaveLength(1);
      const remote = await rewind(['replay', id], { REWIND_SERVER: srv.address, REWIND_TOKEN: srv.adminToken });
      expect(remote.status, remote.stderr).toBe(0);
      expect(remote.stdout).toBe(local.stdout);
      expect(remote.stderr).toBe(local.stderr);
    }
  }, 300_000);

  it.runIf(engineBuilt)('a job created on B is taken exactly once by an agent connected to A', async () => {
    const agent = startAgent(a.address, await agentToken('agent-pghost'), tmpDir('rewind-cluster-spool-'), 'pghost');
    // B sees the host A registered.
    await until('the host to register through A and show on B', async () => {
      const r = await rewind(['hosts', '--json'], { REWIND_SERVER: b.address, REWIND_TOKEN: b.adminToken });
      return r.status === 0 && (JSON.parse(r.stdout) as { hostname: string; online: boolean }[]).some((h) => h.hostname === 'pghost' && h.online);
    });
    const before = await ids(a);
    const traceId = await recordOn('pghost', ['/bin/echo', 'recorded on A, asked on B'], { server: b.address, token: b.adminToken, timeoutMs: 120_000 });
    const jobs = agent.log().split('\n').filter((l) => /"msg":"job"/.test(l));
    expect(jobs.length, agent.log()).toBe(1);
    const added = (await ids(a)).filter((id) => !before.includes(id));
    expect(added).toEqual([traceId]);
    expect((await ids(b)).filter((id) => !before.includes(id))).toEqual([traceId]);
    const show = await rewind(['show', traceId], { REWIND_SERVER: b.address, REWIND_TOKEN: b.adminToken });
    expect(show.stdout).toContain('recorded on A, asked on B');
  });

  it.runIf(engineBuilt)('a sweep on one server while another commits a trace naming its orphans: the blobs survive and the trace replays', async () => {
    const traceDir = path.join(tmpDir('rewind-cluster-gc-trace-'), 't');
    const rec = await rewind(['record', '-o', traceDir, '--', '/bin/echo', 'committed under a sweep']);
    expect(rec.status, rec.stderr).toBe(0);
    const blobFiles = fs.readdirSync(path.join(traceDir, 'blobs')).map((sha) => ({ sha, file: path.join(traceDir, 'blobs', sha) }));
    // The sweeping server's catalogue and the store, in this process; B takes the commits.
    const sweeper = await openCatalog(tmpDir('rewind-cluster-sweeper-'), db.url);
    const store = new S3BlobStore({ bucket: swift.bucket, prefix: `${prefix}/`, client: swift.client(), cacheDir: tmpDir('rewind-cluster-cache-'), cacheBytes: MIB });
    const pgc = new pg.Client({ connectionString: db.url });
    await pgc.connect();
    const s3 = swift.client();
    const tok = await agentToken('agent-sweep-race');
    const cb = connect({ server: b.address, token: tok, tls: false });
    const admin = { REWIND_SERVER: a.address, REWIND_TOKEN: a.adminToken };
    try {
      await sweeper.sessions.keepAlive(60_000);
      // Each round: the trace's blobs are orphans (stored, not referenced) an hour old, and A sweeps
      // them while B commits the trace: from the start of its upload, or once B said every blob
      // is present (the sweep then races the commit itself).
      for (const when of ['with the upload', 'after prepare', 'after prepare', 'with the upload'] as const) {
        for (const { sha, file } of blobFiles) {
          if (!(await store.has(sha))) {
            const data = fs.readFileSync(file);
            const w = await store.openWriter(sha, data.length, 0);
            await w.write(data);
            await w.finish();
          }
          await sweeper.blobs.add(sha, fs.statSync(file).size);
        }
        await pgc.query('UPDATE blobs SET created_ms = 0 WHERE sha256 = ANY($1)', [blobFiles.map((x) => x.sha)]);
        const sweeps: Promise<unknown>[] = [];
        const sweepNow = (): void => void sweeps.push(sweep(sweeper, store, 3_600_000, 3_600_000));
        if (when === 'with the upload') sweepNow();
        let prepared = false;
        const pushed = await pushTrace(cb, traceDir, {
          retries: 20,
          backoffMs: 50,
          maxBackoffMs: 500,
          onProgress: () => {
            if (when === 'after prepare' && !prepared) sweepNow();
            prepared = true;
          },
        });
        await Promise.all(sweeps);
        expect(pushed.created, when).toBe(true);
        expect((await ids(a)).filter((id) => id === pushed.traceId), when).toHaveLength(1);
        // Every blob is in the catalogue, counted once per trace naming it, and stored intact.
        for (const { sha, file } of blobFiles) {
          const r = await pgc.query<{ refcount: string; refs: string }>(
            'SELECT refcount, (SELECT COUNT(DISTINCT trace_id) FROM trace_blobs WHERE sha256 = $1) AS refs FROM blobs WHERE sha256 = $1',
            [sha],
          );
          expect(r.rows, `${when}: blob ${sha}`).toHaveLength(1);
          expect(Number(r.rows[0]!.refcount), `${when}: blob ${sha}`).toBe(Number(r.rows[0]!.refs));
          const body = Buffer.from(await (await s3.send(new GetObjectCommand({ Bucket: swift.bucket, Key: `${prefix}/blobs/${sha}` }))).Body!.transformToByteArray());
          expect(createHash('sha256').update(body).digest('hex'), `${when}: blob ${sha}`).toBe(sha);
          expect(body.length).toBe(fs.statSync(file).size);
        }
        const replay = await rewind(['replay', pushed.traceId], admin);
        expect(replay.status, `${when}: ${replay.stderr}`).toBe(0);
        expect(replay.stdout).toBe(rec.stdout);
        // The next round starts again from orphans.
        const rm = await rewind(['rm', pushed.traceId], admin);
        expect(rm.status, rm.stderr).toBe(0);
      }
    } finally {
      cb.close();
      s3.destroy();
      await pgc.end();
      await store.close();
      await sweeper.close();
    }
  }, 300_000);

  it.runIf(engineBuilt)("`rewind server migrate` moves a single-machine server's tokens, traces and blobs into the shared stores", async () => {
    const dir = tmpDir('rewind-cluster-single-');
    const single = await spawnServer(dir);
    const admin = { REWIND_SERVER: single.address, REWIND_TOKEN: single.adminToken };
    const reader = await rewind(['token', 'create', '--role', 'reader', '--name', 'old-reader'], admin);
    expect(reader.status, reader.stderr).toBe(0);
    const traceDir = path.join(tmpDir('rewind-cluster-old-trace-'), 't');
    const rec = await rewind(['record', '-o', traceDir, '--', '/bin/echo', 'kept on one machine, then moved']);
    expect(rec.status, rec.stderr).toBe(0);
    const pushed = await rewind(['push', traceDir, '--label', 'moved=yes'], admin);
    expect(pushed.status, pushed.stderr).toBe(0);
    const id = pushed.stdout.trim();
    const lsOld = await rewind(['ls', '--json'], { ...admin, REWIND_TOKEN: reader.stdout.trim() });
    await single.stop();

    const migrateArgs = ['server', 'migrate', '--from', dir, '--catalog', db.url, '--blobs', `s3://${swift.bucket}/${prefix}`, '--json'];
    const first = await rewind(migrateArgs, swift.env);
    expect(first.status, first.stderr).toBe(0);
    const s1 = JSON.parse(first.stdout) as { blobs: { total: number; copied: number }; tokens: { total: number; added: number }; traces: { total: number; added: number } };
    expect(s1.traces).toEqual({ total: 1, added: 1 });
    expect(s1.tokens).toEqual({ total: 2, added: 2 });
    expect(s1.blobs.total).toBeGreaterThan(0);
    // Run again: everything is there already.
    const again = await rewind(migrateArgs, swift.env);
    expect(again.status, again.stderr).toBe(0);
    const s2 = JSON.parse(again.stdout) as typeof s1;
    expect(s2.traces.added + s2.tokens.added + s2.blobs.copied).toBe(0);

    // The old reader token works on the cluster; the trace lists as it did, and replays.
    const env = { REWIND_SERVER: b.address, REWIND_TOKEN: reader.stdout.trim() };
    const lsNew = await rewind(['ls', '--json', '--label', 'moved=yes'], env);
    expect(lsNew.status, lsNew.stderr).toBe(0);
    expect(JSON.parse(lsNew.stdout)).toEqual(JSON.parse(lsOld.stdout));
    const replay = await rewind(['replay', id], env);
    expect(replay.status, replay.stderr).toBe(0);
    expect(replay.stdout).toBe(rec.stdout);
    const bad = await rewind(['server', 'migrate', '--from', tmpDir('rewind-cluster-empty-'), '--catalog', db.url]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/has no catalog\.sqlite: not the data directory of a rewind server/);
  }, 300_000);
});
