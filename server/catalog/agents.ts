// Agents (one a host) and the recording jobs the server hands them at their heartbeat.
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import { notFound } from '../errors.js';
import type { AgentRow, JobRow, JobState } from './types.js';

export interface AgentStore {
  register(hostname: string, facts: string): AgentRow;
  get(id: string): AgentRow | undefined;
  list(): AgentRow[];
  /** Heartbeat: marks the agent alive and hands it its pending jobs (now running). */
  heartbeat(agentId: string): JobRow[];
  createJob(hostname: string, argv: string[], labels: Record<string, string>): JobRow;
  completeJob(id: string, traceId: string, error: string): void;
  getJob(id: string): JobRow | undefined;
}

export class SqliteAgents implements AgentStore {
  constructor(private readonly db: Database.Database) {}

  register(hostname: string, facts: string): AgentRow {
    const now = Date.now();
    const existing = this.db.prepare('SELECT id FROM agents WHERE hostname = ?').get(hostname) as { id: string } | undefined;
    const id = existing?.id ?? randomUUID();
    this.db
      .prepare(
        `INSERT INTO agents (id, hostname, facts, registered_ms, last_heartbeat_ms) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(hostname) DO UPDATE SET facts = excluded.facts, last_heartbeat_ms = excluded.last_heartbeat_ms`,
      )
      .run(id, hostname, facts, now, now);
    return this.get(id)!;
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

  heartbeat(agentId: string): JobRow[] {
    const run = this.db.transaction(() => {
      const a = this.get(agentId);
      if (!a) throw notFound(`unknown agent ${agentId}; register again`);
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

  completeJob(id: string, traceId: string, error: string): void {
    const info = this.db
      .prepare('UPDATE jobs SET state = ?, trace_id = ?, error = ?, updated_ms = ? WHERE id = ?')
      .run(error ? 'failed' : 'done', traceId, error, Date.now(), id);
    if (info.changes === 0) throw notFound(`no job ${id}`);
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
