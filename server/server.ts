import fs from 'node:fs';
import type { Http2Session } from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation } from 'grpc-health-check';
import { openBlobStore } from './blobstore/open.js';
import { openCatalog, type Catalog } from './catalog/catalog.js';
import { ReplayManager } from './replay/manager.js';
import { agentService } from './services/agent.js';
import { tokenService } from './services/auth.js';
import { catalogService } from './services/catalog.js';
import { replayService } from './services/replay.js';
import { uploadService } from './services/upload.js';
import { DEFAULT_UPLOAD_LIMITS, UploadQuota } from './quota.js';
import { refuseRequests, withRequestLimits } from './request_limits.js';
import { ServerStats } from './stats.js';
import { sweep } from './gc.js';
import { isGone, readPreviousServer, recordServer } from './previous.js';
import { parseHttpListen, startWebServer } from './http/web_server.js';
import type { SandboxLimits } from '../native/index.js';
import { decodeUploadBlobRequest } from '../remote/upload_wire.js';
import { dataHome } from '../trace/trace_dir.js';
import { jsonLogger, logLevel, type Logger } from '../trace/log.js';
import { AgentServiceService } from '../gen/rewind/agent/v1/agent.js';
import { TokenServiceService } from '../gen/rewind/auth/v1/auth.js';
import { CatalogServiceService } from '../gen/rewind/catalog/v1/catalog.js';
import { ReplayServiceService } from '../gen/rewind/replay/v1/replay.js';
import { UploadServiceService } from '../gen/rewind/upload/v1/upload.js';

export interface ServerOptions {
  dataDir?: string;
  /** The catalogue: a postgres:// URL or a SQLite file (default: catalog.sqlite in the data directory). */
  catalog?: string;
  /** HOST:PORT; default 127.0.0.1:7777. Port 0 picks a free port. */
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  /** Default: JSON lines on stdout at REWIND_LOG's level. */
  logger?: Logger;
  replayCommand?: string[];
  /** Debug worker command; `DIR --stdio` is appended (default: this CLI's `rewind debug`). */
  debugCommand?: string[];
  maxSessions?: number;
  /** Sessions one token may hold at once (default 2). */
  maxSessionsPerToken?: number;
  /** When the server is full, a session idle this long is closed for a new one (default 5 min). */
  reclaimIdleMs?: number;
  /** A Debug stream must send `start` within this (default 5 s). */
  debugStartTimeoutMs?: number;
  /** Resource bounds of each replay or debug worker's sandbox. */
  sandbox?: Partial<SandboxLimits>;
  idleTimeoutMs?: number;
  /** Idle limit of a debug session (default 30 min: a person reads code between commands). */
  debugIdleTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  /** This server's lease on its sessions in the catalogue (default 30 s; renewed every third of it). */
  serverLeaseMs?: number;
  /** Uploaded blobs no trace committed are removed after this long (default 24 h). */
  orphanBlobTtlMs?: number;
  /** Unfinished partial uploads untouched this long are removed (default 6 hours). */
  partialTtlMs?: number;
  /** The largest blob an upload may declare (default 64 GiB). */
  maxBlobBytes?: number;
  /** Bytes each token may store (committed traces, and uploads not committed yet); 0: none (default 1 TiB). */
  uploadQuotaBytes?: number;
  /** Where blobs are kept: `s3://BUCKET/PREFIX`, or (default) DATA/blobs. */
  blobs?: string;
  /** Endpoint of an S3-compatible store (default: the SDK's, e.g. AWS_ENDPOINT_URL). */
  s3Endpoint?: string;
  /** Bound of the local cache of blobs fetched from S3 for replay and debug sessions (default 10 GiB). */
  blobCacheBytes?: number;
  /** HOST:PORT of the web page and its JSON API (docs/web.md); off when not given. */
  http?: string;
}

export interface RunningServer {
  port: number;
  address: string;
  dataDir: string;
  adminTokenPath: string;
  catalog: Catalog;
  stats: ServerStats;
  /** HOST:PORT of the web page, when --http was given. */
  httpAddress?: string;
  close(): Promise<void>;
}

export const DEFAULT_LISTEN = '127.0.0.1:7777';

export function defaultDataDir(): string {
  return path.join(dataHome(), 'server');
}

export const SERVICE_NAMES = [
  'rewind.upload.v1.UploadService',
  'rewind.catalog.v1.CatalogService',
  'rewind.replay.v1.ReplayService',
  'rewind.auth.v1.TokenService',
  'rewind.agent.v1.AgentService',
];

/** Finds proto/ (next to dist/ or the sources) for the reflection service. */
function protoRoot(): string | undefined {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    const p = path.join(dir, 'proto');
    if (fs.existsSync(path.join(p, 'rewind'))) return p;
    dir = path.dirname(dir);
  }
  return undefined;
}

function protoFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.proto')) out.push(path.relative(root, p));
    }
  };
  walk(path.join(root, 'rewind'));
  return out;
}

/**
 * Creates the admin token on first start of a catalogue and writes it to DATA/admin.token (0600).
 * Of several servers starting on one new database, one creates it (the others' tokens are revoked).
 */
async function ensureAdminToken(catalog: Catalog, dataDir: string, log: Logger): Promise<string> {
  const file = path.join(dataDir, 'admin.token');
  if (!(await catalog.meta.get('admin_token_created'))) {
    const { token, secret } = await catalog.tokens.create('admin', 'admin');
    if (await catalog.meta.setOnce('admin_token_created', new Date().toISOString())) {
      fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
      fs.chmodSync(file, 0o600);
      log.info({ path: file }, 'created the first admin token');
    } else {
      await catalog.tokens.revoke(token.id);
    }
  } else if (fs.existsSync(file)) {
    log.info({ path: file }, 'admin token file');
  }
  return file;
}

const STREAM_WINDOW = 16 << 20;
const SESSION_WINDOW = 64 << 20;

/**
 * HTTP/2 gives each stream and connection a 64 KiB receive window, and grpc-js has no option to
 * change it on the server: an upload could then carry only 64 KiB per round trip (3 MB/s at
 * 20 ms). Widen both through grpc-js internals; if a grpc-js upgrade renames them, this does
 * nothing and uploads are only slower over long links.
 */
function widenReceiveWindows(server: Server, log: Logger): void {
  type SessionHandler = (session: Http2Session) => void;
  const internals = server as unknown as {
    commonServerOptions?: { settings?: Record<string, number> };
    _sessionHandler?: (http2Server: unknown) => SessionHandler;
    _channelzSessionHandler?: (http2Server: unknown) => SessionHandler;
  };
  if (typeof internals.commonServerOptions !== 'object') {
    log.warn('cannot widen HTTP/2 receive windows with this grpc-js');
    return;
  }
  internals.commonServerOptions.settings = { ...internals.commonServerOptions.settings, initialWindowSize: STREAM_WINDOW };
  for (const name of ['_sessionHandler', '_channelzSessionHandler'] as const) {
    const orig = internals[name];
    if (typeof orig !== 'function') continue;
    internals[name] = function (this: unknown, http2Server: unknown): SessionHandler {
      const handle = orig.call(this, http2Server);
      return (session) => {
        try {
          session.setLocalWindowSize(SESSION_WINDOW);
        } catch {
          // the session is already closing
        }
        handle(session);
      };
    };
  }
}

export async function startServer(opts: ServerOptions = {}): Promise<RunningServer> {
  if (opts.http) parseHttpListen(opts.http); // refused before anything is opened
  const dataDir = path.resolve(opts.dataDir ?? defaultDataDir());
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dataDir, 0o700); // also one made earlier, or by hand: everything in it is secret
  const log = opts.logger ?? jsonLogger('rewind-server', logLevel());
  const store = await openBlobStore(dataDir, opts);
  const catalog = await openCatalog(dataDir, opts.catalog).catch(async (err: unknown) => {
    await store.close?.();
    throw err;
  });
  const workDir = path.join(dataDir, 'tmp');
  fs.rmSync(workDir, { recursive: true, force: true });
  fs.mkdirSync(workDir, { recursive: true, mode: 0o700 });
  const stats = new ServerStats();
  const adminTokenPath = await ensureAdminToken(catalog, dataDir, log);
  // The server that ran on this data directory before (killed, or stopped): what it left in the
  // catalogue is taken over now, so an upload it was receiving resumes at once.
  const prev = readPreviousServer(dataDir);
  if (prev && prev.id !== catalog.serverId) {
    if (isGone(prev)) {
      const { claims } = await catalog.sessions.retire(prev.id);
      if (claims > 0) log.info({ server: prev.id, claims }, 'took over the blob claims of the previous server on this data directory');
    } else {
      log.warn({ server: prev.id, host: prev.host, pid: prev.pid }, 'the previous server on this data directory may still run; what it holds lapses with its lease');
    }
  }
  recordServer(dataDir, catalog.serverId);
  // Holds this server's sessions; ends those of servers that went away (their lease ran out).
  const leaseMs = opts.serverLeaseMs ?? 30_000;
  const ended = await catalog.sessions.keepAlive(leaseMs);
  if (ended > 0) log.info({ sessions: ended }, 'ended the sessions of servers that went away');
  const replays = new ReplayManager(catalog, store, log, {
    command: opts.replayCommand,
    debugCommand: opts.debugCommand,
    maxSessions: opts.maxSessions,
    maxSessionsPerToken: opts.maxSessionsPerToken,
    reclaimIdleMs: opts.reclaimIdleMs,
    debugStartTimeoutMs: opts.debugStartTimeoutMs,
    idleTimeoutMs: opts.idleTimeoutMs,
    debugIdleTimeoutMs: opts.debugIdleTimeoutMs,
    sandbox: opts.sandbox,
    workDir,
  });

  const server = new Server({
    'grpc.max_receive_message_length': 16 << 20,
    'grpc.keepalive_permit_without_calls': 1,
    interceptors: [refuseRequests],
  });
  widenReceiveWindows(server, log);
  const deps = { catalog, log };
  // Chunks are decoded without copying their data (remote/upload_wire.ts).
  const uploadDefinition = { ...UploadServiceService, uploadBlob: { ...UploadServiceService.uploadBlob, requestDeserialize: decodeUploadBlobRequest } };
  const quota = new UploadQuota(catalog, store, {
    maxBlobBytes: opts.maxBlobBytes ?? DEFAULT_UPLOAD_LIMITS.maxBlobBytes,
    quotaBytes: opts.uploadQuotaBytes ?? DEFAULT_UPLOAD_LIMITS.quotaBytes,
  });
  server.addService(withRequestLimits(uploadDefinition), uploadService({ ...deps, store, stats, quota }));
  // The web page's JSON layer calls these same handlers (server/http/web_server.ts).
  const handlers = {
    catalog: catalogService({ ...deps, store, stats, activeSessions: () => replays.active }),
    replay: replayService({ ...deps, replays }),
    token: tokenService(deps),
  };
  server.addService(withRequestLimits(CatalogServiceService), handlers.catalog);
  server.addService(withRequestLimits(ReplayServiceService), handlers.replay);
  server.addService(withRequestLimits(TokenServiceService), handlers.token);
  server.addService(withRequestLimits(AgentServiceService), agentService({ ...deps, heartbeatIntervalMs: opts.heartbeatIntervalMs ?? 5000 }));

  const health = new HealthImplementation({ '': 'SERVING', ...Object.fromEntries(SERVICE_NAMES.map((s) => [s, 'SERVING'])) });
  health.addToServer(server);
  const root = protoRoot();
  if (root) {
    const def = loadSync(protoFiles(root), { includeDirs: [root] });
    new ReflectionService(def).addToServer(server);
  } else {
    log.warn('proto/ not found; server reflection is off');
  }

  let creds = ServerCredentials.createInsecure();
  let tls: { cert: Buffer; key: Buffer } | undefined;
  if (opts.tlsCert || opts.tlsKey) {
    if (!opts.tlsCert || !opts.tlsKey) throw new Error('--tls-cert and --tls-key go together');
    tls = { cert: fs.readFileSync(opts.tlsCert), key: fs.readFileSync(opts.tlsKey) };
    creds = ServerCredentials.createSsl(null, [{ cert_chain: tls.cert, private_key: tls.key }], false);
  }
  const listen = opts.listen ?? DEFAULT_LISTEN;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(listen, creds, (err, p) => (err ? reject(new Error(`cannot listen on ${listen}: ${err.message}`)) : resolve(p))),
  ).catch(async (err: unknown) => {
    await store.close?.();
    await catalog.close();
    throw err;
  });
  const host = listen.slice(0, listen.lastIndexOf(':')) || '127.0.0.1';
  const address = `${host}:${port}`;
  let web;
  try {
    web = opts.http ? await startWebServer({ listen: opts.http, handlers, log, tls }) : undefined;
  } catch (err) {
    server.forceShutdown();
    replays.closeAll();
    await store.close?.();
    await catalog.close();
    throw err;
  }
  log.info({ address, dataDir, catalog: catalog.kind, blobs: opts.blobs ?? 'data directory', tls: Boolean(opts.tlsCert), http: web?.address }, 'rewind server listening');

  const runSweep = (): void => {
    sweep(catalog, store, opts.orphanBlobTtlMs ?? 86_400_000, opts.partialTtlMs ?? 6 * 3_600_000, log).catch(
      (err: unknown) => log.warn({ err }, 'sweep failed'),
    );
  };
  runSweep();
  const sweeper = setInterval(runSweep, 15 * 60_000);
  sweeper.unref();
  const keepAlive = setInterval(() => {
    catalog.sessions.keepAlive(leaseMs).catch((err: unknown) => log.warn({ err }, 'renewing the server lease failed'));
  }, leaseMs / 3);
  keepAlive.unref();

  return {
    port,
    address,
    dataDir,
    adminTokenPath,
    catalog,
    stats,
    httpAddress: web?.address,
    close: async () => {
      clearInterval(sweeper);
      clearInterval(keepAlive);
      await web?.close();
      replays.closeAll();
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      await store.close?.();
      await catalog.close();
    },
  };
}
