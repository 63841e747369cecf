// `rewind push` of a recording whose recorder was killed: it is stored marked incomplete, `ls`
// and `show` say so, and a remote replay says "cut short" and prints exactly what a local replay
// of the same directory prints. Real engine, real CLI, real server on loopback.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rewind, cleanEnv } from './cli.js';
import { REPO, startTestServer, tmpDir, until, type TestServer } from './helpers.js';
import { flushedWrites } from '../support/traces.js';

const CLI = path.join(REPO, 'dist/cli/main.js');
const skip = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node')) ? undefined : 'the native engine is not built';

describe.skipIf(skip !== undefined)(`pushing a recording cut short${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let ts: TestServer;
  let traceDir: string;

  beforeAll(async () => {
    traceDir = path.join(tmpDir('rewind-cut-'), 'trace');
    const child = spawn(process.execPath, [CLI, 'record', '-o', traceDir, '--', '/bin/sh', '-c', 'echo first; echo to-stderr >&2; sleep 20; echo never'], {
      env: cleanEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Killed once the chunk holding both writes is flushed: the trace then holds them.
    await until('both writes to be flushed', () => flushedWrites(traceDir) >= 2);
    child.kill('SIGKILL');
    await new Promise((resolve) => child.on('close', resolve));
    const m = JSON.parse(fs.readFileSync(path.join(traceDir, 'manifest.json'), 'utf8')) as { complete: boolean };
    expect(m.complete).toBe(false);
    expect(fs.existsSync(path.join(traceDir, 'events.partial'))).toBe(true);
    ts = await startTestServer();
  });
  afterAll(async () => {
    await ts?.close();
  });

  it('push notes it, the catalogue marks it incomplete, and remote replay prints what local replay does', async () => {
    const env = { REWIND_SERVER: ts.address, REWIND_TOKEN: ts.adminToken };
    const push = await rewind(['push', traceDir], env);
    expect(push.status, push.stderr).toBe(0);
    expect(push.stderr).toMatch(/^rewind: note: this recording was cut short \(its recorder was killed, or it is still running\); pushing the events it holds/);
    const id = push.stdout.trim();
    expect(id).toMatch(/^[0-9a-f-]{36}$/);

    const ls = await rewind(['ls'], env);
    const row = ls.stdout.split('\n').find((l) => l.startsWith(id))!;
    expect(row).toMatch(/\bcut short\b/);
    const show = await rewind(['show', id], env);
    expect(show.stdout).toMatch(/^complete\s+no: the recording was cut short; replay stops where its events end$/m);
    expect(show.stdout).toMatch(/^exit\s+cut short$/m);

    const local = spawnSync(process.execPath, [CLI, 'replay', traceDir], { env: cleanEnv(), encoding: 'utf8', timeout: 60_000 });
    expect(local.stdout).toBe('first\n');
    expect(local.stderr).toMatch(/cut short/);
    const remote = await rewind(['replay', id], env);
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stderr).toBe(local.stderr);
    expect(remote.status).toBe(local.status);
  });
});
