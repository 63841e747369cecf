// A debug session on a thread of its own (session_worker.ts), seen from the connection's
// thread: packets go there and replies come back, while this thread stays free to pass on an
// interrupt (gdb's Ctrl-C) to a resume that is running.
import { Worker } from 'node:worker_threads';
import type { ReplayTraceOptions } from '../trace/replay.js';
import { UserError } from '../trace/user_error.js';
import type { Response, StartAt } from './gdb_server.js';

/** A process of the recorded tree, by its recorded pid or by a program it ran (a path, or a file name), as rr's -p and -f. */
export interface ProcessChoice {
  pid?: number;
  exec?: string;
}

/** What the session thread starts from. */
export interface SessionStart {
  dir: string;
  /**
   * Where the program's recorded stdout is shown (its stderr then goes to ours), or 'console':
   * both go to the debugger, as console output with the reply of the command that ran them.
   */
  programStdout: number | 'console';
  at?: StartAt;
  /** The process to debug (default: the recorded program). */
  process?: ProcessChoice;
  /** Two Int32s: non-zero in the first asks a running resume to stop; the second is the event replay has reached. */
  interrupt: SharedArrayBuffer;
  nameById?: boolean;
}

export type ToSession = { type: 'packet'; payload: Uint8Array } | { type: 'clientGone' } | { type: 'close' };

export type FromSession = { type: 'ready'; events: number } | { type: 'failed'; message: string; exitCode: number } | { type: 'reply'; response: Response };

/** The packets that resume: c, s, C, S, vCont with actions, bc, bs. */
const RESUME = /^([csCS]|vCont;|b[cs]$)/;

/** How long close() waits for a running resume to reach a point where it can stop. */
const CLOSE_WAIT_MS = 5000;

export class SessionThread {
  private readonly interruptWord: Int32Array;
  private readonly progressWord: Int32Array;
  /**
   * Who waits for a reply, oldest first: the thread answers in order. A client that went away
   * mid-resume leaves its reply to come before the next client's.
   */
  private readonly pending: ((response: Response) => void)[] = [];
  /** A Ctrl-C that came between two packets, for the next resume. */
  private interruptLater = false;
  private closing: Promise<void> | undefined;
  private gone: string | undefined;

  private constructor(
    private readonly worker: Worker,
    interrupt: SharedArrayBuffer,
    private readonly events: number,
  ) {
    this.interruptWord = new Int32Array(interrupt, 0, 1);
    this.progressWord = new Int32Array(interrupt, 4, 1);
    worker.on('message', (m: FromSession) => {
      if (m.type === 'reply') this.settle(m.response);
    });
    worker.on('error', (err) => this.lost(`the debug session failed: ${err.message}`));
    worker.on('exit', () => this.lost('the debug session has ended'));
  }

  /** Starts the session; a trace that cannot be debugged is a UserError. */
  static start(dir: string, programStdout: number | 'console', opts: ReplayTraceOptions & { at?: StartAt; process?: ProcessChoice } = {}): Promise<SessionThread> {
    const interrupt = new SharedArrayBuffer(8);
    const start: SessionStart = { dir, programStdout, interrupt, nameById: opts.nameById, at: opts.at, process: opts.process };
    const worker = new Worker(new URL('./session_worker.js', import.meta.url), { workerData: start });
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new UserError(`cannot start a debug session on ${dir}: ${err.message}`));
      worker.once('error', onError);
      worker.once('message', (m: FromSession) => {
        worker.off('error', onError);
        if (m.type === 'ready') {
          resolve(new SessionThread(worker, interrupt, m.events));
        } else {
          void worker.terminate();
          reject(new UserError(m.type === 'failed' ? m.message : `the debug session did not start (${m.type})`, m.type === 'failed' ? m.exitCode : 1));
        }
      });
    });
  }

  /** Handles one packet; replies come in the order the packets went. */
  handle(payload: Buffer): Promise<Response> {
    if (this.gone !== undefined) return Promise.resolve({ packets: [`E.${this.gone}`], end: true });
    if (this.interruptLater && RESUME.test(payload.toString('latin1'))) {
      this.interruptLater = false;
      Atomics.store(this.interruptWord, 0, 1);
    }
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.worker.postMessage({ type: 'packet', payload } satisfies ToSession);
    });
  }

  /**
   * gdb's Ctrl-C: stops the resume under way, or the next one. gdb sends it whenever the user
   * presses Ctrl-C during a continue, also while it handles a stop of its own on the way (the
   * dynamic loader's, reading a library), and then waits for the interrupted stop.
   */
  interrupt(): void {
    if (this.pending.length > 0) Atomics.store(this.interruptWord, 0, 1);
    else this.interruptLater = true;
  }

  /** Where a long resume has got to, for the debugger's console. */
  progress(): string {
    return `event ${Atomics.load(this.progressWord, 0)} of ${this.events}`;
  }

  clientGone(): void {
    this.interruptLater = false;
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
    const resolve = this.pending.shift();
    Atomics.store(this.interruptWord, 0, 0);
    // Buffers cross threads as plain Uint8Arrays.
    resolve?.({ ...response, packets: response.packets.map((p) => (typeof p === 'string' ? p : Buffer.from(p.buffer, p.byteOffset, p.byteLength))) });
  }

  private lost(why: string): void {
    if (this.gone !== undefined) return;
    this.gone = why;
    while (this.pending.length > 0) this.settle({ packets: [`E.${why}`], end: true });
  }
}
