import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTrace, tmpDir } from './helpers.js';
import { rewind, spawnServer, type ServerProcess } from './cli.js';

let srv: ServerProcess;
let env: Record<string, string>;
let readerToken: string;
let agentToken: string;

beforeAll(async () => {
  srv = await spawnServer(tmpDir('rewind-cli-server-'));
  env = { REWIND_SERVER: srv.address, REWIND_TOKEN: srv.adminToken };
  const r = await rewind(['token', 'create', '--role', 'reader', '--name', 'ci-reader'], env);
  expect(r.status, r.stderr).toBe(0);
  readerToken = r.stdout.trim();
  const a = await rewind(['token', 'create', '--role', 'agent'], env);
  agentToken = a.stdout.trim();
});
afterAll(async () => {
  await srv?.stop();
});

describe('rewind CLI against a server', () => {
  it('push, ls (filters, --json), show, rm', async () => {
    const ok = makeTrace({ argv: ['hello', 'world'], exe: '/usr/bin/hello', hostname: 'web1', status: 0 });
    const bad = makeTrace({ argv: ['crash'], exe: '/usr/bin/crash', hostname: 'db1', status: 139, signal: 'SIGSEGV' });
    const p1 = await rewind(['push', ok.dir, '--label', 'team=web', '--token', agentToken], env);
    expect(p1.status, p1.stderr).toBe(0);
    expect(p1.stdout.trim()).toBe(ok.id);
    const p2 = await rewind(['push', bad.dir], { ...env, REWIND_TOKEN: agentToken });
    expect(p2.stdout.trim()).toBe(bad.id);

    const rEnv = { ...env, REWIND_TOKEN: readerToken };
    const all = await rewind(['ls'], rEnv);
    expect(all.status, all.stderr).toBe(0);
    expect(all.stdout).toMatch(/^ID\s+STARTED\s+HOST/);
    expect(all.stdout).toContain(ok.id);
    expect(all.stdout).toContain('139 (SIGSEGV)');
    const j = async (args: string[]): Promise<string[]> => {
      const r = await rewind(['ls', '--json', ...args], rEnv);
      expect(r.status, r.stderr).toBe(0);
      return (JSON.parse(r.stdout) as { id: string }[]).map((x) => x.id);
    };
    expect(await j(['--failed'])).toEqual([bad.id]);
    expect(await j(['--signal', 'segv'])).toEqual([bad.id]);
    expect(await j(['--exit', '0'])).toEqual([ok.id]);
    expect(await j(['--host', 'web1'])).toEqual([ok.id]);
    expect(await j(['--program', 'crash'])).toEqual([bad.id]);
    expect(await j(['--label', 'team=web'])).toEqual([ok.id]);
    expect(await j(['--search', 'world'])).toEqual([ok.id]);
    expect(await j(['--since', '1h'])).toHaveLength(2);
    expect(await j(['--until', '2000-01-01'])).toEqual([]);
    expect(await j(['--limit', '1'])).toHaveLength(1);

    const show = await rewind(['show', bad.id], rEnv);
    expect(show.status, show.stderr).toBe(0);
    expect(show.stdout).toMatch(/command\s+crash/);
    expect(show.stdout).toMatch(/processes\s+1 task/);
    const showJ = await rewind(['show', ok.id, '--json'], rEnv);
    const m = JSON.parse(showJ.stdout) as Record<string, unknown> & { server: { labels: Record<string, string> } };
    expect(m.id).toBe(ok.id);
    expect(m.server.labels).toEqual({ team: 'web' });

    const denied = await rewind(['rm', ok.id], rEnv);
    expect(denied.status).not.toBe(0);
    expect(denied.stderr).toMatch(/^rewind: permission denied: DeleteTrace needs an admin token/m);
    const rm = await rewind(['rm', ok.id], env);
    expect(rm.status, rm.stderr).toBe(0);
    expect(rm.stderr).toMatch(/2 blob\(s\)/);
    expect(await j([])).toEqual([bad.id]);
    const gone = await rewind(['show', ok.id], rEnv);
    expect(gone.stderr).toMatch(/^rewind: not found: no trace/m);
  });

  it('clear messages, never a stack trace', async () => {
    const t = makeTrace();
    const noTok = await rewind(['ls'], { REWIND_SERVER: srv.address });
    expect(noTok.stderr).toBe('rewind: not authenticated: no token given: pass --token, set REWIND_TOKEN, or add it to the config file\n');
    const wrong = await rewind(['ls', '--token', 'rwt_wrong'], { REWIND_SERVER: srv.address });
    expect(wrong.stderr).toBe('rewind: not authenticated: invalid or revoked token\n');
    const readerPush = await rewind(['push', t.dir], { ...env, REWIND_TOKEN: readerToken });
    expect(readerPush.stderr).toMatch(/^rewind: permission denied: PrepareUpload needs an agent or admin token; this is a reader token\n$/);
    const badId = await rewind(['show', 'nope'], env);
    expect(badId.stderr).toBe('rewind: invalid argument: bad trace id "nope": expected a UUID\n');
    fs.writeFileSync(path.join(t.dir, 'manifest.json'), JSON.stringify({ format: 'rewind-trace', version: 7, id: 'x', blobs: [] }));
    const v7 = await rewind(['push', t.dir], env);
    expect(v7.stderr).toMatch(/unsupported trace format version 7; this rewind supports version 1/);
    const down = await rewind(['ls', '--server', '127.0.0.1:1'], env);
    expect(down.stderr).toMatch(/^rewind: cannot reach the server at 127\.0\.0\.1:1/);
    for (const r of [noTok, wrong, readerPush, badId, v7, down]) expect(r.stderr).not.toMatch(/\n\s+at /);
  });

  it('reads server and token from the config file', async () => {
    const dir = tmpDir('rewind-config-');
    const file = path.join(dir, 'config.json');
    fs.writeFileSync(file, JSON.stringify({ server: srv.address, token: readerToken }));
    const r = await rewind(['ls', '--json'], { REWIND_CONFIG: file });
    expect(r.status, r.stderr).toBe(0);
  });

  it('token ls and revoke', async () => {
    const c = await rewind(['token', 'create', '--role', 'reader', '--name', 'temp'], env);
    const secret = c.stdout.trim();
    const ls = await rewind(['token', 'ls'], env);
    expect(ls.stdout).toMatch(/temp\s+reader/);
    expect(ls.stdout).not.toContain(secret);
    const rv = await rewind(['token', 'revoke', 'temp'], env);
    expect(rv.status, rv.stderr).toBe(0);
    const after = await rewind(['ls', '--token', secret], env);
    expect(after.stderr).toMatch(/invalid or revoked/);
    const badRole = await rewind(['token', 'create', '--role', 'root'], env);
    expect(badRole.stderr).toBe('rewind: bad role "root": use agent, reader or admin\n');
  });

  it('takes a list of servers and uses the one that answers; names in a list are refused', async () => {
    // Nothing listens on port 1: the client moves on to the next server of the list.
    const r = await rewind(['ls', '--json'], { ...env, REWIND_SERVER: `127.0.0.1:1,${srv.address}` });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toBeInstanceOf(Array);
    const names = await rewind(['ls'], { ...env, REWIND_SERVER: `localhost:1,${srv.address}` });
    expect(names.status).not.toBe(0);
    expect(names.stderr).toMatch(/a list of servers takes IP addresses of one family/);
    expect(names.stderr).not.toMatch(/\n\s+at /);
  });
});
