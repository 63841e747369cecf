// The service suites' helpers: synthetic trace directories and an in-process server; the rest
// comes from test/support.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll } from 'vitest';
import { connect, type Clients } from '../../remote/client.js';
import { Manifest as ManifestMessage } from '../../gen/rewind/trace/v1/manifest.js';
import { startServer, type RunningServer, type ServerOptions } from '../../server/server.js';
import { cleanupTemps, tempDir } from '../support/tmp.js';
import { sha256 } from '../support/traces.js';

export { REPO } from '../support/paths.js';
export { descendants } from '../support/procs.js';
export { until } from '../support/process.js';
export { sha256 };

/** A fresh temporary directory, removed when the test file ends. */
export const tmpDir = tempDir;
afterAll(cleanupTemps);

export interface SyntheticTrace {
  dir: string;
  id: string;
  manifest: Record<string, unknown>;
  blobs: { sha256: string; size: number; role: string; path?: string }[];
}

export interface TraceSpec {
  argv?: string[];
  exe?: string;
  hostname?: string;
  status?: number;
  signal?: string | null;
  startTime?: string;
  /** Blob contents; default: one 64 KiB events blob and one 256 KiB file blob. */
  blobs?: { data: Buffer; role: string; path?: string }[];
  /** Extra fields merged into the manifest (to make it malformed, etc.). */
  extra?: Record<string, unknown>;
}

/** Writes a small synthetic trace directory (random blobs, valid manifest). */
export function makeTrace(spec: TraceSpec = {}, dir = tmpDir('rewind-trace-')): SyntheticTrace {
  const blobsIn = spec.blobs ?? [
    { data: randomBytes(64 * 1024), role: 'events' },
    { data: randomBytes(256 * 1024), role: 'file', path: '/usr/lib/libfake.so' },
  ];
  fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true });
  const blobs = blobsIn.map((b) => {
    const h = sha256(b.data);
    fs.writeFileSync(path.join(dir, 'blobs', h), b.data);
    return b.path ? { sha256: h, size: b.data.length, role: b.role, path: b.path } : { sha256: h, size: b.data.length, role: b.role };
  });
  const id = randomUUID();
  const status = spec.status ?? 0;
  const manifest: Record<string, unknown> = {
    format: 'rewind-trace',
    version: 1,
    id,
    argv: spec.argv ?? ['ls', '-la'],
    exe: spec.exe ?? '/usr/bin/ls',
    cwd: '/home/u',
    env: ['K=V'],
    user: 'root',
    host: { hostname: spec.hostname ?? 'h1', kernel: '6.18.44', arch: 'x86_64', cpu: { model: 'Xeon', vendor: 'GenuineIntel', flags: ['fpu'] } },
    startTime: spec.startTime ?? new Date().toISOString(),
    endTime: new Date().toISOString(),
    durationMs: 12.5,
    exit: { status, code: spec.signal ? null : status, signal: spec.signal ?? null },
    complete: true,
    counts: { events: 10, tasks: 1, syscalls: 8, bytes: 1234 },
    blobs,
    ...spec.extra,
  };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2));
  return { dir, id, manifest, blobs };
}

/** DIR/manifest.json as the API's message, as a client that does not check it would send it. */
export function manifestMessageOf(dir: string): ManifestMessage {
  return ManifestMessage.fromJSON(JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')));
}

export interface TestServer {
  server: RunningServer;
  dataDir: string;
  adminToken: string;
  address: string;
  client(token?: string): Clients;
  token(role: 'agent' | 'reader' | 'admin'): Promise<string>;
  close(): Promise<void>;
}

export async function startTestServer(opts: Partial<ServerOptions> = {}): Promise<TestServer> {
  const dataDir = opts.dataDir ?? tmpDir('rewind-server-');
  const server = await startServer({ listen: '127.0.0.1:0', logger: pino({ level: 'silent' }), ...opts, dataDir });
  const adminToken = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  const clients: Clients[] = [];
  return {
    server,
    dataDir,
    adminToken,
    address: server.address,
    client(token?: string) {
      const c = connect({ server: server.address, token, tls: false });
      clients.push(c);
      return c;
    },
    async token(role) {
      return (await server.catalog.tokens.create(role, '')).secret;
    },
    async close() {
      for (const c of clients) c.close();
      await server.close();
    },
  };
}
