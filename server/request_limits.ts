// RPC middleware for what arrives before any handler runs: a request larger than its method
// takes is refused before it is decoded, and one that does not decode is INVALID_ARGUMENT
// (grpc-js would answer INTERNAL). Both travel from the deserializer to an interceptor as a
// RefusedRequest, which answers the call without passing the message on (a client stream's
// handler gets it in the message's place); another streaming handler then sees its call cancelled.
import { status, type ServerInterceptingCallInterface, type ServerInterceptor, ServerInterceptingCall, type ServiceDefinition } from '@grpc/grpc-js';

/** The default bound of one request message: filters, ids, tokens. */
const DEFAULT_REQUEST_BYTES = 64 << 10;

/** Methods whose requests may be larger. */
const REQUEST_BYTES: Readonly<Record<string, number>> = {
  // A manifest: argv and env alone may take 6 MiB each.
  '/rewind.upload.v1.UploadService/PrepareUpload': 16 << 20,
  '/rewind.upload.v1.UploadService/CommitUpload': 16 << 20,
  // A chunk of at most 4 MiB and its header.
  '/rewind.upload.v1.UploadService/UploadBlob': (4 << 20) + (4 << 10),
  // Remote-protocol bytes, piped to the worker with flow control: only the server's own bound.
  '/rewind.replay.v1.ReplayService/Debug': 16 << 20,
  '/rewind.agent.v1.AgentService/CreateJob': 1 << 20,
  '/rewind.agent.v1.AgentService/Register': 256 << 10,
};

export function maxRequestBytes(path: string): number {
  return REQUEST_BYTES[path] ?? DEFAULT_REQUEST_BYTES;
}

/** A request the deserializer refused, in place of the message. */
export class RefusedRequest {
  constructor(
    readonly code: status,
    readonly details: string,
  ) {}
}

function methodName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1);
}

/**
 * The service definition with each method's deserializer bounded in size and made total: it
 * returns a RefusedRequest instead of throwing.
 */
export function withRequestLimits<D extends ServiceDefinition>(definition: D): D {
  const out: Record<string, unknown> = {};
  for (const [key, m] of Object.entries(definition)) {
    const max = maxRequestBytes(m.path);
    const decode = m.requestDeserialize;
    out[key] = {
      ...m,
      requestDeserialize: (bytes: Buffer): unknown => {
        if (bytes.length > max) {
          return new RefusedRequest(status.INVALID_ARGUMENT, `request of ${bytes.length} bytes: ${methodName(m.path)} takes at most ${max}`);
        }
        try {
          return decode(bytes);
        } catch (err) {
          return new RefusedRequest(status.INVALID_ARGUMENT, `malformed ${methodName(m.path)} request: ${String((err as Error).message).slice(0, 200)}`);
        }
      },
    };
  }
  return out as D;
}

/**
 * Answers a call whose message was refused with the refusal, and never hands it to the handler.
 * A client stream's refusal goes to its handler instead (UploadBlob's), which answers once it has
 * put away what the stream brought: an upload's bytes are held for a resume before the client
 * hears the stream failed.
 */
export const refuseRequests: ServerInterceptor = (method, call: ServerInterceptingCallInterface) => {
  const toHandler = method.requestStream && !method.responseStream;
  const intercepted: ServerInterceptingCall = new ServerInterceptingCall(call, {
    start: (next) =>
      next({
        onReceiveMessage: (message: unknown, pass: (m: unknown) => void) => {
          if (message instanceof RefusedRequest && !toHandler) intercepted.sendStatus({ code: message.code, details: message.details });
          else pass(message);
        },
      }),
  });
  return intercepted;
};
