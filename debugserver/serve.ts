// Puts a debug session on a transport: a TCP port on the loopback interface (one client at a
// time; another may connect after it hangs up) or stdin/stdout (the server's remote debug worker).
import net from 'node:net';
import { RspConnection } from './connection.js';
import { log } from './log.js';
import { SessionThread } from './session_thread.js';
import type { ReplayTraceOptions } from '../trace/replay.js';
import type { StartAt } from './gdb_server.js';
import type { ProcessChoice } from './session_thread.js';

export interface Serving {
  port: number;
  /** Resolves when the session has ended (k, vKill, D) or close() was called. */
  done: Promise<void>;
  /** Stops listening, drops the client and ends the session. */
  close(): void;
}

export interface ServeOptions {
  log: (line: string) => void;
  trace?: boolean;
}

export function listenTcp(gdb: SessionThread, port: number, options: ServeOptions): Promise<Serving> {
  const listener = net.createServer();
  let client: net.Socket | undefined;
  let finished = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));

  const finish = (): void => {
    if (finished) return;
    finished = true;
    client?.end();
    client?.destroy();
    listener.close();
    void gdb.close().then(resolveDone);
  };

  listener.on('connection', (socket) => {
    if (client || finished) {
      options.log('refusing a second debugger connection: one client at a time');
      socket.destroy();
      return;
    }
    client = socket;
    socket.setNoDelay(true);
    const connection = new RspConnection(gdb, {
      write: (data) => {
        if (!socket.destroyed) socket.write(data);
      },
      onEnd: () => {
        socket.end();
        finish();
      },
      log: options.log,
      trace: options.trace,
    });
    socket.on('data', (chunk: Buffer) => connection.receive(chunk));
    socket.on('error', (err) => options.log(`debugger connection: ${err.message}`));
    socket.on('close', () => {
      if (client === socket) client = undefined;
      if (!finished) {
        gdb.clientGone();
        options.log('the debugger disconnected; the session waits for another');
      }
    });
  });

  return new Promise((resolve, reject) => {
    listener.once('error', reject);
    listener.listen(port, '127.0.0.1', () => {
      listener.off('error', reject);
      const address = listener.address();
      const actual = typeof address === 'object' && address ? address.port : port;
      resolve({ port: actual, done, close: finish });
    });
  });
}

/** Speaks the protocol on stdin/stdout until the session ends or stdin closes. */
export function serveStdio(gdb: SessionThread, options: ServeOptions): Serving {
  let finished = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  const finish = (): void => {
    if (finished) return;
    finished = true;
    process.stdin.pause();
    process.stdin.destroy();
    void gdb.close().then(resolveDone);
  };
  const connection = new RspConnection(gdb, {
    // Pipes are written synchronously on Linux, so nothing is lost when we exit right after.
    write: (data) => {
      process.stdout.write(data);
    },
    onEnd: finish,
    log: options.log,
    trace: options.trace,
  });
  process.stdin.on('data', (chunk: Buffer) => connection.receive(chunk));
  process.stdin.on('end', finish);
  process.stdin.on('error', finish);
  process.stdout.on('error', finish);
  return { port: 0, done, close: finish };
}

/** Ends the session on SIGINT, SIGTERM or SIGHUP. */
export function closeOnSignal(serving: { close(): unknown }): void {
  const stop = (): void => {
    void serving.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop);
}

/** Options from the environment: REWIND_DEBUG_RSP=1 logs every packet. */
export function serveOptions(): ServeOptions {
  return { log, trace: process.env.REWIND_DEBUG_RSP === '1' };
}

/**
 * A debug session of a trace directory on stdin/stdout until it ends: `rewind debug DIR --stdio`
 * and the server's debug workers. The program's recorded output goes to the debugger's console.
 */
export async function debugOverStdio(dir: string, opts: ReplayTraceOptions & { at?: StartAt; process?: ProcessChoice } = {}): Promise<void> {
  const serving = serveStdio(await SessionThread.start(dir, 'console', opts), serveOptions());
  closeOnSignal(serving);
  await serving.done;
}
