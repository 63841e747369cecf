// End to end with the real engine: record with the CLI, push, list, show, replay remotely in a
// server worker, and compare with a local replay. Skipped when the native engine is not built.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, connect } from '../../remote/client.js';
import { REPO, tmpDir } from './helpers.js';
import { rewind, spawnServer, type ServerProcess } from './cli.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));

describe.skipIf(!engineBuilt)('record, push, ls, show, remote replay (real engine)', () => {
  let srv: ServerProcess;
  let env: Record<string, string>;
  let agentEnv: Record<string, string>;
  let exe: string;
  const work = tmpDir('rewind-e2e-');

  beforeAll(async () => {
    exe = path.join(work, 'abort');
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(REPO, 'test/fixtures/abort.c')], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    srv = await spawnServer(tmpDir('rewind-e2e-server-'));
    env = { REWIND_SERVER: srv.address, REWIND_TOKEN: srv.adminToken };
    const a = await rewind(['token', 'create', '--role', 'agent'], env);
    agentEnv = { REWIND_SERVER: srv.address, REWIND_TOKEN: a.stdout.trim() };
  });
  afterAll(async () => {
    await srv?.stop();
  });

  it('replays remotely byte for byte like locally; the second upload of the same program is deduplicated', async () => {
    const d1 = path.join(work, 't1');
    const d2 = path.join(work, 't2');
    const r1 = await rewind(['record', '-o', d1, '--', exe]);
    expect(r1.status, r1.stderr).toBe(134);
    const r2 = await rewind(['record', '-o', d2, '--', exe]);
    expect(r2.status, r2.stderr).toBe(134);

    const stats = async (): Promise<bigint> => {
      const c = connect({ server: srv.address, token: srv.adminToken, tls: false });
      try {
        return (await call(c, c.catalog.getStats.bind(c.catalog), {})).bytesReceived;
      } finally {
        c.close();
      }
    };
    const s0 = await stats();
    const p1 = await rewind(['push', d1, '--label', 'suite=e2e'], agentEnv);
    expect(p1.status, p1.stderr).toBe(0);
    const s1 = await stats();
    const p2 = await rewind(['push', d2], agentEnv);
    expect(p2.status, p2.stderr).toBe(0);
    const s2 = await stats();
    const first = Number(s1 - s0);
    const second = Number(s2 - s1);
    expect(first).toBeGreaterThan(0);
    expect(second / first, `first ${first} B, second ${second} B`).toBeLessThan(0.05);

    const id = p1.stdout.trim();
    const ls = await rewind(['ls', '--json', '--signal', 'SIGABRT', '--label', 'suite=e2e'], env);
    expect((JSON.parse(ls.stdout) as { id: string }[]).map((t) => t.id)).toEqual([id]);
    const show = await rewind(['show', id], env);
    expect(show.stdout).toMatch(/exit\s+134 \(SIGABRT\)/);
    const recorded = JSON.parse(fs.readFileSync(path.join(d1, 'manifest.json'), 'utf8')) as { processes?: unknown[] };
    if (recorded.processes) expect(show.stdout).toMatch(/process tree\n\s+pid \d+/);

    const local = await rewind(['replay', d1]);
    const remote = await rewind(['replay', id], env);
    expect(remote.status, remote.stderr).toBe(134);
    expect(remote.status).toBe(local.status);
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stderr).toBe(local.stderr);
    expect(remote.stdout).toBe('about to abort\n');
    expect(remote.stderr).toBe('goodbye from stderr\n');
  });
});
