import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { sandboxedCommand, type SandboxLimits } from '../../native/index.js';
import type { BlobStore } from '../blobstore/blobstore.js';
import type { Catalog } from '../catalog/catalog.js';
import { RpcError } from '../errors.js';

export interface ReplayOptions {
  /** Command that replays a trace directory (the directory is appended). */
  command?: string[];
  /** Command that serves gdb's remote protocol on stdin/stdout for a trace directory (`DIR --stdio` is appended). */
  debugCommand?: string[];
  maxSessions?: number;
  /** Sessions one token may hold at once (default 2). */
  maxSessionsPerToken?: number;
  /**
   * When the server is full, a session idle (no bytes, no CPU) this long is closed to make room
   * for a new one (default 5 min).
   */
  reclaimIdleMs?: number;
  /** A Debug stream must send `start` within this (default 5 s). */
  debugStartTimeoutMs?: number;
  /** A session whose worker neither prints nor runs (uses no CPU) for this long is killed. */
  idleTimeoutMs?: number;
  /** The same for a debug session, where a person reads code between commands (default 30 min). */
  debugIdleTimeoutMs?: number;
  /** Hard limit on a session's duration (default 1 hour). */
  maxSessionMs?: number;
  /** Where trace directories are materialised. */
  workDir: string;
  /** Resource bounds of each worker's sandbox (docs/security.md). */
  sandbox?: Partial<SandboxLimits>;
}

export type ReplayEvent = { kind: 'stdout' | 'stderr'; data: Buffer } | { kind: 'exit'; status: number };

export interface ReplaySink {
  /** Delivers an event; returns false when the consumer wants the worker paused until drain. */
  write(ev: ReplayEvent): boolean;
  onDrain(cb: () => void): void;
}

/** Where a debug session starts and which process it debugs (`rewind debug --moment/--pid/--exec`); checked by the caller. */
export interface DebugStartAt {
  moment?: string;
  pid?: number;
  exec?: string;
}

/** Bytes flowing between a debug worker and its client. */
export interface DebugIo {
  /** Bytes the worker wrote, for the client; returns false to pause the worker's output until onDrain fires. */
  write(data: Buffer): boolean;
  onDrain(cb: () => void): void;
  /** Called once the worker runs: from then on the client's bytes go into `input`. */
  attach(input: DebugInput): void;
}

/** The worker's stdin, as seen by whoever feeds it the client's bytes. */
export interface DebugInput {
  /** Returns false when the caller should wait for onDrain before writing more. */
  write(data: Buffer): boolean;
  onDrain(cb: () => void): void;
  /** The client sends nothing more: closes the worker's stdin. */
  end(): void;
}

/** A worker entry point next to this module, compiled (the TypeScript sources are not runnable directly). */
function workerEntry(name: string): string {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/server/replay holds them; from the sources (tests), the build's copy.
  return here.includes(`${path.sep}dist${path.sep}`) ? path.join(here, name) : path.resolve(here, '../../dist/server/replay', name);
}

/** The default replay worker: replay_worker.ts. */
export function defaultReplayCommand(): string[] {
  return [process.execPath, workerEntry('replay_worker.js')];
}

/** The dump worker: dump_worker.ts, printing a trace's events as JSON lines. */
function dumpCommand(): string[] {
  return [process.execPath, workerEntry('dump_worker.js')];
}

/** The query worker: query_worker.ts, printing an answer as JSON lines. */
function queryCommand(): string[] {
  return [process.execPath, workerEntry('query_worker.js')];
}

/** The default debug worker: debug_worker.ts, serving the remote protocol on stdin/stdout. */
export function defaultDebugCommand(): string[] {
  return [process.execPath, workerEntry('debug_worker.js')];
}

const WORKER_ENV = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8' });

/** A session slot: reserved first, then running its worker. */
interface Session {
  tokenId: string;
  child?: ChildProcess;
  /** Ends the session with this error (set once the worker runs). */
  kill?: (e: RpcError) => void;
  /** When bytes last moved or the worker tree last used CPU. */
  activeMs: number;
  /** The worker tree's CPU ticks at the last sample. */
  cpu?: number;
}

/** A session whose worker tree used CPU since the last sample is active now. */
function sampleCpu(s: Session, now: number): void {
  const cpu = cpuTicks(s.child?.pid);
  if (cpu === undefined) return;
  if (s.cpu !== undefined && cpu - s.cpu >= 2) s.activeMs = now;
  s.cpu = cpu;
}

/**
 * Runs replay and debug sessions, one worker process each: a crash or hang of one worker ends
 * only its own session. The number of concurrent sessions (of both kinds) is bounded; idle
 * sessions are killed.
 */
export class ReplayManager {
  private readonly sessions = new Map<string, Session>();
  readonly maxSessions: number;
  readonly maxSessionsPerToken: number;
  readonly reclaimIdleMs: number;
  readonly debugStartTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly debugIdleTimeoutMs: number;
  readonly maxSessionMs: number;
  private readonly command: string[];
  private readonly debugCommand: string[];
  private sampler: NodeJS.Timeout | undefined;

  constructor(
    private readonly catalog: Catalog,
    private readonly store: BlobStore,
    private readonly log: Logger,
    private readonly opts: ReplayOptions,
  ) {
    this.maxSessions = opts.maxSessions ?? 4;
    this.maxSessionsPerToken = opts.maxSessionsPerToken ?? 2;
    this.reclaimIdleMs = opts.reclaimIdleMs ?? 5 * 60_000;
    this.debugStartTimeoutMs = opts.debugStartTimeoutMs ?? 5000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.debugIdleTimeoutMs = opts.debugIdleTimeoutMs ?? 30 * 60_000;
    this.maxSessionMs = opts.maxSessionMs ?? 3_600_000;
    this.command = opts.command ?? defaultReplayCommand();
    this.debugCommand = opts.debugCommand ?? defaultDebugCommand();
  }

  get active(): number {
    return this.sessions.size;
  }

  /**
   * Reserves a session slot for the token, or throws RESOURCE_EXHAUSTED: past the token's share,
   * or when the server is full and no session has been idle long enough to close for this one.
   */
  reserve(tokenId: string): string {
    let mine = 0;
    for (const s of this.sessions.values()) if (s.tokenId === tokenId) mine++;
    const full = this.sessions.size >= this.maxSessions;
    const busy = (): RpcError => new RpcError(status.RESOURCE_EXHAUSTED, `the server already runs ${this.maxSessions} replay sessions; try again later`);
    if (mine >= this.maxSessionsPerToken) {
      if (full) throw busy();
      throw new RpcError(status.RESOURCE_EXHAUSTED, `this token already runs ${mine} sessions (at most ${this.maxSessionsPerToken} at once); end one first`);
    }
    if (full && !this.reclaimOne()) throw busy();
    const id = randomUUID();
    this.sessions.set(id, { tokenId, activeMs: Date.now() });
    return id;
  }

  /** Closes the session idle longest, if it has been idle reclaimIdleMs; true when one was. */
  private reclaimOne(): boolean {
    const now = Date.now();
    let oldest: [string, Session] | undefined;
    for (const entry of this.sessions) {
      const s = entry[1];
      if (!s.kill) continue;
      sampleCpu(s, now);
      if (now - s.activeMs >= this.reclaimIdleMs && (!oldest || s.activeMs < oldest[1].activeMs)) oldest = entry;
    }
    if (!oldest) return false;
    const [id, s] = oldest;
    this.sessions.delete(id);
    const idle = Math.round((now - s.activeMs) / 1000);
    s.kill!(new RpcError(status.DEADLINE_EXCEEDED, `session idle for ${idle} s; closed to make room for another session`));
    return true;
  }

  /** The worker of a session runs: it can be reclaimed from now on. */
  private started(sessionId: string, child: ChildProcess, kill: (e: RpcError) => void): void {
    const s = this.sessions.get(sessionId);
    if (!s) return;
    s.child = child;
    s.kill = kill;
    s.activeMs = Date.now();
    // CPU activity is sampled now and then (a long reverse-continue moves no bytes).
    this.sampler ??= setInterval(() => {
      const now = Date.now();
      for (const x of this.sessions.values()) sampleCpu(x, now);
    }, Math.min(this.reclaimIdleMs / 4, 15_000)).unref();
  }

  private touched(sessionId: string): void {
    const s = this.sessions.get(sessionId);
    if (s) s.activeMs = Date.now();
  }

  /**
   * Runs the session to its end. Resolves after the exit event was written; rejects with an
   * RpcError when the worker crashed, hung or could not start. `signal` aborts the session.
   */
  async run(sessionId: string, traceId: string, tokenId: string, sink: ReplaySink, abort: AbortSignal): Promise<void> {
    await this.session(sessionId, traceId, tokenId, async (dir) => {
      const exitStatus = await this.runWorker(sessionId, [...this.command, dir], dir, sink, abort);
      sink.write({ kind: 'exit', status: exitStatus });
      return exitStatus;
    });
  }

  /**
   * Runs a dump worker over events `from` to `to` of the trace: its stdout (one JSON event a
   * line) and stderr reach the sink, then its exit status.
   */
  async dump(sessionId: string, traceId: string, tokenId: string, from: number, to: number, sink: ReplaySink, abort: AbortSignal): Promise<void> {
    await this.session(sessionId, traceId, tokenId, async (dir) => {
      const exitStatus = await this.runWorker(sessionId, [...dumpCommand(), dir, String(from), String(to)], dir, sink, abort);
      sink.write({ kind: 'exit', status: exitStatus });
      return exitStatus;
    });
  }

  /**
   * Runs a query worker on the trace (`words`: the query, already checked): its stdout (JSON
   * lines: progress, then the answer) and stderr reach the sink, then its exit status.
   */
  async query(sessionId: string, traceId: string, tokenId: string, words: string[], sink: ReplaySink, abort: AbortSignal): Promise<void> {
    await this.session(sessionId, traceId, tokenId, async (dir) => {
      const exitStatus = await this.runWorker(sessionId, [...queryCommand(), dir, ...words], dir, sink, abort);
      sink.write({ kind: 'exit', status: exitStatus });
      return exitStatus;
    });
  }

  /**
   * Runs a debug session (gdb remote protocol on the worker's stdin/stdout) to its end.
   * Resolves when the worker exits with status 0; rejects with an RpcError when it failed,
   * crashed, hung or could not start, or when `abort` fired (its reason, if an RpcError).
   */
  async debug(sessionId: string, traceId: string, tokenId: string, io: DebugIo, abort: AbortSignal, start: DebugStartAt = {}): Promise<void> {
    await this.session(sessionId, traceId, tokenId, async (dir) => {
      await this.runDebugWorker(sessionId, dir, io, abort, start);
      return 0;
    });
  }

  /** Materialises the trace, runs `body` in its directory, then records the session's end and cleans up. */
  private async session(sessionId: string, traceId: string, tokenId: string, body: (dir: string) => Promise<number>): Promise<void> {
    let dir: string | undefined;
    let error = '';
    let exitStatus: number | null = null;
    try {
      const t = await this.catalog.traces.get(traceId);
      await this.catalog.sessions.start(sessionId, traceId, tokenId);
      dir = await fsp.mkdtemp(path.join(this.opts.workDir, 'replay-'));
      await fsp.writeFile(path.join(dir, 'manifest.json'), t.manifest, { mode: 0o600 });
      await fsp.mkdir(path.join(dir, 'blobs'));
      const seen = new Set<string>();
      for (const b of t.blobs) {
        if (seen.has(b.sha256)) continue;
        seen.add(b.sha256);
        await this.store.materialize(b.sha256, path.join(dir, 'blobs', b.sha256));
      }
      // A recording cut short is replayed from the event stream it was writing, as locally.
      const events = t.blobs.find((b) => b.role === 'events');
      if (!t.trace.complete && events) await this.store.materialize(events.sha256, path.join(dir, 'events.partial'));
      exitStatus = await body(dir);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      throw err;
    } finally {
      this.sessions.delete(sessionId);
      try {
        await this.catalog.sessions.end(sessionId, exitStatus, error);
      } catch {
        // The catalogue may be closing with the server.
      }
      if (dir) await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  /**
   * Kills the worker when it is idle (no activity reported through the returned `touch` and no CPU
   * used by its process tree for the idle timeout) or runs past the session limit.
   */
  private watch(
    sessionId: string,
    child: ChildProcess,
    what: string,
    idleMs: number,
    kill: (e: RpcError) => void,
  ): { touch(): void; stop(): void } {
    let idle: NodeJS.Timeout | undefined;
    let cpu = cpuTicks(child.pid);
    const arm = (): void => {
      if (idle) clearTimeout(idle);
      idle = setTimeout(() => {
        const now = cpuTicks(child.pid);
        // Running means at least 5 % of a CPU over the period (ticks are 10 ms).
        if (now !== undefined && (cpu === undefined || now - cpu >= Math.max(2, idleMs / 200))) {
          cpu = now;
          arm();
          return;
        }
        kill(new RpcError(status.DEADLINE_EXCEEDED, `${what} idle for ${Math.round(idleMs / 1000)} s; closed`));
      }, idleMs);
    };
    arm();
    const limit = setTimeout(
      () => kill(new RpcError(status.DEADLINE_EXCEEDED, `${what} ran longer than ${Math.round(this.maxSessionMs / 1000)} s; closed`)),
      this.maxSessionMs,
    );
    return {
      touch: () => {
        arm();
        this.touched(sessionId);
      },
      stop: () => {
        if (idle) clearTimeout(idle);
        clearTimeout(limit);
      },
    };
  }

  private runWorker(sessionId: string, argv: string[], dir: string, sink: ReplaySink, abort: AbortSignal): Promise<number> {
    const [cmd, ...args] = sandboxedCommand(argv, dir, this.opts.sandbox);
    const child = spawn(cmd!, args, {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: WORKER_ENV(),
      detached: false,
    });
    const log = this.log.child({ session: sessionId, pid: child.pid });
    log.info('replay worker started');
    return new Promise<number>((resolve, reject) => {
      let why: RpcError | undefined;
      const kill = (e: RpcError): void => {
        why ??= e;
        child.kill('SIGKILL');
      };
      this.started(sessionId, child, kill);
      // Idle means: no output and no CPU time used (a replay computing silently is not idle).
      const timers = this.watch(sessionId, child, 'replay session', this.idleTimeoutMs, kill);
      const onAbort = (): void => kill(new RpcError(status.CANCELLED, 'replay cancelled by the client'));
      // A client that left while the trace was prepared: its 'abort' has fired already.
      if (abort.aborted) onAbort();
      abort.addEventListener('abort', onAbort);
      const pump = (kind: 'stdout' | 'stderr', stream: NodeJS.ReadableStream): void => {
        stream.on('data', (data: Buffer) => {
          timers.touch();
          if (!sink.write({ kind, data })) {
            child.stdout?.pause();
            child.stderr?.pause();
            sink.onDrain(() => {
              child.stdout?.resume();
              child.stderr?.resume();
            });
          }
        });
      };
      pump('stdout', child.stdout!);
      pump('stderr', child.stderr!);
      child.on('error', (err) => kill(new RpcError(status.INTERNAL, `cannot start the replay worker: ${err.message}`)));
      child.on('close', (code, signal) => {
        timers.stop();
        abort.removeEventListener('abort', onAbort);
        log.info({ code, signal }, 'replay worker ended');
        if (why) reject(why);
        else if (signal) reject(new RpcError(status.ABORTED, `replay worker crashed (killed by ${signal}); only this session was affected`));
        else resolve(code ?? 70);
      });
    });
  }

  private runDebugWorker(sessionId: string, dir: string, io: DebugIo, abort: AbortSignal, start: DebugStartAt): Promise<void> {
    // `--exec=NAME` in one argument: a name that starts with '-' stays the option's value.
    const options = [
      ...(start.moment ? [`--moment=${start.moment}`] : []),
      ...(start.pid !== undefined ? [`--pid=${start.pid}`] : []),
      ...(start.exec !== undefined ? [`--exec=${start.exec}`] : []),
    ];
    const [cmd, ...args] = sandboxedCommand([...this.debugCommand, dir, '--stdio', ...options], dir, this.opts.sandbox);
    const child = spawn(cmd!, args, {
      cwd: dir,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: WORKER_ENV(),
      detached: false,
    });
    const log = this.log.child({ session: sessionId, pid: child.pid });
    log.info('debug worker started');
    return new Promise<void>((resolve, reject) => {
      let why: RpcError | undefined;
      const kill = (e: RpcError): void => {
        why ??= e;
        child.kill('SIGKILL');
      };
      this.started(sessionId, child, kill);
      if (abort.aborted) kill(abortReason(abort));
      // Idle means: no bytes either way and no CPU time used (a long reverse-continue is not idle).
      const timers = this.watch(sessionId, child, 'debug session', this.debugIdleTimeoutMs, kill);
      const onAbort = (): void => kill(abortReason(abort));
      abort.addEventListener('abort', onAbort);

      const stdin = child.stdin!;
      // EPIPE when the worker is gone: its exit status tells why.
      stdin.on('error', (err) => log.debug({ err }, 'debug worker stdin'));
      child.stdout!.on('data', (data: Buffer) => {
        timers.touch();
        if (!io.write(data)) {
          child.stdout!.pause();
          io.onDrain(() => child.stdout!.resume());
        }
      });
      // The worker's stderr goes to the log, line by line; the last lines explain a failure.
      const lastLines: string[] = [];
      let partial = '';
      const logLines = (text: string, flush: boolean): void => {
        const lines = (partial + text).split('\n');
        partial = flush ? '' : lines.pop()!;
        for (const raw of lines) {
          const line = raw.trimEnd().slice(0, 2000);
          if (!line) continue;
          log.info({ stderr: line }, 'debug worker');
          lastLines.push(line);
          if (lastLines.length > 3) lastLines.shift();
        }
      };
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (text: string) => logLines(text, false));

      child.on('error', (err) => kill(new RpcError(status.INTERNAL, `cannot start the debug worker: ${err.message}`)));
      child.on('spawn', () => {
        io.attach({
          write: (data) => {
            timers.touch();
            return stdin.destroyed ? true : stdin.write(data);
          },
          onDrain: (cb) => {
            if (stdin.destroyed || !stdin.writableNeedDrain) {
              cb();
              return;
            }
            const done = (): void => {
              stdin.off('drain', done).off('close', done);
              cb();
            };
            stdin.on('drain', done).on('close', done);
          },
          end: () => {
            if (!stdin.destroyed) stdin.end();
          },
        });
      });
      child.on('close', (code, signal) => {
        timers.stop();
        abort.removeEventListener('abort', onAbort);
        logLines('', true);
        log.info({ code, signal }, 'debug worker ended');
        const said = lastLines.length ? `: ${lastLines[lastLines.length - 1]!.replace(/^rewind: /, '')}` : '';
        if (why) reject(why);
        else if (signal) reject(new RpcError(status.ABORTED, `debug worker crashed (killed by ${signal})${said}; only this session was affected`));
        else if (code !== 0) reject(new RpcError(status.ABORTED, `debug worker failed (exit status ${code})${said}`));
        else resolve();
      });
    });
  }

  /** Kills every worker (server shutdown). */
  closeAll(): void {
    clearInterval(this.sampler);
    for (const s of this.sessions.values()) s.child?.kill('SIGKILL');
  }
}

function abortReason(abort: AbortSignal): RpcError {
  const r: unknown = abort.reason;
  return r instanceof RpcError ? r : new RpcError(status.CANCELLED, 'debug session cancelled by the client');
}

/**
 * CPU time (utime + stime, in ticks) used so far by a process and every live descendant, from
 * /proc: the replayed program runs as a child of the worker. Undefined where /proc is missing.
 */
function cpuTicks(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  let total = 0;
  let found = false;
  const seen = new Set<number>();
  const visit = (p: number): void => {
    if (seen.has(p) || seen.size > 10_000) return;
    seen.add(p);
    try {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += Number(f[11]) + Number(f[12]);
      found = true;
      for (const tid of fs.readdirSync(`/proc/${p}/task`)) {
        const kids = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (kids) for (const k of kids.split(/\s+/)) visit(Number(k));
      }
    } catch {
      // the process ended meanwhile
    }
  };
  visit(pid);
  return found ? total : undefined;
}
