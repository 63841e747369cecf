import fs from 'node:fs';
import { isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { credentials, Metadata, status, type CallOptions, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { UserError } from '../trace/user_error.js';
import type { ClientConfig } from './config.js';
import { AgentServiceClient } from '../gen/rewind/agent/v1/agent.js';
import { TokenServiceClient } from '../gen/rewind/auth/v1/auth.js';
import { CatalogServiceClient } from '../gen/rewind/catalog/v1/catalog.js';
import { ReplayServiceClient } from '../gen/rewind/replay/v1/replay.js';
import { UploadServiceClient } from '../gen/rewind/upload/v1/upload.js';

export interface Clients {
  config: ClientConfig;
  upload: UploadServiceClient;
  catalog: CatalogServiceClient;
  replay: ReplayServiceClient;
  tokens: TokenServiceClient;
  agent: AgentServiceClient;
  metadata(): Metadata;
  close(): void;
}

const CHANNEL_OPTIONS = {
  'grpc.max_receive_message_length': 64 << 20,
  'grpc.max_send_message_length': 16 << 20,
  'grpc.keepalive_time_ms': 30_000,
  // Replay output streams in without waiting a round trip per 64 KiB.
  'grpc-node.flow_control_window': 16 << 20,
};

/**
 * The channel's target. Several servers (IP addresses only: a name with several DNS addresses does
 * the same) become one channel over all of them, whose pick_first policy connects to the first
 * that answers and moves on when it goes away: a call that fails UNAVAILABLE and is retried lands
 * on the next server.
 */
export function channelTarget(server: string): string {
  const list = server.split(',');
  if (list.length === 1) return server;
  const families = new Set(list.map((s) => isIP(hostOf(s))));
  const family = families.size === 1 ? [...families][0] : 0;
  if (!family) throw new UserError(`${server}: a list of servers takes IP addresses of one family (for names, give one name with several DNS addresses)`);
  return `ipv${family}:${list.join(',')}`;
}

/** The host of host:port, without the brackets of an IPv6 address. */
function hostOf(server: string): string {
  return server.slice(0, server.lastIndexOf(':')).replace(/^\[(.*)\]$/, '$1');
}

export function connect(config: ClientConfig): Clients {
  let creds: ChannelCredentials;
  if (config.tls) {
    let ca: Buffer | null = null;
    if (config.caFile) {
      try {
        ca = fs.readFileSync(config.caFile);
      } catch (err) {
        throw new UserError(`cannot read CA file ${config.caFile}: ${(err as Error).message}`);
      }
    }
    creds = credentials.createSsl(ca);
  } else {
    creds = credentials.createInsecure();
  }
  const target = channelTarget(config.server);
  const upload = new UploadServiceClient(target, creds, CHANNEL_OPTIONS);
  // All clients share upload's channel.
  const shared = { channelOverride: upload.getChannel() };
  const catalog = new CatalogServiceClient(target, creds, shared);
  const replay = new ReplayServiceClient(target, creds, shared);
  const tokens = new TokenServiceClient(target, creds, shared);
  const agent = new AgentServiceClient(target, creds, shared);
  return {
    config,
    upload,
    catalog,
    replay,
    tokens,
    agent,
    metadata: () => {
      const md = new Metadata();
      if (config.token) md.set('authorization', `Bearer ${config.token}`);
      return md;
    },
    close: () => upload.close(),
  };
}

type UnaryMethod<Req, Res> = (
  req: Req,
  md: Metadata,
  opts: Partial<CallOptions>,
  cb: (err: ServiceError | null, res: Res) => void,
) => unknown;

/** Calls a unary RPC with the token attached; resolves the response. */
export function call<Req, Res>(c: Clients, method: UnaryMethod<Req, Res>, req: Req, timeoutMs = 30_000): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(req, c.metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => (err ? reject(err) : resolve(res)));
  });
}

export function isServiceError(err: unknown): err is ServiceError {
  return typeof err === 'object' && err !== null && 'code' in err && 'details' in err && typeof (err as ServiceError).code === 'number';
}

/** Codes of a server or connection that failed this time: the same request may succeed later. */
const TRANSIENT = new Set<number>([
  status.UNAVAILABLE,
  status.ABORTED,
  status.INTERNAL,
  status.UNKNOWN,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
  status.RESOURCE_EXHAUSTED,
]);

export function isTransient(err: unknown): boolean {
  return isServiceError(err) && TRANSIENT.has(err.code);
}

/**
 * grpc-js says "No connection established. Last error: Error: connect ECONNREFUSED 1.2.3.4:5.
 * Resolution note: " (the note often empty): the last error is what the user needs.
 */
function unreachable(details: string): string {
  const last = /Last error: (?:Error: )?(.*?)\.?\s*(?:Resolution note:\s*(.*?))?\s*$/s.exec(details);
  if (!last) return details;
  return last[2] ? `${last[1]} (${last[2]})` : last[1]!;
}

/** Turns a gRPC failure into a one-line message for the user (no stack). */
export function userErrorFrom(err: unknown, server: string): Error {
  if (!isServiceError(err)) return err instanceof Error ? err : new Error(String(err));
  const d = err.details || err.message;
  switch (err.code) {
    case status.UNAUTHENTICATED:
      return new UserError(`not authenticated: ${d}`, 77);
    case status.PERMISSION_DENIED:
      return new UserError(`permission denied: ${d}`, 77);
    case status.NOT_FOUND:
      return new UserError(`not found: ${d}`, 66);
    case status.INVALID_ARGUMENT:
      return new UserError(`invalid argument: ${d}`, 65);
    case status.UNAVAILABLE:
      return new UserError(`cannot reach the server at ${server}: ${unreachable(d)}`, 69);
    case status.DEADLINE_EXCEEDED:
      return new UserError(`timed out: ${d}`, 75);
    case status.RESOURCE_EXHAUSTED:
      return new UserError(`server busy: ${d}`, 75);
    default:
      return new UserError(`server error (${status[err.code] ?? err.code}): ${d}`, 1);
  }
}

/**
 * Why a server that answers TCP cannot be reached, when the client and it disagree on TLS
 * (grpc-js then reports only a failed connection): one TLS handshake tells. Undefined when
 * they agree, or the server does not answer at all.
 */
export function tlsMismatch(config: ClientConfig, timeoutMs = 2000): Promise<string | undefined> {
  const first = config.server.split(',')[0]!; // of a cluster, the first tells
  const host = hostOf(first);
  const port = Number(first.slice(first.lastIndexOf(':') + 1));
  return new Promise((resolve) => {
    const sock = tlsConnect({ host, port, rejectUnauthorized: false, servername: isIP(host) ? undefined : host });
    const done = (why: string | undefined): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(undefined), timeoutMs);
    sock.once('secureConnect', () =>
      done(config.tls ? undefined : `the server at ${config.server} speaks TLS: connect with --tls (and --ca FILE unless a system CA signed its certificate)`),
    );
    sock.once('error', (err: NodeJS.ErrnoException) => {
      // Anything but TLS on the other end fails the handshake itself (not the TCP connection).
      const notTls = err.code === 'EPROTO' || String(err.code).startsWith('ERR_SSL') || /wrong version number|packet length/i.test(err.message);
      done(config.tls && notTls ? `the server at ${config.server} does not speak TLS: connect without --tls` : undefined);
    });
  });
}

/** Runs fn with connected clients, mapping gRPC errors to user errors and closing the channel. */
export async function withClients<T>(config: ClientConfig, fn: (c: Clients) => Promise<T>): Promise<T> {
  const c = connect(config);
  try {
    return await fn(c);
  } catch (err) {
    if (isServiceError(err) && err.code === status.UNAVAILABLE) {
      const why = await tlsMismatch(config);
      if (why) throw new UserError(`cannot reach the server: ${why}`, 69);
    }
    throw userErrorFrom(err, config.server);
  } finally {
    c.close();
  }
}
