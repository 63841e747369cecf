// End to end on an S3-compatible store (OpenStack Swift, test/support/s3_server.ts): a real
// recording with a 64 MiB mapped file is pushed to `rewind server --blobs s3://…`; the server
// is killed (SIGKILL) half-way through that blob; a new server on the same store resumes the
// upload from the parts the store holds (counted: they are not sent again), and the trace
// replays remotely byte for byte like locally.
import { randomBytes, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ListMultipartUploadsCommand, ListPartsCommand } from '@aws-sdk/client-s3';
import { call, connect } from '../../remote/client.js';
import { compile } from '../support/compile.js';
import { start } from '../support/process.js';
import { CLI, REPO } from '../support/paths.js';
import { testEnv } from '../support/env.js';
import { s3SkipReason, startS3Server, type S3Server } from '../support/s3_server.js';
import { rewind, spawnServer, type ServerProcess } from './cli.js';
import { tmpDir, until } from './helpers.js';

const engineBuilt = fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'));
const skip = s3SkipReason();
const MIB = 1 << 20;

describe.skipIf(Boolean(skip) || !engineBuilt)('push to an S3 blob store, server killed half-way, resumed, replayed', () => {
  let swift: S3Server;
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    swift = await startS3Server();
  }, 300_000);
  afterAll(async () => {
    for (const s of servers) await s.stop('SIGKILL');
    await swift?.stop();
  }, 300_000);

  it("resumes from what the store holds and replays byte-identical", async () => {
    const work = tmpDir('rewind-s3e2e-');
    const data = path.join(work, 'data.bin');
    const content = randomBytes(64 * MIB);
    fs.writeFileSync(data, content);
    const big = createHash('sha256').update(content).digest('hex');
    const exe = compile('mmap_sum');
    const traceDir = path.join(work, 'trace');
    const rec = await rewind(['record', '-o', traceDir, '--', exe, data]);
    expect(rec.status, rec.stderr).toBe(0);
    expect(fs.existsSync(path.join(traceDir, 'blobs', big))).toBe(true);

    const dataDir = tmpDir('rewind-s3e2e-server-');
    const prefix = 'e2e';
    const args = ['--blobs', `s3://${swift.bucket}/${prefix}`];
    const first = await spawnServer(dataDir, '127.0.0.1:0', args, swift.env);
    servers.push(first);
    const admin = { REWIND_SERVER: first.address, REWIND_TOKEN: first.adminToken };
    const tok = await rewind(['token', 'create', '--role', 'agent'], admin);
    expect(tok.status, tok.stderr).toBe(0);
    const agentToken = tok.stdout.trim();

    // The push runs until the store holds two parts of the big blob; then its server dies.
    const s3 = swift.client();
    const key = `${prefix}/blobs/${big}`;
    const heldParts = async (): Promise<{ bytes: number; parts: number }> => {
      const ups = (await s3.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: key }))).Uploads ?? [];
      let best = { bytes: 0, parts: 0 };
      for (const u of ups) {
        const parts = (await s3.send(new ListPartsCommand({ Bucket: swift.bucket, Key: key, UploadId: u.UploadId }))).Parts ?? [];
        const bytes = parts.reduce((n, p) => n + (p.Size ?? 0), 0);
        if (bytes > best.bytes) best = { bytes, parts: parts.length };
      }
      return best;
    };
    const push1 = start(process.execPath, [CLI, 'push', traceDir], { cwd: REPO, env: testEnv({ REWIND_SERVER: first.address, REWIND_TOKEN: agentToken }), timeoutMs: 120_000 });
    await until('two parts of the big blob stored', async () => (await heldParts()).parts >= 2, 60_000);
    await first.stop('SIGKILL');
    const r1 = await push1.done;
    expect(r1.status, `the push should have failed with its server gone: ${r1.stderr.toString()}`).not.toBe(0);
    const held = await heldParts();
    expect(held.bytes).toBeGreaterThanOrEqual(16 * MIB);
    expect(held.bytes).toBeLessThan(content.length);

    // A new server (nothing of the first in memory) on the same data directory and store.
    const second = await spawnServer(dataDir, '127.0.0.1:0', args, swift.env);
    servers.push(second);
    const push2 = await rewind(['push', traceDir], { REWIND_SERVER: second.address, REWIND_TOKEN: agentToken });
    expect(push2.status, push2.stderr).toBe(0);
    const id = push2.stdout.trim();
    const c = connect({ server: second.address, token: second.adminToken, tls: false });
    let received: number;
    try {
      received = Number((await call(c, c.catalog.getStats.bind(c.catalog), {})).blobBytesReceived);
    } finally {
      c.close();
    }
    const total = fs.readdirSync(path.join(traceDir, 'blobs')).reduce((n, b) => n + fs.statSync(path.join(traceDir, 'blobs', b)).size, 0);
    // What the store held was not sent again.
    expect(received, `received ${received} of ${total} bytes; the store held ${held.bytes}`).toBeLessThanOrEqual(total - held.bytes);
    expect((await s3.send(new ListMultipartUploadsCommand({ Bucket: swift.bucket, Prefix: `${prefix}/` }))).Uploads ?? []).toEqual([]);

    const env = { REWIND_SERVER: second.address, REWIND_TOKEN: second.adminToken };
    const local = await rewind(['replay', traceDir]);
    const remote = await rewind(['replay', id], env);
    expect(remote.status, remote.stderr).toBe(0);
    expect(remote.stdout).toBe(local.stdout);
    expect(remote.stderr).toBe(local.stderr);
    expect(remote.stdout).toBe(rec.stdout);
    expect(fs.existsSync(path.join(dataDir, 'blob-cache', big))).toBe(true);
    s3.destroy();
  }, 300_000);
});
