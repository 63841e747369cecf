// Blob claims of servers that die (issue 15): a server SIGKILLed in the middle of an upload
// leaves its claim on the blob in the catalogue. Restarted on its data directory, it takes the
// claim over at start, and the agent's resume goes on at once (never told the blob is held). A
// claim of a server that never comes back holds the blob until that server's lease runs out, no
// longer: the push waits for it (other blobs are sent meanwhile; waiting is not a failure) and
// then finishes. A live server renewing its lease keeps its claim however long the push waits.
import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, connect } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { openCatalog, type Catalog } from '../../server/catalog/catalog.js';
import { isGone, readPreviousServer } from '../../server/previous.js';
import { freshDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { spawnServer, type ServerProcess } from './cli.js';
import { makeTrace, tmpDir, until } from './helpers.js';

const MIB = 1 << 20;
const servers: ServerProcess[] = [];

afterAll(async () => {
  for (const s of servers) await s.stop('SIGKILL');
});

const agentSecret = async (srv: ServerProcess): Promise<string> => {
  const c = connect({ server: srv.address, token: srv.adminToken, tls: false });
  try {
    return (await call(c, c.tokens.createToken.bind(c.tokens), { role: 1, name: `agent-${randomBytes(3).toString('hex')}` })).secret;
  } finally {
    c.close();
  }
};

const claimsIn = (dataDir: string): { sha256: string; server_id: string }[] => {
  const db = new Database(path.join(dataDir, 'catalog.sqlite'), { readonly: true });
  try {
    return db.prepare('SELECT sha256, server_id FROM blob_claims').all() as { sha256: string; server_id: string }[];
  } finally {
    db.close();
  }
};

describe('the previous server on a data directory', () => {
  it('is gone when its process is this one or no longer exists; one of another host, or alive, may still run', async () => {
    const dir = tmpDir('rewind-previous-');
    expect(readPreviousServer(dir)).toBeUndefined();
    fs.writeFileSync(path.join(dir, 'server.json'), '{"id": 5}');
    expect(readPreviousServer(dir)).toBeUndefined();
    const host = os.hostname();
    const exited = spawn('/bin/true');
    const deadPid = await new Promise<number>((resolve) => exited.on('exit', () => resolve(exited.pid!)));
    expect(isGone({ id: 'x', host, pid: process.pid })).toBe(true);
    expect(isGone({ id: 'x', host, pid: deadPid })).toBe(true);
    expect(isGone({ id: 'x', host, pid: process.ppid })).toBe(false);
    expect(isGone({ id: 'x', host: `not-${host}`, pid: deadPid })).toBe(false);
  });
});

describe('a server killed (SIGKILL) in the middle of an upload, restarted on its data directory', () => {
  it('takes over its claim at start: the resume is never refused as held, and finishes at once', async () => {
    const dataDir = tmpDir('rewind-claims-restart-');
    const first = await spawnServer(dataDir);
    servers.push(first);
    const firstId = readPreviousServer(dataDir)!.id;
    const secret = await agentSecret(first);
    const big = randomBytes(48 * MIB);
    const t = makeTrace({ blobs: [{ data: randomBytes(4096), role: 'events' }, { data: big, role: 'snapshot' }] });
    const bigSha = t.blobs[1]!.sha256;

    let claimsAtKill: { sha256: string; server_id: string }[] = [];
    let restartedAt = 0;
    let restarted: Promise<ServerProcess> | undefined;
    const waits: string[][] = [];
    const c = connect({ server: first.address, token: secret, tls: false });
    const res = await pushTrace(c, t.dir, {
      parallel: 1,
      chunkSize: 256 << 10,
      retries: 40,
      backoffMs: 100,
      maxBackoffMs: 500,
      onWait: (w) => waits.push(w.blobs),
      onProgress: (p) => {
        if (!restarted && p.sent >= 16 * MIB) {
          restarted = first.stop('SIGKILL').then(async () => {
            claimsAtKill = claimsIn(dataDir);
            const second = await spawnServer(dataDir, first.address);
            restartedAt = Date.now();
            servers.push(second);
            return second;
          });
        }
      },
    });
    const doneAt = Date.now();
    c.close();
    expect(restarted, 'the server was killed during the upload').toBeDefined();
    const second = await restarted!;
    // The killed server held the blob, as the regression had it; the restarted one let it go.
    expect(claimsAtKill).toEqual([{ sha256: bigSha, server_id: firstId }]);
    expect(second.logs.some((l) => l.includes('took over the blob claims of the previous server on this data directory') && l.includes(firstId))).toBe(true);
    expect(res.created).toBe(true);
    expect(waits, 'the resume was refused as held by another upload').toEqual([]);
    // Well within the 30-second lease the dead server's claim would otherwise have held it.
    expect(doneAt - restartedAt).toBeLessThan(15_000);
    expect(claimsIn(dataDir)).toEqual([]);
    const stored = path.join(dataDir, 'blobs', bigSha.slice(0, 2), bigSha.slice(2, 4), bigSha);
    expect(fs.readFileSync(stored).equals(big)).toBe(true);
  }, 120_000);
});

describe.runIf(postgresAvailable())('the claim of another server on one PostgreSQL catalogue', () => {
  let db: TestDatabase;
  let srv: ServerProcess;
  let secret: string;
  const others: Catalog[] = [];
  beforeAll(async () => {
    db = await freshDatabase();
    srv = await spawnServer(tmpDir('rewind-claims-pg-'), '127.0.0.1:0', ['--catalog', db.url]);
    servers.push(srv);
    secret = await agentSecret(srv);
  }, 60_000);
  afterAll(async () => {
    for (const o of others) await o.close();
    await srv?.stop();
    await db?.drop();
  });

  /** Another server on the catalogue (in this process) that holds a claim on a blob of a fresh trace. */
  const holder = async (leaseMs: number): Promise<{ other: Catalog; claim: string; sha: string; dir: string; leaseFrom: number }> => {
    const other = await openCatalog(tmpDir('rewind-claims-other-'), db.url);
    others.push(other);
    const t = makeTrace({ blobs: [{ data: randomBytes(64 * 1024), role: 'events' }, { data: randomBytes(4 * MIB), role: 'snapshot' }] });
    const sha = t.blobs[1]!.sha256;
    const leaseFrom = Date.now();
    await other.sessions.keepAlive(leaseMs);
    const claim = await other.blobs.claim(sha);
    expect(claim).toEqual(expect.any(String));
    return { other, claim: claim!, sha, dir: t.dir, leaseFrom };
  };

  it('of a server that never comes back frees when its lease runs out: the push waits (not a failure), then finishes', async () => {
    const LEASE = 3000;
    const h = await holder(LEASE); // it never renews: killed, and not restarted
    const waits: { blobs: string[]; waitedMs: number }[] = [];
    const c = connect({ server: srv.address, token: secret, tls: false });
    try {
      const res = await pushTrace(c, h.dir, { retries: 0, backoffMs: 100, maxBackoffMs: 500, onWait: (w) => waits.push(w) });
      const doneAt = Date.now();
      expect(res.created).toBe(true);
      expect(waits.length).toBeGreaterThan(0);
      // Only the claimed blob waited; the other was sent meanwhile.
      expect(new Set(waits.flatMap((w) => w.blobs))).toEqual(new Set([h.sha]));
      // Held until the lease ran out, and taken within the push's backoff (and the upload) after.
      expect(doneAt).toBeGreaterThan(h.leaseFrom + LEASE);
      expect(doneAt - (h.leaseFrom + LEASE)).toBeLessThan(5000);
    } finally {
      c.close();
    }
  }, 60_000);

  it('of a live server, renewing its lease, holds however long the push waits; released, the push finishes at once', async () => {
    const LEASE = 2000;
    const h = await holder(LEASE);
    const renew = setInterval(() => void h.other.sessions.keepAlive(LEASE), LEASE / 4);
    const waits: { waitedMs: number }[] = [];
    const c = connect({ server: srv.address, token: secret, tls: false });
    try {
      let settled = false;
      const push = pushTrace(c, h.dir, { retries: 0, backoffMs: 100, maxBackoffMs: 500, onWait: (w) => waits.push(w) }).finally(() => (settled = true));
      await until('the push to have waited three lease terms', () => (waits.at(-1)?.waitedMs ?? 0) > 3 * LEASE, 30_000);
      expect(settled).toBe(false);
      await h.other.blobs.release(h.sha, h.claim);
      const releasedAt = Date.now();
      const res = await push;
      expect(res.created).toBe(true);
      expect(Date.now() - releasedAt).toBeLessThan(3000);
    } finally {
      clearInterval(renew);
      c.close();
    }
  }, 60_000);
});
