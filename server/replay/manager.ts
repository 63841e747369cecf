import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { BlobStore } from '../blobstore/blobstore.js';
import type { Catalog } from '../catalog/catalog.js';
import { RpcError } from '../errors.js';

export interface ReplayOptions {
  /** Command that replays a trace directory (the directory is appended). */
  command?: string[];
  maxSessions?: number;
  /** A session whose worker neither prints nor runs (uses no CPU) for this long is killed. */
  idleTimeoutMs?: number;
  /** Hard limit on a session's duration (default 1 hour). */
  maxSessionMs?: number;
  /** Where trace directories are materialised. */
  workDir: string;
}

export type ReplayEvent = { kind: 'stdout' | 'stderr'; data: Buffer } | { kind: 'exit'; status: number };

export interface ReplaySink {
  /** Delivers an event; returns false when the consumer wants the worker paused until drain. */
  write(ev: ReplayEvent): boolean;
  onDrain(cb: () => void): void;
}

/** The default worker: this installation's own CLI, `rewind replay DIR`. */
export function defaultReplayCommand(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  // dist/server/replay -> dist/cli/main.js (the TypeScript sources are not runnable directly).
  const distMain = here.includes(`${path.sep}dist${path.sep}`)
    ? path.resolve(here, '../../cli/main.js')
    : path.resolve(here, '../../dist/cli/main.js');
  return [process.execPath, distMain, 'replay'];
}

/**
 * Runs replay sessions, one worker process each: a crash or hang of one worker ends only its
 * own session. The number of concurrent sessions is bounded; idle sessions are killed.
 */
export class ReplayManager {
  private readonly sessions = new Map<string, ChildProcess>();
  readonly maxSessions: number;
  readonly idleTimeoutMs: number;
  readonly maxSessionMs: number;
  private readonly command: string[];

  constructor(
    private readonly catalog: Catalog,
    private readonly store: BlobStore,
    private readonly log: Logger,
    private readonly opts: ReplayOptions,
  ) {
    this.maxSessions = opts.maxSessions ?? 4;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 60_000;
    this.maxSessionMs = opts.maxSessionMs ?? 3_600_000;
    this.command = opts.command ?? defaultReplayCommand();
  }

  get active(): number {
    return this.sessions.size;
  }

  /** Reserves a session slot, or throws RESOURCE_EXHAUSTED. */
  reserve(): string {
    if (this.sessions.size >= this.maxSessions) {
      throw new RpcError(status.RESOURCE_EXHAUSTED, `the server already runs ${this.maxSessions} replay sessions; try again later`);
    }
    const id = randomUUID();
    this.sessions.set(id, placeholder);
    return id;
  }

  /**
   * Runs the session to its end. Resolves after the exit event was written; rejects with an
   * RpcError when the worker crashed, hung or could not start. `signal` aborts the session.
   */
  async run(sessionId: string, traceId: string, tokenId: string, sink: ReplaySink, abort: AbortSignal): Promise<void> {
    let dir: string | undefined;
    let error = '';
    let exitStatus: number | null = null;
    try {
      const t = this.catalog.getTrace(traceId);
      this.catalog.startSession(sessionId, traceId, tokenId);
      dir = await fsp.mkdtemp(path.join(this.opts.workDir, 'replay-'));
      await fsp.writeFile(path.join(dir, 'manifest.json'), t.manifest, { mode: 0o600 });
      await fsp.mkdir(path.join(dir, 'blobs'));
      const seen = new Set<string>();
      for (const b of t.blobs) {
        if (seen.has(b.sha256)) continue;
        seen.add(b.sha256);
        await this.store.materialize(b.sha256, path.join(dir, 'blobs', b.sha256));
      }
      exitStatus = await this.runWorker(sessionId, dir, sink, abort);
      sink.write({ kind: 'exit', status: exitStatus });
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
      throw err;
    } finally {
      this.sessions.delete(sessionId);
      try {
        this.catalog.endSession(sessionId, exitStatus, error);
      } catch {
        // The catalogue may be closing with the server.
      }
      if (dir) await fsp.rm(dir, { recursive: true, force: true });
    }
  }

  release(sessionId: string): void {
    this.sessions.delete(sessionId);
  }

  private runWorker(sessionId: string, dir: string, sink: ReplaySink, abort: AbortSignal): Promise<number> {
    const [cmd, ...args] = this.command;
    const child = spawn(cmd!, [...args, dir], {
      cwd: dir,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C.UTF-8', REWIND_REPLAY_WORKER: '1' },
      detached: false,
    });
    this.sessions.set(sessionId, child);
    const log = this.log.child({ session: sessionId, pid: child.pid });
    log.info('replay worker started');
    return new Promise<number>((resolve, reject) => {
      let idle: NodeJS.Timeout | undefined;
      let why: RpcError | undefined;
      const kill = (e: RpcError): void => {
        why ??= e;
        child.kill('SIGKILL');
      };
      // Idle means: no output and no CPU time used (a replay computing silently is not idle).
      let cpu = cpuTicks(child.pid);
      const arm = (): void => {
        if (idle) clearTimeout(idle);
        idle = setTimeout(() => {
          const now = cpuTicks(child.pid);
          // Running means at least 5 % of a CPU over the period (ticks are 10 ms).
          if (now !== undefined && (cpu === undefined || now - cpu >= Math.max(2, this.idleTimeoutMs / 200))) {
            cpu = now;
            arm();
            return;
          }
          kill(new RpcError(status.DEADLINE_EXCEEDED, `replay session idle for ${Math.round(this.idleTimeoutMs / 1000)} s; closed`));
        }, this.idleTimeoutMs);
      };
      arm();
      const limit = setTimeout(
        () => kill(new RpcError(status.DEADLINE_EXCEEDED, `replay session ran longer than ${Math.round(this.maxSessionMs / 1000)} s; closed`)),
        this.maxSessionMs,
      );
      const onAbort = (): void => kill(new RpcError(status.CANCELLED, 'replay cancelled by the client'));
      abort.addEventListener('abort', onAbort);
      const pump = (kind: 'stdout' | 'stderr', stream: NodeJS.ReadableStream): void => {
        stream.on('data', (data: Buffer) => {
          arm();
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
        if (idle) clearTimeout(idle);
        clearTimeout(limit);
        abort.removeEventListener('abort', onAbort);
        log.info({ code, signal }, 'replay worker ended');
        if (why) reject(why);
        else if (signal) reject(new RpcError(status.ABORTED, `replay worker crashed (killed by ${signal}); only this session was affected`));
        else resolve(code ?? 70);
      });
    });
  }

  /** Kills every worker (server shutdown). */
  closeAll(): void {
    for (const c of this.sessions.values()) if (c !== placeholder) c.kill('SIGKILL');
  }
}

const placeholder = {} as ChildProcess;

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
