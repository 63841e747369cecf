// Agents (one a host) and the recording jobs the server hands them at their heartbeat. A host
// belongs to the agent token that registered it: only that token (or an admin's) speaks for it,
// until the token is revoked.
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { failedPrecondition, notFound, permissionDenied } from '../errors.js';
import type { AgentRow, JobRow, JobState, TokenRow } from './types.js';

export interface AgentStore {
  /** Registers (or updates) a host for `token`; a host another live token holds is refused. */
  register(hostname: string, facts: string, token: TokenRow): AgentRow;
  get(id: string): AgentRow | undefined;
  list(): AgentRow[];
  /** Heartbeat: marks the agent alive and hands it its pending jobs (now running). */
  heartbeat(agentId: string, token: TokenRow): JobRow[];
  createJob(hostname: string, argv: string[], labels: Record<string, string>): JobRow;
  /** Ends a running job of the token's host, with a trace that token uploaded, or an error. */
  completeJob(id: string, traceId: string, error: string, token: TokenRow): void;
  getJob(id: string): JobRow | undefined;
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

  /** Throws unless `token` may speak for the host. */
  private checkOwner(hostname: string, token: TokenRow): void {
    if (token.role === 'admin') return;
    const owner = this.owner(hostname);
    if (owner !== token.id) throw permissionDenied(`host ${hostname} belongs to another agent token`);
  }

  register(hostname: string, facts: string, token: TokenRow): AgentRow {
    const run = this.db.transaction((): AgentRow => {
      const owner = this.owner(hostname);
      if (token.role !== 'admin') {
        if (owner && owner !== token.id) throw permissionDenied(`host ${hostname} belongs to another agent token`);
        const other = this.db
          .prepare('SELECT hostname FROM agents WHERE token_id = ? AND hostname != ?')
          .get(token.id, hostname) as { hostname: string } | undefined;
        if (other) throw permissionDenied(`this agent token already belongs to host ${other.hostname}; create a token for each host`);
      }
      const now = Date.now();
      const existing = this.db.prepare('SELECT id FROM agents WHERE hostname = ?').get(hostname) as { id: string } | undefined;
      const id = existing?.id ?? randomUUID();
      // An admin registering keeps the host's owner; an agent token takes a host nobody holds.
      const tokenId = token.role === 'admin' ? owner : token.id;
      this.db
        .prepare(
          `INSERT INTO agents (id, hostname, facts, registered_ms, last_heartbeat_ms, token_id) VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT(hostname) DO UPDATE SET facts = excluded.facts, last_heartbeat_ms = excluded.last_heartbeat_ms,
             token_id = excluded.token_id`,
        )
        .run(id, hostname, facts, now, now, tokenId);
      return this.get(id)!;
    });
    return run.immediate();
  }

  get(id: string): AgentRow | undefined {
    const r = this.db.prepare('SELECT id, hostname, facts, registered_ms, last_heartbeat_ms FROM agents WHERE id = ?').get(id) as
      | { id: string; hostname: string; facts: string; registered_ms: number; last_heartbeat_ms: number }
      | undefined;
    return r && { id: r.id, hostname: r.hostname, facts: r.facts, registeredMs: r.registered_ms, lastHeartbeatMs: r.last_heartbeat_ms };
  }

  list(): AgentRow[] {
    const rows = this.db.prepare('SELECT id FROM agents ORDER BY hostname').all() as { id: string }[];
    return rows.map((r) => this.get(r.id)!);
  }

  heartbeat(agentId: string, token: TokenRow): JobRow[] {
    const run = this.db.transaction(() => {
      const a = this.get(agentId);
      if (!a) throw notFound(`unknown agent ${agentId}; register again`);
      this.checkOwner(a.hostname, token);
      const now = Date.now();
      this.db.prepare('UPDATE agents SET last_heartbeat_ms = ? WHERE id = ?').run(now, agentId);
      const jobs = this.jobsWhere('hostname = ? AND state = ?', a.hostname, 'pending');
      const upd = this.db.prepare("UPDATE jobs SET state = 'running', updated_ms = ? WHERE id = ?");
      for (const j of jobs) {
        upd.run(now, j.id);
        j.state = 'running';
      }
      return jobs;
    });
    return run.immediate();
  }

  createJob(hostname: string, argv: string[], labels: Record<string, string>): JobRow {
    const id = randomUUID();
    const now = Date.now();
    this.db
      .prepare("INSERT INTO jobs (id, hostname, argv, labels, state, created_ms, updated_ms) VALUES (?, ?, ?, ?, 'pending', ?, ?)")
      .run(id, hostname, JSON.stringify(argv), JSON.stringify(labels), now, now);
    return this.getJob(id)!;
  }

  completeJob(id: string, traceId: string, error: string, token: TokenRow): void {
    const run = this.db.transaction(() => {
      const job = this.getJob(id);
      if (!job) throw notFound(`no job ${id}`);
      this.checkOwner(job.hostname, token);
      if (job.state !== 'running') throw failedPrecondition(`job ${id} is not running (it is ${job.state})`);
      if (!error) {
        const t = this.db.prepare('SELECT token_id FROM traces WHERE id = ?').get(traceId) as { token_id: string } | undefined;
        if (!t) throw notFound(`no trace ${traceId}: upload it before completing the job`);
        if (token.role !== 'admin' && t.token_id !== token.id) throw permissionDenied(`trace ${traceId} was not uploaded with this token`);
      }
      this.db
        .prepare('UPDATE jobs SET state = ?, trace_id = ?, error = ?, updated_ms = ? WHERE id = ?')
        .run(error ? 'failed' : 'done', error ? '' : traceId, error, Date.now(), id);
    });
    run.immediate();
  }

  getJob(id: string): JobRow | undefined {
    return this.jobsWhere('id = ?', id)[0];
  }

  private jobsWhere(where: string, ...args: string[]): JobRow[] {
    const rows = this.db
      .prepare(`SELECT id, hostname, argv, labels, state, trace_id, error, created_ms FROM jobs WHERE ${where} ORDER BY created_ms`)
      .all(...args) as {
      id: string;
      hostname: string;
      argv: string;
      labels: string;
      state: JobState;
      trace_id: string;
      error: string;
      created_ms: number;
    }[];
    return rows.map((r) => ({
      id: r.id,
      hostname: r.hostname,
      argv: JSON.parse(r.argv) as string[],
      labels: JSON.parse(r.labels) as Record<string, string>,
      state: r.state,
      traceId: r.trace_id,
      error: r.error,
      createdMs: r.created_ms,
    }));
  }
}
