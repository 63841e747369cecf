// One catalogue suite, run against each backend: SQLite (a file in a temp directory) and
// PostgreSQL (a new database on the server REWIND_TEST_POSTGRES names; test/support/postgres.ts).
// Every test checks what a user would see through the stores: rows listed, jobs handed out,
// sessions ended, and the errors a client gets.
import { createHash, randomUUID } from 'node:crypto';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { openCatalog, type Catalog, type NewTrace, type TokenRow } from '../../server/catalog/catalog.js';
import { LEASE_EXPIRED } from '../../server/catalog/agents.js';
import { SERVER_GONE } from '../../server/catalog/sessions.js';
import { RpcError } from '../../server/errors.js';
import { parseManifest } from '../../trace/manifest.js';
import { freshDatabase, postgresAvailable } from '../support/postgres.js';
import { tmpDir, until } from './helpers.js';

/** A place for a catalogue: each `open()` is another connection (another server) to the same one. */
interface Place {
  open(): Promise<Catalog>;
  drop(): Promise<void>;
}

const BACKENDS: { name: string; available: () => boolean; place: () => Promise<Place> }[] = [
  {
    name: 'sqlite',
    available: () => true,
    place: async () => {
      const file = path.join(tmpDir('rewind-catalog-'), 'catalog.sqlite');
      return { open: () => openCatalog('', file), drop: async () => undefined };
    },
  },
  {
    name: 'postgres',
    available: postgresAvailable,
    place: async () => {
      const db = await freshDatabase();
      return { open: () => openCatalog('', db.url), drop: db.drop };
    },
  },
];

const sha = (s: string): string => createHash('sha256').update(s).digest('hex');

interface Spec {
  argv?: string[];
  exe?: string;
  host?: string;
  status?: number;
  signal?: string | null;
  startMs?: number;
  labels?: Record<string, string>;
  blobs?: { sha256: string; size: number }[];
  user?: string;
  cwd?: string;
  tokenId?: string;
}

function trace(s: Spec = {}): NewTrace {
  const id = randomUUID();
  const json = JSON.stringify({
    format: 'rewind-trace',
    version: 1,
    id,
    argv: s.argv ?? ['ls', '-la'],
    exe: s.exe ?? '/usr/bin/ls',
    cwd: s.cwd ?? '/home/u',
    user: s.user ?? 'u',
    host: { hostname: s.host ?? 'h1' },
    startTime: new Date(s.startMs ?? Date.now()).toISOString(),
    durationMs: 5,
    exit: s.status === -1 ? null : { status: s.status ?? 0, code: s.signal ? null : (s.status ?? 0) & 255, signal: s.signal ?? null },
    complete: true,
    blobs: (s.blobs ?? [{ sha256: sha('events'), size: 10 }]).map((b) => ({ ...b, role: 'events' })),
  });
  return { manifest: parseManifest(json), manifestJson: json, labels: s.labels ?? {}, tokenId: s.tokenId ?? 'tok' };
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return status[err.code];
    throw err;
  }
  throw new Error('expected a failure');
}

for (const backend of BACKENDS) {
  describe.runIf(backend.available())(`catalogue (${backend.name})`, () => {
    const opened: Catalog[] = [];
    const places: Place[] = [];
    afterEach(async () => {
      vi.useRealTimers();
      for (const c of opened.splice(0)) await c.close();
      for (const p of places.splice(0)) await p.drop();
    });
    const fresh = async (): Promise<{ cat: Catalog; other: () => Promise<Catalog> }> => {
      const p = await backend.place();
      places.push(p);
      const open = async (): Promise<Catalog> => {
        const c = await p.open();
        opened.push(c);
        return c;
      };
      return { cat: await open(), other: open };
    };
    /** A catalogue holding the traces given (their blobs stored first); returns their ids in order. */
    const withTraces = async (specs: Spec[]): Promise<{ cat: Catalog; ids: string[] }> => {
      const { cat } = await fresh();
      const ids: string[] = [];
      for (const s of specs) {
        const t = trace(s);
        for (const b of t.manifest.blobs) await cat.blobs.add(b.sha256, b.size);
        expect(await cat.traces.commit(t)).toBe(true);
        ids.push(t.manifest.id);
      }
      return { cat, ids };
    };

    it('opens an existing catalogue again without migrating twice, and keeps its rows', async () => {
      const { cat, other } = await fresh();
      const { token } = await cat.tokens.create('reader', 'r1');
      await cat.close();
      opened.splice(opened.indexOf(cat), 1);
      const again = await other();
      expect((await again.tokens.list()).map((t) => t.id)).toEqual([token.id]);
    });

    it('tokens: created, found by secret, revoked by id, name or secret; an ambiguous name is refused', async () => {
      const { cat } = await fresh();
      const a = await cat.tokens.create('agent', 'ci');
      const b = await cat.tokens.create('reader', '');
      expect(b.token.name).toMatch(/^reader-[0-9a-f]{6}$/);
      expect((await cat.tokens.forSecret(a.secret))?.id).toBe(a.token.id);
      expect(await cat.tokens.forSecret('rwt_nonsense')).toBeUndefined();
      expect((await cat.tokens.revoke('ci')).revokedMs).not.toBeNull();
      expect(await cat.tokens.forSecret(a.secret)).toBeUndefined();
      expect((await cat.tokens.revoke(b.secret)).id).toBe(b.token.id);
      await cat.tokens.create('reader', 'same');
      await cat.tokens.create('reader', 'same');
      expect(await code(cat.tokens.revoke('same'))).toBe('INVALID_ARGUMENT');
      expect(await code(cat.tokens.revoke('nobody'))).toBe('NOT_FOUND');
      expect((await cat.tokens.list()).map((t) => t.name)).toEqual(['ci', b.token.name, 'same', 'same']);
    });

    it('commits a trace only when its blobs are stored at their sizes, once', async () => {
      const { cat } = await fresh();
      const t = trace({ blobs: [{ sha256: sha('a'), size: 3 }, { sha256: sha('b'), size: 4 }] });
      await cat.blobs.add(sha('a'), 3);
      expect(await code(cat.traces.commit(t))).toBe('FAILED_PRECONDITION');
      await cat.blobs.add(sha('b'), 5);
      expect(await code(cat.traces.commit(t))).toBe('INVALID_ARGUMENT');
      expect(await cat.traces.has(t.manifest.id)).toBe(false);
      const { cat: ok } = await fresh();
      await ok.blobs.add(sha('a'), 3);
      await ok.blobs.add(sha('b'), 4);
      expect(await ok.traces.commit(t)).toBe(true);
      expect(await ok.traces.commit(t)).toBe(false);
      const got = await ok.traces.get(t.manifest.id);
      expect(got.manifest).toBe(t.manifestJson);
      expect(got.blobs.map((b) => [b.sha256, b.size, b.role])).toEqual([
        [sha('a'), 3, 'events'],
        [sha('b'), 4, 'events'],
      ]);
      expect(got.trace).toMatchObject({ host: 'h1', program: 'ls', argv: ['ls', '-la'], exitStatus: 0, signal: null, complete: true, sizeBytes: 7 });
      expect(await code(ok.traces.get(randomUUID()))).toBe('NOT_FOUND');
    });

    it('lists newest first, ties by id, and filters by host, program, status, signal, time and labels', async () => {
      const now = Date.now();
      const { cat, ids } = await withTraces([
        { host: 'alpha', exe: '/usr/bin/gcc', argv: ['gcc', '-c', 'x.c'], startMs: now - 5000, labels: { team: 'a' } },
        { host: 'beta', exe: '/usr/bin/python3.11', argv: ['python3', 'x.py'], startMs: now - 4000, status: 1 },
        { host: 'alpha', exe: '/usr/bin/make', argv: ['make'], startMs: now - 3000, status: 139, signal: 'SIGSEGV', labels: { team: 'b' } },
        { host: 'beta', exe: '/usr/bin/ls', argv: ['ls'], startMs: now - 2000, status: -1 },
        { host: 'alpha', exe: '/usr/bin/ls', argv: ['ls'], startMs: now - 2000, labels: { team: 'a', ci: 'yes' } },
      ]);
      const list = async (f: Parameters<Catalog['traces']['list']>[0]): Promise<string[]> => (await cat.traces.list(f)).rows.map((r) => r.id);
      const [gcc, py, make, lsBeta, lsAlpha] = ids as [string, string, string, string, string];
      const tie = [lsBeta, lsAlpha].sort();
      expect(await list({})).toEqual([...tie, make, py, gcc]);
      expect(await list({ host: 'alpha' })).toEqual([lsAlpha, make, gcc]);
      expect(await list({ program: 'ls' })).toEqual(tie);
      // The executable's name or the name it was run as; a path is the executable itself.
      expect(await list({ program: 'python3' })).toEqual([py]);
      expect(await list({ program: 'python3.11' })).toEqual([py]);
      expect(await list({ program: '/usr/bin/gcc' })).toEqual([gcc]);
      expect(await list({ program: '/usr/bin/python3' })).toEqual([]);
      expect(await list({ exitStatus: 1 })).toEqual([py]);
      // Unknown (-1) is not failed.
      expect(await list({ failed: true })).toEqual([make, py]);
      expect(await list({ signal: 'SIGSEGV' })).toEqual([make]);
      expect(await list({ sinceMs: now - 3000 })).toEqual([...tie, make]);
      expect(await list({ untilMs: now - 4000 })).toEqual([py, gcc]);
      expect(await list({ labels: { team: 'a' } })).toEqual([lsAlpha, gcc]);
      expect(await list({ labels: { team: 'a', ci: 'yes' } })).toEqual([lsAlpha]);
      expect(await list({ host: 'alpha', failed: true })).toEqual([make]);
      expect(await list({ limit: 2 })).toEqual(tie);
      const row = (await cat.traces.list({ labels: { ci: 'yes' } })).rows[0]!;
      expect(row.labels).toEqual({ team: 'a', ci: 'yes' });
      expect(row.startMs).toBe(now - 2000);
    });

    it('a page stops at its byte budget and says it was cut short', async () => {
      const big = 'x'.repeat(20_000);
      const { cat } = await withTraces(Array.from({ length: 12 }, (_, i) => ({ argv: ['prog', big], startMs: 1_000_000 + i })));
      const page = await cat.traces.list({ limit: 12, maxBytes: 100_000 });
      expect(page.truncated).toBe(true);
      expect(page.rows.length).toBe(4);
      expect(page.rows.map((r) => r.startMs)).toEqual([1_000_011, 1_000_010, 1_000_009, 1_000_008]);
      const all = await cat.traces.list({ limit: 12 });
      expect(all).toMatchObject({ truncated: false });
      expect(all.rows.length).toBe(12);
      // Past the first read batch of a backend that reads a few rows at a time.
      const many = (await fresh()).cat;
      await many.blobs.add(sha('events'), 10);
      await many.traces.commitMany(Array.from({ length: 450 }, (_, i) => trace({ startMs: 2_000_000 + (i % 7) })));
      const rows = (await many.traces.list({ limit: 10_000 })).rows;
      expect(rows.length).toBe(450);
      expect(new Set(rows.map((r) => r.id)).size).toBe(450);
      const sorted = [...rows].sort((x, y) => y.startMs - x.startMs || (x.id < y.id ? -1 : 1));
      expect(rows.map((r) => r.id)).toEqual(sorted.map((r) => r.id));
    });

    it('full-text search: every word as a prefix, over argv, exe, host, cwd, user and labels', async () => {
      const { cat, ids } = await withTraces([
        { argv: ['gcc', '-O2', 'file42.c'], exe: '/usr/bin/gcc', host: 'build-7', startMs: 3000 },
        { argv: ['python3', 'Überprüfung.py'], exe: '/usr/bin/python3', cwd: '/srv/café', startMs: 2000, labels: { branch: 'feature/login' } },
        { argv: ['make', 'file4', 'c'], user: 'alice', startMs: 1000 },
      ]);
      const [gcc, py, make] = ids as [string, string, string];
      const search = async (text: string): Promise<string[]> => (await cat.traces.list({ search: text })).rows.map((r) => r.id);
      expect(await search('gcc')).toEqual([gcc]);
      expect(await search('file4')).toEqual([gcc, make]);
      expect(await search('file42.c')).toEqual([gcc]);
      // A phrase: "file4 c" is adjacent in make's argv, not in gcc's.
      expect(await search('file4.c')).toEqual([make]);
      expect(await search('usr bin')).toEqual([gcc, py, make]);
      expect(await search('build')).toEqual([gcc]);
      expect(await search('überprüf')).toEqual([py]);
      expect(await search('uberprufung')).toEqual([py]);
      expect(await search('CAFE')).toEqual([py]);
      expect(await search('alice')).toEqual([make]);
      expect(await search('branch=feature/login')).toEqual([py]);
      expect(await search('login python')).toEqual([py]);
      expect(await search('gcc python')).toEqual([]);
      expect(await search('"quoted" gcc')).toEqual([]);
      // A word with no letters or digits matches nothing alone, and is ignored beside others.
      expect(await search('--')).toEqual([]);
      expect(await search('gcc --')).toEqual([gcc]);
      expect(await search('O2 gcc')).toEqual([gcc]);
      expect(await code(cat.traces.list({ search: Array.from({ length: 17 }, (_, i) => `w${i}`).join(' ') }))).toBe('INVALID_ARGUMENT');
      expect(await code(cat.traces.list({ search: 'a\u0001' }))).toBe('INVALID_ARGUMENT');
      expect(await code(cat.traces.list({ search: 'x'.repeat(1025) }))).toBe('INVALID_ARGUMENT');
    });

    it('deletes a trace and frees the blobs no other trace references; stats and quota follow', async () => {
      const shared = { sha256: sha('libc'), size: 1000 };
      const { cat, ids } = await withTraces([
        { blobs: [shared, { sha256: sha('ev1'), size: 10 }], tokenId: 't1' },
        { blobs: [shared, { sha256: sha('ev2'), size: 20 }], tokenId: 't1' },
        { blobs: [{ sha256: sha('ev3'), size: 30 }], tokenId: 't2' },
      ]);
      expect(await cat.traces.stats()).toEqual({ traces: 3, blobs: 4, blobBytes: 1060 });
      expect(await cat.traces.bytesUploadedBy('t1')).toBe(2030);
      expect(await cat.traces.bytesUploadedBy('nobody')).toBe(0);
      expect(await cat.traces.delete(ids[0]!)).toEqual([{ sha256: sha('ev1'), size: 10 }]);
      expect(await cat.blobs.isReferenced(shared.sha256)).toBe(true);
      expect((await cat.traces.delete(ids[1]!)).sort((a, b) => a.size - b.size)).toEqual([
        { sha256: sha('ev2'), size: 20 },
        { sha256: shared.sha256, size: 1000 },
      ]);
      expect(await cat.blobs.has(shared.sha256)).toBe(false);
      expect(await code(cat.traces.delete(ids[1]!))).toBe('NOT_FOUND');
      expect(await cat.traces.stats()).toEqual({ traces: 1, blobs: 1, blobBytes: 30 });
      expect((await cat.traces.list({})).rows.map((r) => r.id)).toEqual([ids[2]]);
      expect(await cat.traces.list({ search: 'ls' })).toMatchObject({ rows: [{ id: ids[2] }] });
    });

    it('orphan blobs (never committed) go to one sweeper once, after their cutoff; referenced ones stay', async () => {
      const { cat, other } = await fresh();
      const second = await other();
      await cat.blobs.add(sha('orphan'), 5);
      await cat.blobs.add(sha('orphan'), 5);
      const t = trace({ blobs: [{ sha256: sha('used'), size: 6 }] });
      await cat.blobs.add(sha('used'), 6);
      await cat.traces.commit(t);
      expect(await cat.blobs.takeOrphans(Date.now() - 60_000)).toEqual([]);
      const taken = await Promise.all([cat.blobs.takeOrphans(Date.now()), second.blobs.takeOrphans(Date.now())]);
      expect(taken.flat()).toEqual([{ sha256: sha('orphan'), size: 5 }]);
      expect(await cat.blobs.has(sha('orphan'))).toBe(false);
      expect(await cat.blobs.isReferenced(sha('used'))).toBe(true);
    });

    it('a blob is claimed by one writer across servers; a claim lapses with its server', async () => {
      const { cat, other } = await fresh();
      const second = await other();
      await cat.sessions.keepAlive(60_000);
      await second.sessions.keepAlive(60_000);
      // Two servers racing for one blob: one claim.
      const raced = await Promise.all([cat.blobs.claim(sha('raced')), second.blobs.claim(sha('raced'))]);
      expect(raced.filter((c) => c !== undefined)).toHaveLength(1);
      const mine = (await cat.blobs.claim(sha('b')))!;
      expect(mine).toEqual(expect.any(String));
      expect(await second.blobs.claim(sha('b'))).toBeUndefined();
      expect(await cat.blobs.claim(sha('b'))).toBeUndefined(); // one writer on one server too
      await second.blobs.release(sha('b'), 'not-the-claim');
      expect(await second.blobs.claim(sha('b'))).toBeUndefined();
      await cat.blobs.release(sha('b'), mine);
      const theirs = await second.blobs.claim(sha('b'));
      expect(theirs).toEqual(expect.any(String));
      // The second server goes away (its lease runs out): its claim no longer holds the blob.
      await second.sessions.keepAlive(1);
      await until('the claim of a server whose lease ran out to lapse', async () => (await cat.blobs.claim(sha('b'))) !== undefined, 10_000);
    });

    it('a server retired (the one killed before a restart on its data directory) frees its claims at once; a lapsed lease takes its claims along', async () => {
      const { cat, other } = await fresh();
      const dead = await other();
      await cat.sessions.keepAlive(60_000);
      await dead.sessions.keepAlive(60_000);
      await dead.sessions.start('s-dead', 't', 'tok');
      expect(await dead.blobs.claim(sha('held'))).toEqual(expect.any(String));
      expect(await dead.blobs.claim(sha('held2'))).toEqual(expect.any(String));
      expect(await cat.blobs.claim(sha('held'))).toBeUndefined();
      // Its lease has a minute to run; retired, it holds nothing any more.
      expect(await cat.sessions.retire(dead.serverId)).toEqual({ claims: 2 });
      expect(await cat.sessions.retire(dead.serverId)).toEqual({ claims: 0 });
      await expect(cat.sessions.retire(cat.serverId)).rejects.toThrow(/cannot retire itself/);
      expect(await cat.blobs.claim(sha('held'))).toEqual(expect.any(String));
      expect(await cat.sessions.keepAlive(60_000)).toBe(1);
      expect((await cat.sessions.get('s-dead'))?.error).toBe('the server running this session went away');
      // A server whose lease runs out: a keepAlive after that drops it, and its claims with it.
      const gone = await other();
      await gone.sessions.keepAlive(1);
      expect(await gone.blobs.claim(sha('lapsing'))).toEqual(expect.any(String));
      await until('its lease to run out, and a keepAlive to drop its claim', async () => {
        await cat.sessions.keepAlive(60_000);
        return (await cat.blobs.claim(sha('lapsing'))) !== undefined;
      }, 10_000);
    });

    it('commits many traces in one call, skipping those already there', async () => {
      const { cat } = await fresh();
      await cat.blobs.add(sha('events'), 10);
      const ts = Array.from({ length: 50 }, (_, i) => trace({ startMs: 1000 + i, labels: { n: String(i) } }));
      expect(await cat.traces.commitMany(ts.slice(0, 20))).toBe(20);
      expect(await cat.traces.commitMany(ts)).toBe(30);
      expect((await cat.traces.stats()).traces).toBe(50);
      expect((await cat.traces.list({ labels: { n: '7' } })).rows.map((r) => r.id)).toEqual([ts[7]!.manifest.id]);
      expect(await cat.traces.delete(ts[0]!.manifest.id)).toEqual([]);
    });

    describe('agents and jobs', () => {
      const hostOf = async (cat: Catalog, hostname: string): Promise<{ token: TokenRow; agentId: string }> => {
        const { token } = await cat.tokens.create('agent', `agent-${hostname}`);
        const a = await cat.agents.register(hostname, '{}', token);
        return { token, agentId: a.id };
      };

      it('a host belongs to the token that registered it; a token to one host', async () => {
        const { cat } = await fresh();
        const { token, agentId } = await hostOf(cat, 'web1');
        const again = await cat.agents.register('web1', '{"k":1}', token);
        expect(again.id).toBe(agentId);
        expect(again.facts).toBe('{"k":1}');
        const other = (await cat.tokens.create('agent', 'x')).token;
        expect(await code(cat.agents.register('web1', '{}', other))).toBe('PERMISSION_DENIED');
        expect(await code(cat.agents.register('web2', '{}', token))).toBe('PERMISSION_DENIED');
        expect(await code(cat.agents.heartbeat(agentId, other, 60_000))).toBe('PERMISSION_DENIED');
        expect(await code(cat.agents.heartbeat(randomUUID(), token, 60_000))).toBe('NOT_FOUND');
        const admin = (await cat.tokens.create('admin', 'adm')).token;
        await cat.agents.register('web1', '{}', admin);
        // The admin kept the host's owner.
        expect(await code(cat.agents.register('web1', '{}', other))).toBe('PERMISSION_DENIED');
        await cat.tokens.revoke(token.id);
        expect((await cat.agents.register('web1', '{}', other)).id).toBe(agentId);
        expect((await cat.agents.list()).map((a) => a.hostname)).toEqual(['web1']);
        expect((await cat.agents.get(agentId))?.hostname).toBe('web1');
      });

      it('a job goes to its host at the next heartbeat, once, and completes with a trace that host uploaded', async () => {
        const { cat } = await fresh();
        const { token, agentId } = await hostOf(cat, 'ci1');
        expect(await cat.agents.heartbeat(agentId, token, 60_000)).toEqual([]);
        const j1 = await cat.agents.createJob('ci1', ['make', 'test'], { why: 'x' });
        const j2 = await cat.agents.createJob('ci1', ['true'], {});
        await cat.agents.createJob('elsewhere', ['true'], {});
        const got = await cat.agents.heartbeat(agentId, token, 60_000);
        expect(got.map((j) => [j.id, j.state, j.argv, j.labels])).toEqual([
          [j1.id, 'running', ['make', 'test'], { why: 'x' }],
          [j2.id, 'running', ['true'], {}],
        ]);
        expect(await cat.agents.heartbeat(agentId, token, 60_000)).toEqual([]);
        const t = trace({ tokenId: token.id });
        await cat.blobs.add(sha('events'), 10);
        await cat.traces.commit(t);
        const stranger = trace({ tokenId: 'someone-else' });
        await cat.traces.commit(stranger);
        expect(await code(cat.agents.completeJob(j1.id, stranger.manifest.id, '', token))).toBe('PERMISSION_DENIED');
        expect(await code(cat.agents.completeJob(j1.id, randomUUID(), '', token))).toBe('NOT_FOUND');
        await cat.agents.completeJob(j1.id, t.manifest.id, '', token);
        await cat.agents.completeJob(j2.id, '', 'no such program', token);
        expect(await code(cat.agents.completeJob(j1.id, t.manifest.id, '', token))).toBe('FAILED_PRECONDITION');
        expect(await cat.agents.getJob(j1.id)).toMatchObject({ state: 'done', traceId: t.manifest.id, error: '' });
        expect(await cat.agents.getJob(j2.id)).toMatchObject({ state: 'failed', error: 'no such program' });
        expect(await cat.agents.getJob(randomUUID())).toBeUndefined();
      });

      it('jobs created within one millisecond come to their host in the order they were created', async () => {
        const { cat } = await fresh();
        const { token, agentId } = await hostOf(cat, 'burst');
        const jobs = [];
        for (let i = 0; i < 50; i++) jobs.push(await cat.agents.createJob('burst', ['echo', String(i)], {}));
        const got = await cat.agents.heartbeat(agentId, token, 60_000);
        expect(got.map((j) => j.argv[1])).toEqual(jobs.map((j) => j.argv[1]));
      });

      it('two servers racing heartbeats hand each job out exactly once', async () => {
        const { cat, other } = await fresh();
        const second = await other();
        const { token, agentId } = await hostOf(cat, 'racer');
        const jobs = await Promise.all(Array.from({ length: 40 }, (_, i) => second.agents.createJob('racer', ['echo', String(i)], {})));
        const beats = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? cat : second).agents.heartbeat(agentId, token, 60_000)));
        const taken = beats.flat().map((j) => j.id);
        expect(taken.sort()).toEqual(jobs.map((j) => j.id).sort());
      });

      it('a job whose agent stops heartbeating fails when its lease runs out; a live agent keeps its jobs', async () => {
        const { cat } = await fresh();
        const { token, agentId } = await hostOf(cat, 'flaky');
        // Leases are compared with Date.now(): the test moves that clock, so a loaded machine's
        // late timers cannot expire a lease the agent renewed in time.
        vi.useFakeTimers({ toFake: ['Date'], now: Date.now() });
        const job = await cat.agents.createJob('flaky', ['sleep', '1000'], {});
        expect((await cat.agents.heartbeat(agentId, token, 400)).map((j) => j.id)).toEqual([job.id]);
        // Renewed: the agent is alive, and a lease is from its last heartbeat.
        for (let i = 0; i < 3; i++) {
          vi.setSystemTime(Date.now() + 300);
          await cat.agents.heartbeat(agentId, token, 400);
        }
        vi.setSystemTime(Date.now() + 350);
        expect((await cat.agents.getJob(job.id))?.state).toBe('running');
        vi.setSystemTime(Date.now() + 100);
        expect(await cat.agents.getJob(job.id)).toMatchObject({ state: 'failed', error: LEASE_EXPIRED });
        expect(await code(cat.agents.completeJob(job.id, '', 'late', token))).toBe('FAILED_PRECONDITION');
      });
    });

    it('sessions: a server ends its own; those of a server that went away end when its lease runs out', async () => {
      const { cat, other } = await fresh();
      const second = await other();
      vi.useFakeTimers({ toFake: ['Date'], now: Date.now() }); // leases follow Date.now(), moved here
      await cat.sessions.keepAlive(300);
      await second.sessions.keepAlive(60_000);
      const ours = randomUUID();
      const theirs = randomUUID();
      await second.sessions.start(ours, 'trace-1', 'tok');
      await cat.sessions.start(theirs, 'trace-2', 'tok');
      await second.sessions.end(ours, 0, '');
      expect(await second.sessions.get(ours)).toMatchObject({ exitStatus: 0, error: '', serverId: second.serverId });
      // The first server stops renewing (killed); the second notices once the lease ran out.
      expect(await second.sessions.keepAlive(60_000)).toBe(0);
      vi.setSystemTime(Date.now() + 350);
      expect(await second.sessions.keepAlive(60_000)).toBe(1);
      expect(await second.sessions.get(theirs)).toMatchObject({ error: SERVER_GONE, exitStatus: null, serverId: cat.serverId });
      expect((await second.sessions.get(theirs))?.endedMs).not.toBeNull();
      expect(await second.sessions.keepAlive(60_000)).toBe(0);
    });

    it('meta: a key is set once, by one of several servers', async () => {
      const { cat, other } = await fresh();
      const second = await other();
      const wins = await Promise.all([cat.meta.setOnce('k', 'a'), second.meta.setOnce('k', 'b')]);
      expect(wins.filter(Boolean).length).toBe(1);
      expect(await second.meta.get('k')).toBe(wins[0] ? 'a' : 'b');
      expect(await cat.meta.get('missing')).toBeUndefined();
    });
  });
}
