// `rewind server --http HOST:PORT`: the web page (static files built by Vite into dist/web) and a
// JSON layer over the gRPC methods it needs. POST /api/<gRPC method path> takes the method's
// request in protobuf's JSON mapping and answers its response (a server stream: one JSON message
// a line). Every call runs the same handler a gRPC client reaches (transcode.ts), so tokens,
// roles, request checks and errors are the gRPC side's own; this file maps statuses to HTTP.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status, type handleServerStreamingCall, type handleUnaryCall, type Metadata } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { maxRequestBytes } from '../request_limits.js';
import { callServerStream, callUnary, CallError, metadataFor } from './transcode.js';
import { TimelineBuilder, TIMELINE_LIMITS, type Timeline } from './timeline.js';
import { OutputCollector, type RecordedOutput } from './output.js';
import { DUMP_PAGE_EVENTS } from '../../trace/dump.js';
import type { DumpedEvent } from '../../native/index.js';
import {
  CatalogServiceService,
  DeleteTraceRequest,
  DeleteTraceResponse,
  GetStatsRequest,
  GetStatsResponse,
  GetTraceRequest,
  GetTraceResponse,
  ListTracesRequest,
  ListTracesResponse,
  type CatalogServiceServer,
  type MessageFns,
} from '../../gen/rewind/catalog/v1/catalog.js';
import { QueryRequest, QueryResponse, ReplayServiceService, RunReplayRequest, RunReplayResponse, type ReplayServiceServer } from '../../gen/rewind/replay/v1/replay.js';
import { TokenServiceService, WhoAmIRequest, WhoAmIResponse, type TokenServiceServer } from '../../gen/rewind/auth/v1/auth.js';

/** The gRPC handlers the JSON layer calls: the ones server.ts registers. */
export interface WebHandlers {
  catalog: CatalogServiceServer;
  replay: ReplayServiceServer;
  token: TokenServiceServer;
}

export interface WebServerOptions {
  /** HOST:PORT; port 0 picks a free one. */
  listen: string;
  handlers: WebHandlers;
  log: Logger;
  tls?: { cert: Buffer; key: Buffer };
  /** The built page (default: dist/web of this checkout). */
  webRoot?: string;
}

export interface RunningWebServer {
  address: string;
  port: number;
  close(): Promise<void>;
}

/** gRPC statuses as HTTP ones, as grpc-gateway maps them. */
const HTTP_STATUS: Partial<Record<status, number>> = {
  [status.CANCELLED]: 499,
  [status.INVALID_ARGUMENT]: 400,
  [status.DEADLINE_EXCEEDED]: 504,
  [status.NOT_FOUND]: 404,
  [status.ALREADY_EXISTS]: 409,
  [status.PERMISSION_DENIED]: 403,
  [status.UNAUTHENTICATED]: 401,
  [status.RESOURCE_EXHAUSTED]: 429,
  [status.FAILED_PRECONDITION]: 400,
  [status.ABORTED]: 409,
  [status.OUT_OF_RANGE]: 400,
  [status.UNIMPLEMENTED]: 501,
  [status.UNAVAILABLE]: 503,
};

const errorBody = (e: CallError): string => JSON.stringify({ code: status[e.code] ?? 'UNKNOWN', message: e.message });

/** A method the JSON layer serves: it writes the whole answer itself. */
type Route = (body: unknown, md: Metadata, res: http.ServerResponse, signal: AbortSignal) => Promise<void>;

const API_HEADERS = { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

function unaryRoute<Req, Res>(handler: handleUnaryCall<Req, Res>, reqType: MessageFns<Req>, resType: MessageFns<Res>): Route {
  return async (body, md, res) => {
    const answer = await callUnary(handler, reqType.fromJSON(body), md);
    res.writeHead(200, API_HEADERS).end(JSON.stringify(resType.toJSON(answer)));
  };
}

/**
 * A server stream as JSON lines. The status is sent with the first message, so a call refused at
 * once (no token, no such trace) still answers with its HTTP status; a failure after that is the
 * last line, {"error": {code, message}}.
 */
function streamRoute<Req, Res>(handler: handleServerStreamingCall<Req, Res>, reqType: MessageFns<Req>, resType: MessageFns<Res>): Route {
  return async (body, md, res, signal) => {
    const start = (): void => {
      if (!res.headersSent) res.writeHead(200, { ...API_HEADERS, 'content-type': 'application/x-ndjson; charset=utf-8' });
    };
    const sink = {
      write: (m: Res): boolean => {
        start();
        return res.write(`${JSON.stringify(resType.toJSON(m))}\n`);
      },
      onDrain: (cb: () => void) => res.once('drain', cb),
    };
    try {
      await callServerStream(handler, reqType.fromJSON(body), md, sink, signal);
    } catch (err) {
      if (!res.headersSent) throw err;
      const e = err instanceof CallError ? err : new CallError(status.INTERNAL, 'internal server error');
      res.write(`{"error":${errorBody(e)}}\n`);
    }
    start();
    res.end();
  };
}

/** What was drawn of a trace (timelines, output), by trace id: a trace never changes once committed. */
class TraceCache<T> {
  private readonly entries = new Map<string, Promise<T>>();
  constructor(private readonly size = 32) {}
  get(id: string, make: () => Promise<T>): Promise<T> {
    let p = this.entries.get(id);
    if (p) {
      this.entries.delete(id); // re-inserted below: most recently used last
    } else {
      p = make();
      p.catch(() => this.entries.delete(id));
    }
    this.entries.set(id, p);
    while (this.entries.size > this.size) this.entries.delete(this.entries.keys().next().value!);
    return p;
  }
  forget(id: string): void {
    this.entries.delete(id);
  }
}

/** The events of a trace read page by page through DumpEvents, as the caller, up to the bound. */
async function drawTimeline(replay: ReplayServiceServer, traceId: string, md: Metadata): Promise<Timeline> {
  const builder = new TimelineBuilder();
  for (let from = 0; ; from += DUMP_PAGE_EVENTS) {
    let got = 0;
    const to = Math.min(from + DUMP_PAGE_EVENTS, TIMELINE_LIMITS.events) - 1;
    await callServerStream(
      replay.dumpEvents,
      { traceId, from: BigInt(from), to: BigInt(to) },
      md,
      {
        write: (m) => {
          // The server checked each event's kind as it parsed the worker's lines (EventLines).
          for (const e of m.events) builder.add({ ...e, index: Number(e.index), kind: e.kind as DumpedEvent['kind'] });
          got += m.events.length;
          return true;
        },
        onDrain: () => {},
      },
    );
    if (got < to - from + 1) return builder.build(false);
    if (!builder.wantsMore) return builder.build(true);
  }
}

/** The recorded output, echoed by one replay on the server, up to the bound (output.ts). */
async function captureOutput(replay: ReplayServiceServer, traceId: string, md: Metadata, recordedStatus: number): Promise<RecordedOutput> {
  const output = new OutputCollector(recordedStatus);
  const stop = new AbortController();
  try {
    await callServerStream(
      replay.runReplay,
      { traceId },
      md,
      {
        write: (m) => {
          const more = m.stdout ? output.add(1, m.stdout) : m.stderr ? output.add(2, m.stderr) : true;
          if (m.exit) output.exit(m.exit.status);
          if (!more) stop.abort();
          return true;
        },
        onDrain: () => {},
      },
      stop.signal,
    );
  } catch (err) {
    if (!stop.signal.aborted) throw err; // stopped at the bound: what was kept is the answer
  }
  return output.build();
}

function apiRoutes(h: WebHandlers, log: Logger): Map<string, Route> {
  const timelines = new TraceCache<Timeline>();
  const outputs = new TraceCache<RecordedOutput>();
  const routes = new Map<string, Route>([
    [CatalogServiceService.listTraces.path, unaryRoute(h.catalog.listTraces, ListTracesRequest, ListTracesResponse)],
    [CatalogServiceService.getTrace.path, unaryRoute(h.catalog.getTrace, GetTraceRequest, GetTraceResponse)],
    [CatalogServiceService.deleteTrace.path, unaryRoute(h.catalog.deleteTrace, DeleteTraceRequest, DeleteTraceResponse)],
    [CatalogServiceService.getStats.path, unaryRoute(h.catalog.getStats, GetStatsRequest, GetStatsResponse)],
    [TokenServiceService.whoAmI.path, unaryRoute(h.token.whoAmI, WhoAmIRequest, WhoAmIResponse)],
    [ReplayServiceService.runReplay.path, streamRoute(h.replay.runReplay, RunReplayRequest, RunReplayResponse)],
    // Answers are cached per trace by the service itself.
    [ReplayServiceService.query.path, streamRoute(h.replay.query, QueryRequest, QueryResponse)],
  ]);
  // Not a gRPC method: the timeline drawn from DumpEvents. GetTrace first, every time, so the
  // caller's token and the trace's existence are checked as for any call, cached or not.
  // Drawn to the end even if this caller goes away: it is bounded, and the next one finds it.
  routes.set('/web/Timeline', async (body, md, res) => {
    const { summary } = await callUnary(h.catalog.getTrace, GetTraceRequest.fromJSON({ id: (body as { traceId?: unknown }).traceId }), md);
    const id = summary!.id;
    const started = Date.now();
    const timeline = await timelines.get(id, async () => {
      const t = await drawTimeline(h.replay, id, md);
      log.info({ trace: id, events: t.events, ms: Date.now() - started }, 'timeline drawn');
      return t;
    });
    res.writeHead(200, API_HEADERS).end(JSON.stringify(timeline));
  });
  // Not a gRPC method either: the recorded output, checked and cached as the timeline is.
  routes.set('/web/Output', async (body, md, res) => {
    const { summary } = await callUnary(h.catalog.getTrace, GetTraceRequest.fromJSON({ id: (body as { traceId?: unknown }).traceId }), md);
    const id = summary!.id;
    const started = Date.now();
    const output = await outputs.get(id, async () => {
      const o = await captureOutput(h.replay, id, md, summary!.exitStatus);
      log.info({ trace: id, stdout: o.stdout.bytes, stderr: o.stderr.bytes, ms: Date.now() - started }, 'recorded output read');
      return o;
    });
    // A failed replay is shown, not kept: the next visit tries again (it may have been the machine's).
    if (output.failed) outputs.forget(id);
    res.writeHead(200, API_HEADERS).end(JSON.stringify(output));
  });
  return routes;
}

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
};

const PAGE_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  // The page runs only its own scripts and talks only to this server.
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
};

/** Finds dist/web: next to the sources (server/http → ../../dist/web) or inside dist (../../web). */
function defaultWebRoot(): string | undefined {
  const here = path.dirname(fileURLToPath(import.meta.url));
  return [path.resolve(here, '../../dist/web'), path.resolve(here, '../../web')].find((d) => fs.existsSync(path.join(d, 'index.html')) && fs.existsSync(path.join(d, 'assets')));
}

/** Every file of the built page, read once: a URL names one of them or nothing (no path walking). */
function staticFiles(root: string | undefined): Map<string, { type: string; body: Buffer }> {
  const files = new Map<string, { type: string; body: Buffer }>();
  if (!root) return files;
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) files.set(`/${path.relative(root, p).split(path.sep).join('/')}`, { type: TYPES[path.extname(e.name)] ?? 'application/octet-stream', body: fs.readFileSync(p) });
    }
  };
  walk(root);
  return files;
}

/** Reads a request body of at most `max` bytes; undefined when it is longer. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size <= max) return void chunks.push(c);
      // The rest is read and dropped so the refusal reaches the client; the connection then closes.
      req.off('data', onData);
      req.resume();
      resolve(undefined);
    };
    req.on('data', onData);
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function parseBody(bytes: Buffer, method: string): unknown {
  if (bytes.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new CallError(status.INVALID_ARGUMENT, `malformed ${method} request: ${(err as Error).message.slice(0, 200)}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CallError(status.INVALID_ARGUMENT, `malformed ${method} request: expected a JSON object`);
  return v;
}

/** --http's HOST:PORT (port 0: any free one); throws a message for the user on anything else. */
export function parseHttpListen(listen: string): { host: string; port: number } {
  const sep = listen.lastIndexOf(':');
  const port = listen.slice(sep + 1);
  if (sep < 0 || !/^\d+$/.test(port) || Number(port) > 65535) throw new Error(`--http ${listen}: expected HOST:PORT`);
  return { host: listen.slice(0, sep) || '127.0.0.1', port: Number(port) };
}

export async function startWebServer(opts: WebServerOptions): Promise<RunningWebServer> {
  const { log } = opts;
  const root = opts.webRoot ?? defaultWebRoot();
  const files = staticFiles(root);
  if (files.size === 0) log.warn('the web page is not built (npm run build:web); serving the JSON API only');
  const routes = apiRoutes(opts.handlers, log);

  const api = async (req: http.IncomingMessage, res: http.ServerResponse, route: Route, method: string): Promise<void> => {
    const abort = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) abort.abort();
    });
    try {
      if (req.method !== 'POST') throw new CallError(status.UNIMPLEMENTED, `${method} takes POST with a JSON body`);
      // The gRPC side's bound on a request of this method, on its JSON.
      const max = maxRequestBytes(`/${method}`);
      const bytes = await readBody(req, max);
      if (!bytes) throw new CallError(status.INVALID_ARGUMENT, `request of more than ${max} bytes: ${method.slice(method.lastIndexOf('/') + 1)} takes at most ${max}`);
      await route(parseBody(bytes, method), metadataFor(req.headers.authorization), res, abort.signal);
    } catch (err) {
      const e = err instanceof CallError ? err : new CallError(status.INTERNAL, 'internal server error');
      if (!(err instanceof CallError)) log.error({ err, method }, 'internal error in the JSON layer');
      if (!res.headersSent) res.writeHead(HTTP_STATUS[e.code] ?? 500, { ...API_HEADERS, ...(req.complete ? {} : { connection: 'close' }) }).end(errorBody(e));
      else res.end();
    }
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (url.pathname.startsWith('/api/')) {
      const method = url.pathname.slice('/api/'.length);
      const route = routes.get(`/${method}`);
      if (route) return void api(req, res, route, method);
      res.writeHead(404, API_HEADERS).end(JSON.stringify({ code: 'NOT_FOUND', message: `no method ${method.slice(0, 200)}` }));
      return;
    }
    // The page routes in the browser (#/trace/ID); every other path is a file of the build.
    const file = files.get(url.pathname === '/' ? '/index.html' : url.pathname);
    if (!file || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...PAGE_HEADERS }).end(files.size === 0 ? 'the web page is not built: run npm run build:web\n' : 'not found\n');
      return;
    }
    const immutable = url.pathname.startsWith('/assets/'); // Vite names them by content hash
    res.writeHead(200, { 'content-type': file.type, 'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache', ...PAGE_HEADERS });
    res.end(req.method === 'HEAD' ? undefined : file.body);
  };

  const server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handle) : http.createServer(handle);
  const { host, port: wanted } = parseHttpListen(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen on ${opts.listen}: ${err.message}`)));
    server.listen(wanted, host.replace(/^\[(.*)\]$/, '$1'), () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const address = `${host}:${port}`;
  log.info({ address, tls: Boolean(opts.tls) }, 'rewind web page listening');
  return {
    address,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
