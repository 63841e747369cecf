// Two `rewind server` processes on one PostgreSQL catalogue (issue 15): a recording job created
// on server B is taken exactly once by an agent connected to server A, and both servers list the
// same traces, whichever took the upload. (Blobs stay on each server's disk here; the S3 store
// shared by both is tested with it end to end elsewhere.)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordOn } from '../../remote/record.js';
import { pushTrace } from '../../remote/upload.js';
import { connect } from '../../remote/client.js';
import { CLI } from '../support/paths.js';
import { freshDatabase, postgresAvailable, type TestDatabase } from '../support/postgres.js';
import { cleanEnv, rewind, spawnServer, type ServerProcess } from './cli.js';
import { makeTrace, REPO, tmpDir, until } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));

describe.runIf(postgresAvailable())('two servers on one PostgreSQL catalogue', () => {
  let db: TestDatabase;
  let a: ServerProcess;
  let b: ServerProcess;
  let agentProc: ChildProcess | undefined;
  let agentLog = '';
  const spool = tmpDir('rewind-pg-spool-');

  beforeAll(async () => {
    db = await freshDatabase();
    const dirA = tmpDir('rewind-pg-a-');
    const dirB = tmpDir('rewind-pg-b-');
    a = await spawnServer(dirA, '127.0.0.1:0', ['--catalog', db.url], { REWIND_HEARTBEAT_MS: '300' });
    // The first server of a catalogue creates its admin token; the others are given it.
    fs.copyFileSync(path.join(dirA, 'admin.token'), path.join(dirB, 'admin.token'));
    b = await spawnServer(dirB, '127.0.0.1:0', ['--catalog', db.url], { REWIND_HEARTBEAT_MS: '300' });
  }, 60_000);
  afterAll(async () => {
    agentProc?.kill('SIGKILL');
    await a?.stop();
    await b?.stop();
    await db?.drop();
  });

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

  it.runIf(engineBuilt)('a job created on B is taken exactly once by an agent connected to A', async () => {
    const tok = await rewind(['token', 'create', '--role', 'agent', '--name', 'agent-pghost'], { REWIND_SERVER: a.address, REWIND_TOKEN: a.adminToken });
    expect(tok.status, tok.stderr).toBe(0);
    agentProc = spawn(process.execPath, [CLI, 'agent', '--spool', spool, '--hostname', 'pghost'], {
      cwd: REPO,
      env: { ...cleanEnv(), REWIND_SERVER: a.address, REWIND_TOKEN: tok.stdout.trim() },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    agentProc.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
    // B sees the host A registered.
    await until('the host to register through A and show on B', async () => {
      const r = await rewind(['hosts', '--json'], { REWIND_SERVER: b.address, REWIND_TOKEN: b.adminToken });
      return r.status === 0 && (JSON.parse(r.stdout) as { hostname: string; online: boolean }[]).some((h) => h.hostname === 'pghost' && h.online);
    });
    const before = await ids(a);
    const traceId = await recordOn('pghost', ['/bin/echo', 'recorded on A, asked on B'], { server: b.address, token: b.adminToken, timeoutMs: 120_000 });
    const jobs = agentLog.split('\n').filter((l) => /"msg":"job"/.test(l));
    expect(jobs.length, agentLog).toBe(1);
    const added = (await ids(a)).filter((id) => !before.includes(id));
    expect(added).toEqual([traceId]);
    expect((await ids(b)).filter((id) => !before.includes(id))).toEqual([traceId]);
    const show = await rewind(['show', traceId], { REWIND_SERVER: b.address, REWIND_TOKEN: b.adminToken });
    expect(show.stdout).toContain('recorded on A, asked on B');
  });
});
