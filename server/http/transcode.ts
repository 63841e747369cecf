// Calls the gRPC handlers of server/services from the JSON layer. Each call goes through the very
// handler a gRPC client reaches, so authentication, the role table, the error mapping and the
// services' own checks live in one place (server/rpc.ts and the services), not twice. The handlers
// read only a call's request, metadata, cancellation and flow control; that is what these calls
// offer.
import { EventEmitter } from 'node:events';
import {
  Metadata,
  status,
  type handleServerStreamingCall,
  type handleUnaryCall,
  type ServerErrorResponse,
  type ServerUnaryCall,
  type ServerWritableStream,
} from '@grpc/grpc-js';

/** A failed call: the gRPC status the handler answered with. */
export class CallError extends Error {
  constructor(
    readonly code: status,
    message: string,
  ) {
    super(message);
    this.name = 'CallError';
  }
}

/** What a handler fails with: a status, and details or a message. */
type Failure = { code?: status; details?: string; message?: string };

function callError(err: Failure): CallError {
  const code = err.code ?? status.UNKNOWN;
  return new CallError(code, err.details || err.message || status[code]);
}

/** The metadata a gRPC client would send: the HTTP request's Authorization header, as is. */
export function metadataFor(authorization: string | undefined): Metadata {
  const md = new Metadata();
  if (authorization !== undefined) md.set('authorization', authorization);
  return md;
}

/** Runs a unary handler on one request; resolves with its response or rejects with a CallError. */
export function callUnary<Req, Res>(handler: handleUnaryCall<Req, Res>, request: Req, metadata: Metadata): Promise<Res> {
  return new Promise((resolve, reject) => {
    const call = Object.assign(new EventEmitter(), { request, metadata, cancelled: false });
    handler(call as unknown as ServerUnaryCall<Req, Res>, (err, value) => {
      if (err) reject(callError(err));
      else if (value === undefined || value === null) reject(new CallError(status.INTERNAL, 'the handler answered nothing'));
      else resolve(value);
    });
  });
}

/** Where a server stream's messages go: `write` returns false when the reader is behind. */
export interface StreamSink<Res> {
  write(message: Res): boolean;
  onDrain(cb: () => void): void;
}

/** The part of a ServerWritableStream the handlers use, over a sink. */
class SinkCall<Req, Res> extends EventEmitter {
  cancelled = false;
  constructor(
    readonly request: Req,
    readonly metadata: Metadata,
    private readonly sink: StreamSink<Res>,
    private readonly done: (err?: CallError) => void,
  ) {
    super();
    // The handlers report their failure by emitting 'error' (as grpc-js calls do).
    this.on('error', (err: ServerErrorResponse) => done(callError(err)));
  }
  write(message: Res): boolean {
    if (this.cancelled) return true;
    const ok = this.sink.write(message);
    if (!ok) this.sink.onDrain(() => this.emit('drain'));
    return ok;
  }
  end(): void {
    this.done();
  }
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.emit('cancelled');
    this.done(new CallError(status.CANCELLED, 'cancelled by the client'));
  }
}

/**
 * Runs a server-streaming handler: its messages go to `sink`; resolves when it ends, rejects with
 * a CallError when it fails. Aborting `signal` cancels the call as a gRPC client's cancel would.
 */
export function callServerStream<Req, Res>(
  handler: handleServerStreamingCall<Req, Res>,
  request: Req,
  metadata: Metadata,
  sink: StreamSink<Res>,
  signal?: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const call = new SinkCall<Req, Res>(request, metadata, sink, (err) => {
      if (settled) return;
      settled = true;
      signal?.removeEventListener('abort', onAbort);
      if (err) reject(err);
      else resolve();
    });
    const onAbort = (): void => call.cancel();
    if (signal?.aborted) return call.cancel();
    signal?.addEventListener('abort', onAbort);
    handler(call as unknown as ServerWritableStream<Req, Res>);
  });
}
