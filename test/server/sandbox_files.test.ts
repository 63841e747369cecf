// Issue 11: the files replay stands in for (a memfd or a file mapped shared, a sparse file) are
// as large on the server as when recorded; what they hold is bounded by the worker's memory
// bound, with a clear error past it (docs/security.md, "Resource bounds").
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushTrace } from '../../remote/upload.js';
import { testEnv } from '../support/env.js';
import { CLI } from '../support/paths.js';
import { run } from '../support/process.js';
import { rewind } from './cli.js';
import { REPO, startTestServer, tmpDir, type TestServer } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));
const MiB = 2 ** 20;

describe.skipIf(!engineBuilt)('files past 16 MiB replay on the server as they do locally', () => {
  const work = tmpDir('rewind-sandbox-files-');
  let server: TestServer;
  let reader: string;
  const traces: Record<string, string> = {};
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    const exe = path.join(work, 'big_files');
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(REPO, 'test/fixtures/big_files.c')], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    server = await startTestServer({ sandbox: { memoryBytes: 512 * MiB } });
    reader = await server.token('reader');
    const agent = server.client(await server.token('agent'));
    // One 40 MiB memfd; and 16 of them mapped at once, 640 MiB from one 40 MiB blob.
    for (const [name, count] of [
      ['one', '1'],
      ['sixteen', '16'],
    ] as const) {
      const dir = path.join(work, name);
      // 640 MiB written and hashed while traced: minutes on a loaded machine.
      const r = await run(process.execPath, [CLI, 'record', '-o', dir, '--', exe, work, count], { cwd: REPO, env: testEnv(), timeoutMs: 280_000 });
      expect(r.status, r.stderr.toString()).toBe(0);
      traces[name] = dir;
      ids[name] = (await pushTrace(agent, dir)).traceId;
    }
  }, 300_000);
  afterAll(async () => {
    await server?.close();
  });

  it('a 40 MiB memfd mapped shared and a 48 MiB sparse file replay remotely byte for byte', async () => {
    const local = await rewind(['replay', traces.one!]);
    expect(local.status, local.stderr).toBe(0);
    expect(local.stdout).toMatch(/^memfd 0: [0-9a-f]{16}\nsparse file of 50335744 bytes: [0-9a-f]{16}\n$/);
    const remote = await rewind(['replay', ids.one!, '--server', server.address, '--token', reader]);
    expect(remote.stderr).toBe('');
    expect(remote.status).toBe(0);
    expect(remote.stdout).toBe(local.stdout);
  }, 120_000);

  it('files that would hold more than the memory bound stop with a clear error; the server goes on', async () => {
    const local = await rewind(['replay', traces.sixteen!]);
    expect(local.status, local.stderr).toBe(0);
    expect(local.stdout.split('\n').filter((l) => l.startsWith('memfd '))).toHaveLength(16);
    const remote = await rewind(['replay', ids.sixteen!, '--server', server.address, '--token', reader]);
    expect(remote.status).toBe(125);
    expect(remote.stderr).toMatch(
      /^rewind: .*the files replay stands in for would hold more than 536870912 bytes, this replay's memory bound\b.*\n$/,
    );
    // What was replayed before the bound was met is what was recorded.
    expect(local.stdout.startsWith(remote.stdout)).toBe(true);
    const again = await rewind(['replay', ids.one!, '--server', server.address, '--token', reader]);
    expect(again.status, again.stderr).toBe(0);
  }, 120_000);
});
