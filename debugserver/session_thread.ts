// A debug session on a thread of its own (session_worker.ts), seen from the connection's
// thread: packets go there and replies come back, while this thread stays free to pass on an
// interrupt (gdb's Ctrl-C) to a resume that is running.
import { Worker } from 'node:worker_threads';
import { UserError } from '../trace/user_error.js';
import type { Response } from './gdb_server.js';

/** What the session thread starts from. */
export interface SessionStart {
  dir: string;
  /** Where the program's recorded stdout is shown (its stderr always goes to ours). */
  programStdout: number;
  /** One Int32: non-zero asks a running resume to stop. */
  interrupt: SharedArrayBuffer;
}

export type ToSession = { type: 'packet'; payload: Uint8Array } | { type: 'clientGone' } | { type: 'close' };

export type FromSession = { type: 'ready' } | { type: 'failed'; message: string; exitCode: number } | { type: 'reply'; response: Response };

/** How long close() waits for a running resume to reach a point where it can stop. */
const CLOSE_WAIT_MS = 5000;

export class SessionThread {
  private readonly interruptWord: Int32Array;
  private pending: ((response: Response) => void) | undefined;
  /** Packets go to the session one at a time, also across clients (one may leave mid-command). */
  private turn: Promise<unknown> = Promise.resolve();
  private closing: Promise<void> | undefined;
  private gone: string | undefined;

  private constructor(
    private readonly worker: Worker,
    interrupt: SharedArrayBuffer,
  ) {
    this.interruptWord = new Int32Array(interrupt);
    worker.on('message', (m: FromSession) => {
      if (m.type === 'reply') this.settle(m.response);
    });
    worker.on('error', (err) => this.lost(`the debug session failed: ${err.message}`));
    worker.on('exit', () => this.lost('the debug session has ended'));
  }

  /** Starts the session; a trace that cannot be debugged is a UserError. */
  static start(dir: string, programStdout: number): Promise<SessionThread> {
    const interrupt = new SharedArrayBuffer(4);
    const start: SessionStart = { dir, programStdout, interrupt };
    const worker = new Worker(new URL('./session_worker.js', import.meta.url), { workerData: start });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new UserError(`cannot start a debug session on ${dir}: ${err.message}`));
      worker.once('error', onError);
      worker.once('message', (m: FromSession) => {
        worker.off('error', onError);
        if (m.type === 'ready') {
          resolve(new SessionThread(worker, interrupt));
        } else {
          void worker.terminate();
          reject(new UserError(m.type === 'failed' ? m.message : `the debug session did not start (${m.type})`, m.type === 'failed' ? m.exitCode : 1));
        }
      });
    });
  }

  /** Handles one packet, after the packets handed over before it. */
  handle(payload: Buffer): Promise<Response> {
    const reply = this.turn.then(
      () =>
        new Promise<Response>((resolve) => {
          if (this.gone !== undefined) return resolve({ packets: [`E.${this.gone}`], end: true });
          this.pending = resolve;
          this.worker.postMessage({ type: 'packet', payload } satisfies ToSession);
        }),
    );
    this.turn = reply;
    return reply;
  }

  /**
   * gdb's Ctrl-C: stops the resume under way. gdb sends it while it waits for a resume to stop,
   * but it may arrive just before that resume or just after it stopped for another reason (a
   * breakpoint gdb handles itself and resumes from): it stays pending, like a SIGINT, until a
   * stop reports it (the session thread clears it then).
   */
  interrupt(): void {
    Atomics.store(this.interruptWord, 0, 1);
  }

  /** The client left: a resume it started is interrupted, so that the next one is served soon. */
  clientGone(): void {
    if (this.pending) Atomics.store(this.interruptWord, 0, 1);
    if (this.gone === undefined) this.worker.postMessage({ type: 'clientGone' } satisfies ToSession);
  }

  /** Ends the session and its processes; a resume under way is interrupted first. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (this.gone !== undefined) return resolve();
      Atomics.store(this.interruptWord, 0, 1);
      const timer = setTimeout(() => {
        // A long stretch of user code runs on: the process's exit ends it (PTRACE_O_EXITKILL).
        this.worker.unref();
        resolve();
      }, CLOSE_WAIT_MS);
      this.worker.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      this.worker.postMessage({ type: 'close' } satisfies ToSession);
    });
    return this.closing;
  }

  private settle(response: Response): void {
    const resolve = this.pending;
    this.pending = undefined;
    // Buffers cross threads as plain Uint8Arrays.
    resolve?.({ ...response, packets: response.packets.map((p) => (typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength))) });
  }

  private lost(why: string): void {
    if (this.gone !== undefined) return;
    this.gone = why;
    this.settle({ packets: [`E.${why}`], end: true });
  }
}
