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

  /** Handles one packet; packets are handed over one at a time. */
  handle(payload: Buffer): Promise<Response> {
    if (this.gone !== undefined) return Promise.resolve({ packets: [`E.${this.gone}`], end: true });
    return new Promise((resolve) => {
      this.pending = resolve;
      this.worker.postMessage({ type: 'packet', payload } satisfies ToSession);
    });
  }

  /** gdb's Ctrl-C: stops the resume under way, if there is one. */
  interrupt(): void {
    if (this.pending) Atomics.store(this.interruptWord, 0, 1);
  }

  clientGone(): void {
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
    Atomics.store(this.interruptWord, 0, 0);
    // Buffers cross threads as plain Uint8Arrays.
    resolve?.({ ...response, packets: response.packets.map((p) => (typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength))) });
  }

  private lost(why: string): void {
    if (this.gone !== undefined) return;
    this.gone = why;
    this.settle({ packets: [`E.${why}`], end: true });
  }
}
