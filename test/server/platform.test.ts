// Standard services (health, reflection), TLS, and the server-only commands on a machine
// without the native addon.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { credentials, loadPackageDefinition, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, connect } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import { makeTrace, REPO, startTestServer, tmpDir, until, type TestServer } from './helpers.js';
import { run as runProcess } from '../support/process.js';

type Unary = (req: object, cb: (err: ServiceError | null, res: Record<string, unknown>) => void) => void;
type Ctor = new (addr: string, creds: ReturnType<typeof credentials.createInsecure>) => Record<string, unknown>;

function loadService(file: string, includeDir: string, name: string): Ctor {
  const def = loadPackageDefinition(loadSync(file, { includeDirs: [includeDir], enums: String }));
  let node: unknown = def;
  for (const part of name.split('.')) node = (node as Record<string, unknown>)[part];
  return node as Ctor;
}

let ts: TestServer;
beforeAll(async () => {
  // The server's replay worker is the fake one: this file tests the client side.
  ts = await startTestServer({ replayCommand: [process.execPath, path.join(REPO, 'test/server/fixtures/fake_replay.mjs')] });
});
afterAll(async () => {
  await ts.close();
});

describe('standard gRPC services', () => {
  it('serves health checking for the server and each service', async () => {
    const Health = loadService(path.join(REPO, 'node_modules/grpc-health-check/proto/health/v1/health.proto'), REPO, 'grpc.health.v1.Health');
    const h = new Health(ts.address, credentials.createInsecure());
    for (const service of ['', 'rewind.upload.v1.UploadService', 'rewind.replay.v1.ReplayService']) {
      const res = await new Promise<Record<string, unknown>>((resolve, reject) =>
        (h.check as Unary).call(h, { service }, (e, r) => (e ? reject(e) : resolve(r))),
      );
      expect(res.status).toBe('SERVING');
    }
  });

  it('serves reflection listing the rewind services', async () => {
    const root = path.join(REPO, 'node_modules/@grpc/reflection/build/proto');
    const Refl = loadService(path.join(root, 'grpc/reflection/v1/reflection.proto'), root, 'grpc.reflection.v1.ServerReflection');
    const r = new Refl(ts.address, credentials.createInsecure());
    const stream = (r.ServerReflectionInfo as () => NodeJS.ReadWriteStream & { end(): void; write(x: object): boolean }).call(r);
    const names = await new Promise<string[]>((resolve, reject) => {
      stream.on('data', (msg: { listServicesResponse?: { service: { name: string }[] } }) => {
        resolve(msg.listServicesResponse?.service.map((s) => s.name) ?? []);
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ listServices: '' });
    });
    expect(names).toEqual(expect.arrayContaining(['rewind.upload.v1.UploadService', 'rewind.catalog.v1.CatalogService', 'rewind.agent.v1.AgentService']));
  });
});

describe('HTTP/2 flow control', () => {
  it('advertises wide receive windows so uploads are not capped at 64 KiB per round trip', async () => {
    const http2 = await import('node:http2');
    const c = http2.connect(`http://${ts.address}`);
    try {
      const settings = await new Promise<{ initialWindowSize?: number }>((resolve) => c.once('remoteSettings', resolve));
      expect(settings.initialWindowSize).toBeGreaterThanOrEqual(1 << 20);
      // The connection's window comes in a WINDOW_UPDATE after the settings.
      await until('the connection window update', () => (c.state.remoteWindowSize ?? 0) >= 1 << 20);
    } finally {
      c.close();
    }
  });
});

describe('TLS', () => {
  it('serves over TLS with --tls-cert/--tls-key and clients verify with --ca', async () => {
    const dir = tmpDir('rewind-tls-');
    const key = path.join(dir, 'key.pem');
    const cert = path.join(dir, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
    const tls = await startTestServer({ tlsCert: cert, tlsKey: key });
    try {
      const c = connect({ server: tls.address, token: tls.adminToken, tls: true, caFile: cert });
      const t = makeTrace();
      expect((await pushTrace(c, t.dir)).traceId).toBe(t.id);
      const list = await call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({}));
      expect(list.traces).toHaveLength(1);
      c.close();
      const plain = connect({ server: tls.address, token: tls.adminToken, tls: false });
      await expect(call(plain, plain.catalog.listTraces.bind(plain.catalog), ListTracesRequest.fromPartial({}), 3000)).rejects.toBeDefined();
      plain.close();
    } finally {
      await tls.close();
    }
  });
});

describe('without the native addon', () => {
  it('push, ls, show, hosts, token and remote replay work from an install with no native build', async () => {
    // An "installation" of dist/ with node_modules but without native/build.
    const inst = tmpDir('rewind-noaddon-');
    fs.cpSync(path.join(REPO, 'dist'), path.join(inst, 'dist'), { recursive: true });
    fs.symlinkSync(path.join(REPO, 'node_modules'), path.join(inst, 'node_modules'));
    fs.writeFileSync(path.join(inst, 'package.json'), JSON.stringify({ type: 'module' }));
    expect(fs.existsSync(path.join(inst, 'native'))).toBe(false);
    const main = path.join(inst, 'dist/cli/main.js');
    const run = async (args: string[]): Promise<{ status: number; stdout: string; stderr: string }> => {
      const r = await runProcess(process.execPath, [main, ...args], {
        cwd: inst,
        env: { PATH: process.env.PATH ?? '', HOME: inst, REWIND_SERVER: ts.address, REWIND_TOKEN: ts.adminToken },
      });
      return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
    };
    const t = makeTrace({ argv: ['noaddon'] });
    const push = await run(['push', t.dir]);
    expect(push.status, push.stderr).toBe(0);
    expect(push.stdout.trim()).toBe(t.id);
    for (const args of [['ls'], ['show', t.id], ['hosts', '--json'], ['token', 'ls']]) {
      const r = await run(args);
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    // Remote replay needs the engine on the server, not here.
    const rep = await run(['replay', t.id]);
    expect(rep.status, rep.stderr).toBe(0);
    expect(rep.stdout).toMatch(/^out: noaddon\n/);
    expect(rep.stderr).toBe(`err: ${t.id}\n`);
    const rec = await run(['record', '--', '/bin/true']);
    expect(rec.stderr).toMatch(/native engine is not built/);
  });
});
