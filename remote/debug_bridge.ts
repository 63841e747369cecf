import net from 'node:net';
import { status } from '@grpc/grpc-js';
import { UserError } from '../trace/user_error.js';
import { call, connect, isServiceError, userErrorFrom, type Clients } from './client.js';
import { resolveConfig, type ClientFlags } from './config.js';
import type { DebugResponse } from '../gen/rewind/replay/v1/replay.js';
import { checksum } from '../debugserver/packet.js';
import type { ProcessChoice } from '../debugserver/session_thread.js';

export interface RemoteDebugBridge {
  /** The local TCP port gdb connects to (127.0.0.1). */
  port: number;
  /**
   * Resolves when the bridge has stopped listening: after close(), or after an error that any
   * later connection would meet too (unknown trace, bad token), which was printed on stderr.
   */
  closed: Promise<void>;
  close(): Promise<void>;
}

/** After gdb hangs up, how long the server gets to end the session before the call is cancelled. */
const END_GRACE_MS = 3000;

/** Errors that a new connection would meet again: the bridge stops after printing one. */
const FATAL = new Set<number>([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.NOT_FOUND, status.INVALID_ARGUMENT]);

/**
 * Bridges a local TCP port to a debug session on the server (`rewind debug ID`): each accepted
 * connection (one at a time) gets a `ReplayService.Debug` stream of its own, and the gdb
 * remote-protocol bytes are piped both ways with backpressure. The trace and the token are
 * checked before listening, so an unknown id or a bad token is a UserError here, not a refused
 * gdb connection. Errors during a session are printed on stderr as `rewind: ...`.
 */
/**
 * Where a session starts: the end, event N (a monitor seek the bridge sends first), or a query's
 * moment (carried in the Debug start); undefined: the program's first instruction.
 */
export type RemoteStart = 'end' | { event: number } | { moment: string };

export async function openRemoteDebugBridge(traceId: string, flags: ClientFlags, port: number, at?: RemoteStart, choice?: ProcessChoice): Promise<RemoteDebugBridge> {
  const config = resolveConfig(flags);
  const c = connect(config);
  try {
    await call(c, c.catalog.getTrace.bind(c.catalog), { id: traceId });
  } catch (err) {
    c.close();
    throw userErrorFrom(err, config.server);
  }

  const listener = net.createServer();
  let active: { socket: net.Socket; stop(): void } | undefined;
  let closing = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
  const shutdown = (): void => {
    if (closing) return;
    closing = true;
    active?.stop();
    listener.close(() => {
      c.close();
      resolveClosed();
    });
  };

  listener.on('connection', (socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    // One debugger at a time: the one connected until it hangs up (its session may still be ending).
    if (active && !active.socket.readableEnded && !active.socket.destroyed) {
      process.stderr.write(
        `rewind: a debugger is already connected to this session; closing the connection from ${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}\n`,
      );
      socket.destroy();
      return;
    }
    const session = bridge(c, config.server, { traceId, ...choice }, socket, at, (fatal) => {
      if (active?.socket === socket) active = undefined;
      if (fatal) shutdown();
    });
    active = { socket, stop: session.stop };
  });

  const bound = await new Promise<number>((resolve, reject) => {
    listener.once('error', (err: NodeJS.ErrnoException) => {
      c.close();
      const why = err.code === 'EADDRINUSE' ? 'the port is in use' : err.message;
      reject(new UserError(`cannot listen on 127.0.0.1:${port}: ${why}`));
    });
    listener.listen(port, '127.0.0.1', () => resolve((listener.address() as net.AddressInfo).port));
  });
  listener.on('error', (err) => process.stderr.write(`rewind: debug bridge: ${err.message}\n`));

  return {
    port: bound,
    closed,
    close: async () => {
      shutdown();
      await closed;
    },
  };
}

/** The monitor command that takes a new session where --at-end or --event N start it. */
function seekCommand(at: 'end' | { event: number }): string {
  return at === 'end' ? 'seek end' : `seek ${at.event}`;
}

/**
 * Pipes one TCP connection through one Debug stream; `done(fatal)` runs once both are finished.
 * With `at` an event or the end, the session first goes there (a monitor seek whose reply the
 * debugger never sees), and only then are the debugger's bytes passed on.
 */
function bridge(c: Clients, server: string, start: { traceId: string } & ProcessChoice, socket: net.Socket, at: RemoteStart | undefined, done: (fatal: boolean) => void): { stop(): void } {
  const stream = c.replay.debug(c.metadata());
  let streamDone = false;
  let socketDone = false;
  let fatal = false;
  let cancelledByUs = false;
  let grace: NodeJS.Timeout | undefined;
  const check = (): void => {
    if (streamDone && socketDone) {
      if (grace) clearTimeout(grace);
      done(fatal);
    }
  };
  const cancel = (): void => {
    if (streamDone) return;
    cancelledByUs = true;
    stream.cancel();
  };

  socket.setNoDelay(true);
  const moment = at !== undefined && at !== 'end' && 'moment' in at ? at.moment : undefined;
  const seek = at !== undefined && moment === undefined ? (at as 'end' | { event: number }) : undefined;
  stream.write({ start: { ...start, moment } });
  // Until the seek's reply (OK or an error packet) has come, what the session sends is ours.
  let seeking: Buffer | undefined;
  if (seek !== undefined) {
    socket.pause();
    seeking = Buffer.alloc(0);
    const payload = Buffer.from(`qRcmd,${Buffer.from(seekCommand(seek)).toString('hex')}`, 'latin1');
    stream.write({ data: Buffer.concat([Buffer.from('$'), payload, Buffer.from(`#${checksum(payload).toString(16).padStart(2, '0')}`)]) });
  }
  const seekReply = (data: Buffer): Buffer | undefined => {
    seeking = Buffer.concat([seeking!, data]);
    for (const m of seeking.toString('latin1').matchAll(/\$([^#]*)#[0-9a-fA-F]{2}/g)) {
      const reply = m[1]!;
      if (reply !== 'OK' && !reply.startsWith('E')) continue; // console output
      if (reply !== 'OK') process.stderr.write(`rewind: cannot start ${seek === 'end' ? 'at the end' : `at event ${(seek as { event: number }).event}`}: ${reply.slice(2)}\n`);
      const rest = seeking.subarray(m.index + m[0].length);
      seeking = undefined;
      socket.resume();
      return rest;
    }
    return undefined;
  };

  socket.on('data', (data: Buffer) => {
    if (streamDone) return;
    if (!stream.write({ data })) {
      socket.pause();
      stream.once('drain', () => socket.resume());
    }
  });
  socket.on('end', () => {
    // gdb hung up: the worker sees the end of its input and exits; cancel if it does not.
    if (!streamDone) stream.end();
  });
  socket.on('error', () => {
    // ECONNRESET and the like: 'close' follows.
  });
  socket.on('close', () => {
    socketDone = true;
    if (!streamDone) {
      stream.end();
      grace = setTimeout(cancel, END_GRACE_MS);
    }
    check();
  });

  stream.on('data', (msg: DebugResponse) => {
    const data = msg.data && msg.data.length > 0 && seeking ? seekReply(Buffer.from(msg.data)) : msg.data;
    if (data && data.length > 0 && !socket.destroyed) {
      if (!socket.write(data)) {
        stream.pause();
        socket.once('drain', () => stream.resume());
      }
    }
  });
  const finish = (): void => {
    if (streamDone) return;
    streamDone = true;
    if (!socket.destroyed) socket.end();
    check();
  };
  // After every message was handed to the socket (an OK status; errors come as 'error').
  stream.on('end', finish);
  stream.on('error', (e: unknown) => {
    if (!(cancelledByUs && isServiceError(e) && e.code === status.CANCELLED)) {
      process.stderr.write(`rewind: ${describe(e, server)}\n`);
      if (isServiceError(e) && FATAL.has(e.code)) fatal = true;
    }
    streamDone = true;
    socket.destroy();
    check();
  });

  return {
    stop: () => {
      cancel();
      socket.destroy();
    },
  };
}

function describe(e: unknown, server: string): string {
  if (isServiceError(e) && (e.code === status.ABORTED || e.code === status.DEADLINE_EXCEEDED || e.code === status.INTERNAL)) {
    return `remote debug session failed: ${e.details}`;
  }
  if (isServiceError(e) && e.code === status.CANCELLED) return `remote debug session cancelled: ${e.details}`;
  return userErrorFrom(e, server).message;
}
