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
} from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { BlobWriteError } from './blobstore/blobstore.js';
import type { Catalog, RoleName, TokenRow } from './catalog/catalog.js';
import { RpcError } from './errors.js';
import { ManifestError } from '../trace/manifest.js';

export interface RpcContext {
  token: TokenRow;
  log: Logger;
}

export interface AuthDeps {
  catalog: Catalog;
  log: Logger;
}

/** Who may call: admin may always; listed roles in addition. */
export type Allowed = readonly RoleName[];

export function authenticate(deps: AuthDeps, md: Metadata, allowed: Allowed, method: string): TokenRow {
  const v = md.get('authorization')[0];
  const header = typeof v === 'string' ? v : v?.toString('utf8');
  if (!header) throw new RpcError(status.UNAUTHENTICATED, 'no token given: pass --token, set REWIND_TOKEN, or add it to the config file');
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw new RpcError(status.UNAUTHENTICATED, 'malformed authorization header: expected "Bearer <token>"');
  const token = deps.catalog.tokenForSecret(m[1]!);
  if (!token) throw new RpcError(status.UNAUTHENTICATED, 'invalid or revoked token');
  if (token.role !== 'admin' && !allowed.includes(token.role)) {
    const need = [...allowed, 'admin'].join(' or ');
    const an = (w: string): string => (/^[aeiou]/.test(w) ? `an ${w}` : `a ${w}`);
    throw new RpcError(status.PERMISSION_DENIED, `${method} needs ${an(need)} token; this is ${an(token.role)} token`);
  }
  return token;
}

/** Converts any thrown value into a gRPC error; unexpected ones are logged and hidden. */
export function toServiceError(err: unknown, log: Logger, method: string): ServerErrorResponse {
  if (err instanceof RpcError) return { name: 'RpcError', message: err.message, code: err.code, details: err.message };
  if (err instanceof ManifestError) return { name: 'ManifestError', message: err.message, code: status.INVALID_ARGUMENT, details: err.message };
  if (err instanceof BlobWriteError) {
    const code =
      err.kind === 'too-large'
        ? status.INVALID_ARGUMENT
        : err.kind === 'hash' || err.kind === 'chunk'
          ? status.DATA_LOSS
          : err.kind === 'busy'
            ? status.ABORTED
            : status.FAILED_PRECONDITION;
    return { name: 'BlobWriteError', message: err.message, code, details: err.message };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  if (e.name === 'SqliteError' && /fts5/.test(e.message)) {
    return { name: 'RpcError', message: `bad search text: ${e.message}`, code: status.INVALID_ARGUMENT, details: `bad search text: ${e.message}` };
  }
  log.error({ err: e, method }, 'internal error');
  return { name: 'InternalError', message: 'internal server error', code: status.INTERNAL, details: 'internal server error' };
}

export function unary<Req, Res>(
  deps: AuthDeps,
  method: string,
  allowed: Allowed,
  fn: (req: Req, ctx: RpcContext, call: ServerUnaryCall<Req, Res>) => Promise<Res> | Res,
): handleUnaryCall<Req, Res> {
  return (call, callback) => {
    void (async () => {
      try {
        const token = authenticate(deps, call.metadata, allowed, method);
        const res = await fn(call.request, { token, log: deps.log }, call);
        callback(null, res);
      } catch (err) {
        callback(toServiceError(err, deps.log, method));
      }
    })();
  };
}

export function serverStream<Req, Res>(
  deps: AuthDeps,
  method: string,
  allowed: Allowed,
  fn: (call: ServerWritableStream<Req, Res>, ctx: RpcContext) => Promise<void>,
): handleServerStreamingCall<Req, Res> {
  return (call) => {
    void (async () => {
      try {
        const token = authenticate(deps, call.metadata, allowed, method);
        await fn(call, { token, log: deps.log });
        call.end();
      } catch (err) {
        if (!call.cancelled) call.emit('error', toServiceError(err, deps.log, method));
      }
    })();
  };
}

export function clientStream<Req, Res>(
  deps: AuthDeps,
  method: string,
  allowed: Allowed,
  fn: (call: ServerReadableStream<Req, Res>, ctx: RpcContext) => Promise<Res>,
): handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    let token: TokenRow;
    try {
      token = authenticate(deps, call.metadata, allowed, method);
    } catch (err) {
      callback(toServiceError(err, deps.log, method));
      return;
    }
    fn(call, { token, log: deps.log }).then(
      (res) => callback(null, res),
      (err: unknown) => callback(toServiceError(err, deps.log, method)),
    );
  };
}

/** A bidirectional stream: fn runs after authentication; its resolution ends the call OK, a throw with its status. */
export function bidiStream<Req, Res>(
  deps: AuthDeps,
  method: string,
  allowed: Allowed,
  fn: (call: ServerDuplexStream<Req, Res>, ctx: RpcContext) => Promise<void>,
): handleBidiStreamingCall<Req, Res> {
  return (call) => {
    void (async () => {
      try {
        const token = authenticate(deps, call.metadata, allowed, method);
        await fn(call, { token, log: deps.log });
        if (!call.cancelled) call.end();
      } catch (err) {
        if (!call.cancelled) call.emit('error', toServiceError(err, deps.log, method));
      }
    })();
  };
}
