import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { status } from '@grpc/grpc-js';
import { call, connect, isServiceError, isTransient, type Clients } from '../remote/client.js';
import type { ClientConfig } from '../remote/config.js';
import { pushTrace } from '../remote/upload.js';
import { readLocalTrace } from '../trace/local.js';
import { ManifestError } from '../trace/manifest.js';
import { jsonLogger, logLevel, type Logger } from '../trace/log.js';
import type { Job } from '../gen/rewind/agent/v1/agent.js';
import { hostFacts } from './facts.js';

export interface AgentOptions {
  config: ClientConfig;
  /** Finished traces dropped here are uploaded (and then removed, or moved to uploaded/ with keep). */
  spoolDir: string;
  hostname?: string;
  keep?: boolean;
  /** How often the spool is scanned. */
  scanIntervalMs?: number;
  /** Command that records: `DIR PROGRAM ARGS...` is appended. Default: record_worker.ts. */
  recordCommand?: string[];
  /** Where the agent logs (default: JSON lines on stderr at REWIND_LOG's level). */
  log?: Logger;
}

/** The default recording worker: record_worker.ts, compiled (from the sources: the build's copy). */
export function defaultRecordCommand(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const dist = here.includes(`${path.sep}dist${path.sep}`) ? here : path.resolve(here, '../dist/agent');
  return [process.execPath, path.join(dist, 'record_worker.js')];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * The host daemon: registers the host, heartbeats, runs the recording jobs the server hands it
 * (each in a recording worker process), and uploads every finished trace of its spool with
 * retries and backoff. Every server failure is retried, so it survives server restarts.
 */
export class Agent {
  private readonly clients: Clients;
  private agentId = '';
  private heartbeatMs = 5000;
  private stopped = false;
  private readonly uploading = new Set<string>();
  private readonly log: Logger;

  constructor(private readonly opts: AgentOptions) {
    this.clients = connect(opts.config);
    this.log = opts.log ?? jsonLogger('rewind-agent', logLevel(), 2);
    for (const d of ['', '.recording', 'uploaded', 'failed']) fs.mkdirSync(path.join(opts.spoolDir, d), { recursive: true, mode: 0o700 });
  }

  async run(): Promise<void> {
    await Promise.all([this.heartbeatLoop(), this.spoolLoop()]);
  }

  stop(): void {
    this.stopped = true;
    this.clients.close();
  }

  private async register(): Promise<void> {
    let backoff = 250;
    while (!this.stopped) {
      try {
        const res = await call(this.clients, this.clients.agent.register.bind(this.clients.agent), { facts: hostFacts(this.opts.hostname) });
        this.agentId = res.agentId;
        this.heartbeatMs = res.heartbeatIntervalMs || 5000;
        this.log.info({ agentId: this.agentId, server: this.opts.config.server }, 'registered');
        return;
      } catch (err) {
        if (isServiceError(err) && (err.code === status.UNAUTHENTICATED || err.code === status.PERMISSION_DENIED)) throw err;
        this.log.warn({ error: (err as Error).message, inMs: backoff }, 'register failed; retrying');
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  private async heartbeatLoop(): Promise<void> {
    await this.register();
    while (!this.stopped) {
      try {
        const res = await call(this.clients, this.clients.agent.heartbeat.bind(this.clients.agent), { agentId: this.agentId }, 10_000);
        for (const job of res.jobs) void this.runJob(job);
      } catch (err) {
        if (this.stopped) return;
        if (isServiceError(err) && err.code === status.NOT_FOUND) await this.register();
        else this.log.warn({ error: (err as Error).message }, 'heartbeat failed');
      }
      await sleep(this.heartbeatMs);
    }
  }

  /** Records a job's program in a worker process, uploads the trace and reports the outcome. */
  private async runJob(job: Job): Promise<void> {
    this.log.info({ job: job.id, argv: job.argv }, 'job');
    const work = path.join(this.opts.spoolDir, '.recording', job.id);
    let traceId = '';
    let error = '';
    try {
      await fsp.rm(work, { recursive: true, force: true });
      const [cmd, ...args] = this.opts.recordCommand ?? defaultRecordCommand();
      const stderr = await new Promise<string>((resolve, reject) => {
        const child = spawn(cmd!, [...args, work, ...job.argv], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
        child.on('error', reject);
        child.on('close', () => resolve(err));
      });
      if (!fs.existsSync(path.join(work, 'manifest.json'))) {
        throw new Error(`recording failed: ${stderr.trim().split('\n').pop() ?? 'no trace written'}`);
      }
      // A job's directory is its own: no spool scan uploads it at the same time.
      traceId = (await this.upload(work, job.labels)) ?? '';
    } catch (err) {
      error = (err as Error).message;
      this.log.warn({ job: job.id, error }, 'job failed');
    }
    for (let backoff = 250; !this.stopped; backoff = Math.min(backoff * 2, 10_000)) {
      try {
        await call(this.clients, this.clients.agent.completeJob.bind(this.clients.agent), { jobId: job.id, traceId, error });
        break;
      } catch (err) {
        if (!isTransient(err)) {
          // The server refuses for good (the job is no longer running, or not this host's): trying
          // again would change nothing.
          this.log.error({ job: job.id, error: (err as Error).message }, 'completing the job was refused; giving up on it');
          break;
        }
        this.log.warn({ job: job.id, error: (err as Error).message }, 'completing the job failed; retrying');
        await sleep(backoff);
      }
    }
  }

  /** Uploads one trace directory with unbounded retries; then removes it (or moves it to uploaded/). */
  private async upload(dir: string, labels: Record<string, string> = {}): Promise<string | undefined> {
    if (this.uploading.has(dir)) return undefined;
    this.uploading.add(dir);
    try {
      const res = await pushTrace(this.clients, dir, {
        labels,
        retries: Infinity,
        busyWaitMs: Infinity,
        onRetry: (e, n, ms) => this.log.warn({ dir, error: e.message, attempt: n, inMs: ms }, 'upload interrupted; retrying'),
        onWait: (w) => this.log.info({ dir, blobs: w.blobs, waitedMs: w.waitedMs, inMs: w.delayMs }, 'blobs held by another upload; waiting'),
      });
      this.log.info({ dir, trace: res.traceId, bytesSent: res.bytesSent, created: res.created }, 'uploaded');
      if (this.opts.keep) await fsp.rename(dir, path.join(this.opts.spoolDir, 'uploaded', path.basename(dir)));
      else await fsp.rm(dir, { recursive: true, force: true });
      return res.traceId;
    } finally {
      this.uploading.delete(dir);
    }
  }

  /** Moves a trace that can never be uploaded (bad manifest, unsupported version) to failed/. */
  private async park(dir: string, name: string, error: string): Promise<void> {
    this.log.warn({ dir, error }, 'upload refused; moved to failed/');
    await fsp.rename(dir, path.join(this.opts.spoolDir, 'failed', name)).catch(() => undefined);
  }

  /** Uploads every finished trace found in the spool (a directory with manifest.json and all its blobs). */
  private async spoolLoop(): Promise<void> {
    while (!this.stopped) {
      let entries: fs.Dirent[] = [];
      try {
        entries = await fsp.readdir(this.opts.spoolDir, { withFileTypes: true });
      } catch (err) {
        this.log.warn({ error: (err as Error).message }, 'cannot read the spool');
      }
      for (const e of entries) {
        if (this.stopped) return;
        if (!e.isDirectory() || e.name.startsWith('.') || e.name === 'uploaded' || e.name === 'failed') continue;
        const dir = path.join(this.opts.spoolDir, e.name);
        try {
          const st = await fsp.stat(path.join(dir, 'manifest.json'));
          if (Date.now() - st.mtimeMs < 500) continue; // still being written
          await readLocalTrace(dir);
        } catch (err) {
          // A manifest is written whole (renamed into place), so one that does not validate stays
          // so: park it. Anything else (blobs still arriving) is looked at again next scan.
          if (err instanceof ManifestError) await this.park(dir, e.name, err.message);
          continue;
        }
        try {
          await this.upload(dir);
        } catch (err) {
          if (this.stopped) return;
          if (isServiceError(err) && err.code === status.INVALID_ARGUMENT) {
            await this.park(dir, e.name, err.details); // the server refuses this trace for good
          } else {
            // Anything else (a revoked token, a full disk on the server) is tried again next scan.
            this.log.warn({ dir, error: (err as Error).message }, 'upload failed; will retry');
          }
        }
      }
      await sleep(this.opts.scanIntervalMs ?? 2000);
    }
  }
}
