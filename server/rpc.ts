// RPC middleware: every call is authenticated against one table of the role each method needs,
// and every failure goes through one mapper from typed errors to gRPC statuses. Handlers are
// plain functions of the request (or the call, for streams) and the caller's token.
import {
  Metadata,
  status,
  type handleBidiStreamingCall,
  type handleClientStreamingCall,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerDuplexStream,
  type ServerErrorResponse,
  type ServerReadableStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type sendUnaryData,
} from '@grpc/grpc-js';
import Database from 'better-sqlite3';
import type { Logger } from 'pino';
import { BlobWriteError, isNoSpace } from './blobstore/blobstore.js';
import type { Catalog, RoleName, TokenRow } from './catalog/catalog.js';
import { RpcError } from './errors.js';
import { ManifestError } from '../trace/manifest.js';
import { BLOB_BUSY_TRAILER } from '../remote/upload_wire.js';

export interface RpcContext {
  token: TokenRow;
  log: Logger;
}

export interface AuthDeps {
  catalog: Catalog;
  log: Logger;
}

/** A method as the generated service definitions describe it: its path names the table's entry. */
export interface Method {
  path: string;
}

/**
 * Who may call each method besides admin, who may call every one. A method missing here is
 * admin's only.
 */
const ROLES: Readonly<Record<string, readonly RoleName[]>> = {
  '/rewind.upload.v1.UploadService/PrepareUpload': ['agent'],
  '/rewind.upload.v1.UploadService/UploadBlob': ['agent'],
  '/rewind.upload.v1.UploadService/CommitUpload': ['agent'],
  '/rewind.catalog.v1.CatalogService/ListTraces': ['reader'],
  '/rewind.catalog.v1.CatalogService/GetTrace': ['reader'],
  '/rewind.catalog.v1.CatalogService/GetStats': ['reader'],
  '/rewind.replay.v1.ReplayService/RunReplay': ['reader'],
  '/rewind.replay.v1.ReplayService/DumpEvents': ['reader'],
  '/rewind.replay.v1.ReplayService/Query': ['reader'],
  '/rewind.replay.v1.ReplayService/Debug': ['reader'],
  '/rewind.auth.v1.TokenService/WhoAmI': ['agent', 'reader'],
  '/rewind.agent.v1.AgentService/Register': ['agent'],
  '/rewind.agent.v1.AgentService/Heartbeat': ['agent'],
  '/rewind.agent.v1.AgentService/CompleteJob': ['agent'],
  '/rewind.agent.v1.AgentService/ListHosts': ['reader'],
  '/rewind.agent.v1.AgentService/GetJob': ['reader'],
};

function methodName(m: Method): string {
  return m.path.slice(m.path.lastIndexOf('/') + 1);
}

export async function authenticate(deps: AuthDeps, md: Metadata, method: Method): Promise<TokenRow> {
  const v = md.get('authorization')[0];
  const header = typeof v === 'string' ? v : v?.toString('utf8');
  if (!header) throw new RpcError(status.UNAUTHENTICATED, 'no token given: pass --token, set REWIND_TOKEN, or add it to the config file');
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw new RpcError(status.UNAUTHENTICATED, 'malformed authorization header: expected "Bearer <token>"');
  const token = await deps.catalog.tokens.forSecret(m[1]!);
  if (!token) throw new RpcError(status.UNAUTHENTICATED, 'invalid or revoked token');
  const allowed = ROLES[method.path] ?? [];
  if (token.role !== 'admin' && !allowed.includes(token.role)) {
    const need = [...allowed, 'admin'].join(' or ');
    const an = (w: string): string => (/^[aeiou]/.test(w) ? `an ${w}` : `a ${w}`);
    throw new RpcError(status.PERMISSION_DENIED, `${methodName(method)} needs ${an(need)} token; this is ${an(token.role)} token`);
  }
  return token;
}

const BLOB_STATUS: Record<BlobWriteError['kind'], status> = {
  'too-large': status.INVALID_ARGUMENT,
  hash: status.DATA_LOSS,
  chunk: status.DATA_LOSS,
  busy: status.ABORTED,
  offset: status.FAILED_PRECONDITION,
  incomplete: status.FAILED_PRECONDITION,
  'no-space': status.RESOURCE_EXHAUSTED,
};

/** SQLite's result codes that a client can act on: try again, or free space. */
const SQLITE_STATUS: Readonly<Record<string, status>> = {
  SQLITE_BUSY: status.UNAVAILABLE,
  SQLITE_LOCKED: status.UNAVAILABLE,
  SQLITE_FULL: status.RESOURCE_EXHAUSTED,
};

const MAX_DETAILS = 1024;

/** Converts any thrown value into a gRPC error; unexpected ones are logged and hidden. */
export function toServiceError(err: unknown, log: Logger, method: Method): ServerErrorResponse {
  // Details travel in a trailer: a long one (a message quoting a huge request) would wedge the connection.
  const reply = (name: string, code: status, text: string): ServerErrorResponse => {
    const message = text.length > MAX_DETAILS ? `${text.slice(0, MAX_DETAILS)}…` : text;
    return { name, message, code, details: message };
  };
  if (err instanceof RpcError) return reply('RpcError', err.code, err.message);
  if (err instanceof ManifestError) return reply('ManifestError', status.INVALID_ARGUMENT, err.message);
  if (err instanceof BlobWriteError) {
    const r = reply('BlobWriteError', BLOB_STATUS[err.kind], err.message);
    if (err.kind === 'busy') {
      r.metadata = new Metadata();
      r.metadata.set(BLOB_BUSY_TRAILER, '1');
    }
    return r;
  }
  if (isNoSpace(err)) {
    log.error({ err, method: method.path }, 'the disk is full');
    return reply('NoSpace', status.RESOURCE_EXHAUSTED, "the server's disk is full; try again once space is freed");
  }
  const sqlite = err instanceof Database.SqliteError ? SQLITE_STATUS[err.code] : undefined;
  if (sqlite !== undefined) {
    log.warn({ err, method: method.path }, 'catalogue unavailable');
    return reply('SqliteError', sqlite, `the server's catalogue cannot take this now (${(err as Error).message}); try again`);
  }
  log.error({ err, method: method.path }, 'internal error');
  return reply('InternalError', status.INTERNAL, 'internal server error');
}

/** Runs a call that answers once (unary, client stream): authenticated, its failure mapped. */
function answer<Res>(deps: AuthDeps, method: Method, md: Metadata, run: (ctx: RpcContext) => Promise<Res> | Res, callback: sendUnaryData<Res>): void {
  void (async () => {
    try {
      const token = await authenticate(deps, md, method);
      callback(null, await run({ token, log: deps.log }));
    } catch (err) {
      callback(toServiceError(err, deps.log, method));
    }
  })();
}

/** What a stream the server writes offers here. */
interface OutStream {
  readonly metadata: Metadata;
  readonly cancelled: boolean;
  end(): void;
  emit(event: 'error', err: ServerErrorResponse): boolean;
}

/** Runs a call the server streams to: fn's resolution ends it OK, a throw with its status. */
function stream<Call extends OutStream>(deps: AuthDeps, method: Method, fn: (call: Call, ctx: RpcContext) => Promise<void>): (call: Call) => void {
  return (call) => {
    void (async () => {
      try {
        const token = await authenticate(deps, call.metadata, method);
        await fn(call, { token, log: deps.log });
        if (!call.cancelled) call.end();
      } catch (err) {
        if (!call.cancelled) call.emit('error', toServiceError(err, deps.log, method));
      }
    })();
  };
}

export function unary<Req, Res>(
  deps: AuthDeps,
  method: Method,
  fn: (req: Req, ctx: RpcContext, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call, callback) => answer(deps, method, call.metadata, (ctx) => fn(call.request, ctx, call), callback);
}

export function clientStream<Req, Res>(
  deps: AuthDeps,
  method: Method,
  fn: (call: ServerReadableStream<Req, Res>, ctx: RpcContext) => Promise<Res>,
): handleClientStreamingCall<Req, Res> {
  return (call, callback) => answer(deps, method, call.metadata, (ctx) => fn(call, ctx), callback);
}

export function serverStream<Req, Res>(
  deps: AuthDeps,
  method: Method,
  fn: (call: ServerWritableStream<Req, Res>, ctx: RpcContext) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return stream(deps, method, fn);
}

export function bidiStream<Req, Res>(
  deps: AuthDeps,
  method: Method,
  fn: (call: ServerDuplexStream<Req, Res>, ctx: RpcContext) => Promise<void>,
): handleBidiStreamingCall<Req, Res> {
  return stream(deps, method, fn);
}
