// A real server process, a real agent process and the CLI: host registration, heartbeat, spool
// uploads that survive a server restart, and (with the engine built) a recording job.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import Database from 'better-sqlite3';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordOn } from '../../remote/record.js';
import { makeTrace, REPO, tmpDir } from './helpers.js';
import { cleanEnv, rewind, spawnServer, type ServerProcess } from './cli.js';
import { CLI } from '../support/paths.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));

let srv: ServerProcess;
let agentProc: ChildProcess;
let agentLog = '';
let env: Record<string, string>;
const dataDir = tmpDir('rewind-agent-server-');
const spool = tmpDir('rewind-spool-');
const serverEnv = { REWIND_HEARTBEAT_MS: '300' };

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\nagent log:\n${agentLog.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function listIds(): Promise<string[]> {
  const r = await rewind(['ls', '--json'], env);
  return r.status === 0 ? (JSON.parse(r.stdout) as { id: string }[]).map((t) => t.id) : [];
}

/** Drops a finished trace into the spool the way a recorder would: write aside, then rename in. */
function drop(name: string): string {
  const t = makeTrace({ argv: [name] }, path.join(tmpDir('rewind-drop-'), name));
  fs.renameSync(t.dir, path.join(spool, name));
  return t.id;
}

beforeAll(async () => {
  srv = await spawnServer(dataDir, '127.0.0.1:0', [], serverEnv);
  env = { REWIND_SERVER: srv.address, REWIND_TOKEN: srv.adminToken };
  const tok = await rewind(['token', 'create', '--role', 'agent', '--name', 'agent-testhost'], env);
  expect(tok.status, tok.stderr).toBe(0);
  agentProc = spawn(process.execPath, [CLI, 'agent', '--spool', spool, '--hostname', 'testhost', '--keep'], {
    cwd: REPO,
    env: { ...cleanEnv(), REWIND_SERVER: srv.address, REWIND_TOKEN: tok.stdout.trim() },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  agentProc.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
});
afterAll(async () => {
  agentProc?.kill('SIGKILL');
  await srv?.stop();
});

describe('agent', () => {
  it('registers its host and heartbeats', async () => {
    const hosts = await until('the host to register', async () => {
      const r = await rewind(['hosts', '--json'], env);
      const h = r.status === 0 ? (JSON.parse(r.stdout) as { hostname: string; online: boolean; kernel: string; cpuFlags: string[] }[]) : [];
      return h.find((x) => x.hostname === 'testhost' && x.online) ? h : undefined;
    });
    expect(hosts[0]!.kernel).not.toBe('');
    expect(hosts[0]!.cpuFlags.length).toBeGreaterThan(0);
    const table = await rewind(['hosts'], env);
    expect(table.stdout).toMatch(/testhost\s+online\s+\d+s ago/);
  });

  it('uploads finished traces from its spool, also across a server restart', async () => {
    const a = drop('spooled-a');
    await until('the spooled trace', async () => ((await listIds()).includes(a) ? true : undefined));
    await until('the spool entry to move', async () => (fs.existsSync(path.join(spool, 'uploaded', 'spooled-a')) ? true : undefined));

    await srv.stop('SIGKILL');
    const b = drop('spooled-b');
    // The agent tries while the server is down, and retries.
    await until('an upload of spooled-b to fail', async () => (/spooled-b[^\n]*retr|retr[^\n]*spooled-b/.test(agentLog) ? true : undefined));
    srv = await spawnServer(dataDir, srv.address, [], serverEnv);
    await until('the trace spooled while the server was down', async () => ((await listIds()).includes(b) ? true : undefined), 30_000);
    expect((await listIds()).filter((x) => x === a || x === b).sort()).toEqual([a, b].sort());
  });

  it('parks a trace that can never be uploaded in failed/', async () => {
    const t = makeTrace({ argv: ['v9'], extra: { version: 9 } }, path.join(tmpDir('rewind-drop-'), 'bad-version'));
    fs.renameSync(t.dir, path.join(spool, 'bad-version'));
    await until('the refused trace to be parked', async () => (fs.existsSync(path.join(spool, 'failed', 'bad-version')) ? true : undefined));
    expect(agentLog).toMatch(/unsupported trace format version 9/);
  });

  it.skipIf(!engineBuilt)('records a program as a job (record --on HOST) and replays it remotely like locally', async () => {
    const exe = path.join(tmpDir('rewind-job-'), 'abort');
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(REPO, 'test/fixtures/abort.c')], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    const r = await rewind(['record', '--on', 'testhost', '--', exe], env);
    expect(r.status, r.stderr).toBe(0);
    const id = r.stdout.trim();
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    const ls = await rewind(['ls', '--json', '--signal', 'SIGABRT'], env);
    expect((JSON.parse(ls.stdout) as { id: string; exitStatus: number }[]).map((t) => [t.id, t.exitStatus])).toEqual([[id, 134]]);
    const show = await rewind(['show', id], env);
    expect(show.stdout).toContain(exe);
    const kept = fs.readdirSync(path.join(spool, 'uploaded')).map((n) => path.join(spool, 'uploaded', n));
    const local = kept.find((d) => (JSON.parse(fs.readFileSync(path.join(d, 'manifest.json'), 'utf8')) as { id: string }).id === id)!;
    expect(local).toBeDefined();
    const remoteRun = await rewind(['replay', id], env);
    const localRun = await rewind(['replay', local], {});
    expect(remoteRun.status, remoteRun.stderr).toBe(134);
    expect(remoteRun.status).toBe(localRun.status);
    expect(remoteRun.stdout).toBe(localRun.stdout);
    expect(remoteRun.stderr).toBe(localRun.stderr);
  });

  it.skipIf(!engineBuilt)('gives up completing a job the server refuses for good, and goes on working', async () => {
    // The job's program waits on a FIFO, so the test can end the job on the server meanwhile.
    const fifo = path.join(tmpDir('rewind-fifo-'), 'gate');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const recording = recordOn('testhost', ['/bin/cat', fifo], { server: srv.address, token: srv.adminToken }).then(
      () => 'done',
      (err: Error) => err.message,
    );
    const db = new Database(path.join(dataDir, 'catalog.sqlite'));
    try {
      const job = await until('the job to run', async () => {
        const row = db.prepare("SELECT id FROM jobs WHERE state = 'running' AND argv LIKE ?").get(`%${fifo}%`) as { id: string } | undefined;
        return row?.id;
      });
      db.prepare("UPDATE jobs SET state = 'failed', error = 'withdrawn by the test' WHERE id = ?").run(job);
      await fsp.writeFile(fifo, 'x\n');
      await until('the refusal to be logged', async () => (new RegExp(`"job":"${job}"[^\n]*giving up`).test(agentLog) ? true : undefined));
      // The agent goes on working: a trace dropped afterwards is uploaded.
      const later = drop('after-refusal');
      await until('the trace dropped after the refusal', async () => ((await listIds()).includes(later) ? true : undefined));
      expect(agentLog).not.toMatch(new RegExp(`"job":"${job}"[^\n]*retrying`));
      expect(await recording).toMatch(/recording on testhost failed: withdrawn by the test/);
    } finally {
      db.close();
    }
  });

  it('reports a job whose program cannot be recorded', async () => {
    await expect(recordOn('testhost', ['/nonexistent/program'], { server: srv.address, token: srv.adminToken })).rejects.toThrow(
      /recording on testhost failed/,
    );
    await expect(recordOn('nohost', ['/bin/true'], { server: srv.address, token: srv.adminToken })).rejects.toThrow(/no agent on host nohost/);
  });
});
