// Agents (one a host) and the recording jobs the server hands them at their heartbeat. A host
// belongs to the agent token that registered it: only that token (or an admin's) speaks for it,
// until the token is revoked. A job handed out is leased to its agent: each heartbeat renews the
// lease, and a job whose agent stopped heartbeating fails when its lease runs out.
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { failedPrecondition, notFound, permissionDenied } from '../errors.js';
import type { AgentStore } from './stores.js';
import type { AgentRow, JobRow, JobState, TokenRow } from './types.js';

export const LEASE_EXPIRED = 'the agent stopped heartbeating while it ran this job';

export interface RawAgent {
  id: string;
  hostname: string;
  facts: string;
  registered_ms: number;
  last_heartbeat_ms: number;
}

export const toAgent = (r: RawAgent): AgentRow => ({
  id: r.id,
  hostname: r.hostname,
  facts: r.facts,
  registeredMs: r.registered_ms,
  lastHeartbeatMs: r.last_heartbeat_ms,
});

export interface RawJob {
  id: string;
  hostname: string;
  argv: string;
  labels: string;
  state: JobState;
  trace_id: string;
  error: string;
  created_ms: number;
}

export const JOB_COLS = 'id, hostname, argv, labels, state, trace_id, error, created_ms';

export const toJob = (r: RawJob): JobRow => ({
  id: r.id,
  hostname: r.hostname,
  argv: JSON.parse(r.argv) as string[],
  labels: JSON.parse(r.labels) as Record<string, string>,
  state: r.state,
  traceId: r.trace_id,
  error: r.error,
  createdMs: r.created_ms,
});

/** Throws unless `token` may speak for a host that `owner` (a token id, or '') holds. */
export function checkOwner(hostname: string, owner: string, token: TokenRow): void {
  if (token.role !== 'admin' && owner !== token.id) throw permissionDenied(`host ${hostname} belongs to another agent token`);
}

/** Throws unless `token` may register `hostname`: its owner, and a host no other holds; `other` is a host the token holds already. */
export function checkRegister(hostname: string, owner: string, other: string | undefined, token: TokenRow): void {
  if (token.role === 'admin') return;
  if (owner && owner !== token.id) throw permissionDenied(`host ${hostname} belongs to another agent token`);
  if (other) throw permissionDenied(`this agent token already belongs to host ${other}; create a token for each host`);
}

/** Throws unless a job may be completed with this trace (uploaded by `traceToken`, undefined when there is none). */
export function checkCompletion(job: JobRow, traceId: string, traceToken: string | undefined, error: string, token: TokenRow): void {
  if (job.state !== 'running') throw failedPrecondition(`job ${job.id} is not running (it is ${job.state})`);
  if (error) return;
  if (traceToken === undefined) throw notFound(`no trace ${traceId}: upload it before completing the job`);
  if (token.role !== 'admin' && traceToken !== token.id) throw permissionDenied(`trace ${traceId} was not uploaded with this token`);
}

export class SqliteAgents implements AgentStore {
  constructor(private readonly db: Database.Database) {}

  /** The live token a host belongs to ('' when none: never bound, or its token was revoked). */
  private owner(hostname: string): string {
    const r = this.db
      .prepare('SELECT a.token_id FROM agents a JOIN tokens t ON t.id = a.token_id WHERE a.hostname = ? AND t.revoked_ms IS NULL')
      .get(hostname) as { token_id: string } | undefined;
    return r?.token_id ?? '';
  }

  async register(hostname: string, facts: string, token: TokenRow): Promise<AgentRow> {
    const run = this.db.transaction((): RawAgent => {
      const owner = this.owner(hostname);
      const other = this.db.prepare('SELECT hostname FROM agents WHERE token_id = ? AND hostname != ?').get(token.id, hostname) as
        | { hostname: string }
        | undefined;
      checkRegister(hostname, owner, other?.hostname, token);
      const now = Date.now();
      // An admin registering keeps the host's owner; an agent token takes a host nobody holds.
      const tokenId = token.role === 'admin' ? owner : token.id;
      return this.db
        .prepare(
          `INSERT INTO agents (id, hostname, facts, registered_ms, last_heartbeat_ms, token_id) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(hostname) DO UPDATE SET facts = excluded.facts, last_heartbeat_ms = excluded.last_heartbeat_ms,
             token_id = excluded.token_id
           RETURNING id, hostname, facts, registered_ms, last_heartbeat_ms`,
        )
        .get(randomUUID(), hostname, facts, now, now, tokenId) as RawAgent;
    });
    return toAgent(run.immediate());
  }

  async get(id: string): Promise<AgentRow | undefined> {
    return this.agent(id);
  }

  private agent(id: string): AgentRow | undefined {
    const r = this.db.prepare('SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents WHERE id = ?').get(id) as RawAgent | undefined;
    return r && toAgent(r);
  }

  async list(): Promise<AgentRow[]> {
    const rows = this.db.prepare('SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents ORDER BY hostname').all() as RawAgent[];
    return rows.map(toAgent);
  }

  async heartbeat(agentId: string, token: TokenRow, leaseMs: number): Promise<JobRow[]> {
    const run = this.db.transaction((): JobRow[] => {
      const a = this.agent(agentId);
      if (!a) throw notFound(`unknown agent ${agentId}; register again`);
      checkOwner(a.hostname, this.owner(a.hostname), token);
      const now = Date.now();
      this.db.prepare('UPDATE agents SET last_heartbeat_ms = ? WHERE id = ?').run(now, agentId);
      this.expire(now);
      this.db.prepare("UPDATE jobs SET lease_until_ms = ? WHERE agent_id = ? AND state = 'running'").run(now + leaseMs, agentId);
      const jobs = this.db
        .prepare(
          `UPDATE jobs SET state = 'running', agent_id = ?, lease_until_ms = ?, updated_ms = ?
           WHERE hostname = ? AND state = 'pending' RETURNING ${JOB_COLS}, rowid AS seq`,
        )
        .all(agentId, now + leaseMs, now, a.hostname) as (RawJob & { seq: number })[];
      // In the order they were created, also those of one millisecond (RETURNING has none).
      return jobs.sort((x, y) => x.created_ms - y.created_ms || x.seq - y.seq).map(toJob);
    });
    return run.immediate();
  }

  /** Fails the running jobs whose lease ran out (only `id`'s, when given). */
  private expire(now: number, id?: string): void {
    this.db
      .prepare(
        `UPDATE jobs SET state = 'failed', error = ?, updated_ms = ? WHERE state = 'running' AND lease_until_ms < ?${id ? ' AND id = ?' : ''}`,
      )
      .run(LEASE_EXPIRED, now, now, ...(id ? [id] : []));
  }

  async createJob(hostname: string, argv: string[], labels: Record<string, string>): Promise<JobRow> {
    const now = Date.now();
    const r = this.db
      .prepare(
        `INSERT INTO jobs (id, hostname, argv, labels, state, created_ms, updated_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?) RETURNING ${JOB_COLS}`,
      )
      .get(randomUUID(), hostname, JSON.stringify(argv), JSON.stringify(labels), now, now) as RawJob;
    return toJob(r);
  }

  async completeJob(id: string, traceId: string, error: string, token: TokenRow): Promise<void> {
    const run = this.db.transaction(() => {
      this.expire(Date.now(), id);
      const job = this.job(id);
      if (!job) throw notFound(`no job ${id}`);
      checkOwner(job.hostname, this.owner(job.hostname), token);
      const t = error ? undefined : (this.db.prepare('SELECT token_id FROM traces WHERE id = ?').get(traceId) as { token_id: string } | undefined);
      checkCompletion(job, traceId, t?.token_id, error, token);
      this.db
        .prepare('UPDATE jobs SET state = ?, trace_id = ?, error = ?, updated_ms = ? WHERE id = ?')
        .run(error ? 'failed' : 'done', error ? '' : traceId, error, Date.now(), id);
    });
    run.immediate();
  }

  async getJob(id: string): Promise<JobRow | undefined> {
    this.expire(Date.now(), id);
    return this.job(id);
  }

  private job(id: string): JobRow | undefined {
    const r = this.db.prepare(`SELECT ${JOB_COLS} FROM jobs WHERE id = ?`).get(id) as RawJob | undefined;
    return r && toJob(r);
  }
}
