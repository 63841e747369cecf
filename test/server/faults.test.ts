import Database from 'better-sqlite3';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { call, connect } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import { makeTrace, sha256, tmpDir } from './helpers.js';
import { spawnServer, type ServerProcess } from './cli.js';

const servers: ServerProcess[] = [];

afterAll(async () => {
  for (const s of servers) await s.stop('SIGKILL');
});

describe('kill -9 of the server in the middle of an upload', () => {
  it('resumes from what was stored, commits once, byte-identical, never lists a half trace', async () => {
    const dataDir = tmpDir('rewind-fault-');
    const first = await spawnServer(dataDir);
    servers.push(first);
    const agentSecret = await (async () => {
      const c = connect({ server: first.address, token: first.adminToken, tls: false });
      try {
        const r = await call(c, c.tokens.createToken.bind(c.tokens), { role: 1, name: 'agent' });
        return r.secret;
      } finally {
        c.close();
      }
    })();

    const big = randomBytes(48 << 20);
    const t = makeTrace({ blobs: [{ data: randomBytes(4096), role: 'events' }, { data: big, role: 'snapshot' }] });
    const bigSha = sha256(big);
    const partial = path.join(dataDir, 'blobs', '.partial', bigSha);

    let heldAtRestart = -1;
    let smallMissingAtRestart = -1;
    let listedWhileDown = -1;
    let restarted: Promise<ServerProcess> | undefined;
    const c = connect({ server: first.address, token: agentSecret, tls: false });
    const res = await pushTrace(c, t.dir, {
      // One blob at a time: the small one (listed first) is stored before the big one starts.
      parallel: 1,
      chunkSize: 256 << 10,
      retries: 40,
      backoffMs: 100,
      maxBackoffMs: 500,
      onProgress: (p) => {
        if (!restarted && p.sent >= 16 << 20) {
          restarted = first.stop('SIGKILL').then(async () => {
            heldAtRestart = fs.existsSync(partial) ? fs.statSync(partial).size : 0;
            const small = t.blobs.find((b) => b.role === 'events')!;
            const smallPartial = path.join(dataDir, 'blobs', '.partial', small.sha256);
            const smallStored = path.join(dataDir, 'blobs', small.sha256.slice(0, 2), small.sha256.slice(2, 4), small.sha256);
            const smallInCatalog = (() => {
              const db = new Database(path.join(dataDir, 'catalog.sqlite'), { readonly: true });
              try {
                return db.prepare('SELECT 1 FROM blobs WHERE sha256 = ?').get(small.sha256) !== undefined;
              } finally {
                db.close();
              }
            })();
            smallMissingAtRestart = smallInCatalog && fs.existsSync(smallStored) ? 0 : small.size - (fs.existsSync(smallPartial) ? fs.statSync(smallPartial).size : 0);
            const db = new Database(path.join(dataDir, 'catalog.sqlite'), { readonly: true });
            listedWhileDown = (db.prepare('SELECT COUNT(*) AS n FROM traces').get() as { n: number }).n;
            db.close();
            const second = await spawnServer(dataDir, first.address);
            servers.push(second);
            return second;
          });
        }
      },
    });
    c.close();
    expect(restarted, 'the server was killed during the upload').toBeDefined();
    const second = await restarted!;
    expect(res.created).toBe(true);
    expect(res.attempts).toBeGreaterThan(1);
    expect(listedWhileDown).toBe(0);
    expect(heldAtRestart).toBeGreaterThan(0);
    expect(heldAtRestart).toBeLessThan(big.length);

    const admin = connect({ server: second.address, token: second.adminToken, tls: false });
    try {
      const stats = await call(admin, admin.catalog.getStats.bind(admin.catalog), {});
      // The restarted server received exactly the bytes it did not hold yet.
      expect(smallMissingAtRestart, 'the small blob, sent first, was stored before the kill').toBe(0);
      expect(Number(stats.bytesReceived)).toBe(big.length - heldAtRestart + smallMissingAtRestart);
      const list = await call(admin, admin.catalog.listTraces.bind(admin.catalog), ListTracesRequest.fromPartial({}));
      expect(list.traces.map((x) => x.id)).toEqual([t.id]);
    } finally {
      admin.close();
    }
    const stored = path.join(dataDir, 'blobs', bigSha.slice(0, 2), bigSha.slice(2, 4), bigSha);
    expect(fs.readFileSync(stored).equals(big)).toBe(true);
    expect(fs.existsSync(partial)).toBe(false);
  });
});
