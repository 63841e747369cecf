import { AgentServiceService } from '../../gen/rewind/agent/v1/agent.js';
import { status } from '@grpc/grpc-js';
import type { Catalog, JobRow } from '../catalog/catalog.js';
import { RpcError, invalidArgument, notFound } from '../errors.js';
import { unary, type AuthDeps } from '../rpc.js';
import { checkTraceId } from './catalog.js';
import { validateLabels } from './upload.js';
import {
  JobState,
  type AgentServiceServer,
  type CompleteJobRequest,
  type CompleteJobResponse,
  type CreateJobRequest,
  type CreateJobResponse,
  type GetJobRequest,
  type GetJobResponse,
  type HeartbeatRequest,
  type HeartbeatResponse,
  HostFacts,
  type Job,
  type ListHostsRequest,
  type ListHostsResponse,
  type RegisterRequest,
  type RegisterResponse,
} from '../../gen/rewind/agent/v1/agent.js';

export interface AgentDeps extends AuthDeps {
  catalog: Catalog;
  heartbeatIntervalMs: number;
}

const STATE: Record<JobRow['state'], JobState> = {
  pending: JobState.JOB_STATE_PENDING,
  running: JobState.JOB_STATE_RUNNING,
  done: JobState.JOB_STATE_DONE,
  failed: JobState.JOB_STATE_FAILED,
};

function toJob(j: JobRow): Job {
  return { id: j.id, hostname: j.hostname, argv: j.argv, state: STATE[j.state], traceId: j.traceId, error: j.error, labels: j.labels };
}

/**
 * How long a job handed to an agent stays its own without a heartbeat: ten beats, and at least a
 * minute (a server restart or a slow link must not fail the jobs of a live agent).
 */
export function jobLeaseMs(heartbeatIntervalMs: number): number {
  return Math.max(10 * heartbeatIntervalMs, 60_000);
}

export function agentService(deps: AgentDeps): AgentServiceServer {
  const { catalog } = deps;
  return {
    register: unary<RegisterRequest, RegisterResponse>(deps, AgentServiceService.register, async (req, ctx) => {
      const facts = req.facts;
      if (!facts?.hostname) throw invalidArgument('facts.hostname is required');
      if (facts.hostname.length > 255) throw invalidArgument('facts.hostname is longer than 255 characters');
      const a = await catalog.agents.register(facts.hostname, JSON.stringify(HostFacts.toJSON(facts)), ctx.token);
      ctx.log.info({ agent: a.id, hostname: a.hostname }, 'agent registered');
      return { agentId: a.id, heartbeatIntervalMs: deps.heartbeatIntervalMs };
    }),
    heartbeat: unary<HeartbeatRequest, HeartbeatResponse>(deps, AgentServiceService.heartbeat, async (req, ctx) => ({
      jobs: (await catalog.agents.heartbeat(req.agentId, ctx.token, jobLeaseMs(deps.heartbeatIntervalMs))).map(toJob),
    })),
    completeJob: unary<CompleteJobRequest, CompleteJobResponse>(deps, AgentServiceService.completeJob, async (req, ctx) => {
      const traceId = req.error ? '' : checkTraceId(req.traceId);
      await catalog.agents.completeJob(req.jobId, traceId, req.error.slice(0, 4096), ctx.token);
      return {};
    }),
    listHosts: unary<ListHostsRequest, ListHostsResponse>(deps, AgentServiceService.listHosts, async () => {
      const now = Date.now();
      return {
        hosts: (await catalog.agents.list()).map((a) => ({
          agentId: a.id,
          facts: HostFacts.fromJSON(JSON.parse(a.facts)),
          registeredAt: new Date(a.registeredMs),
          lastHeartbeat: new Date(a.lastHeartbeatMs),
          online: now - a.lastHeartbeatMs < 3 * deps.heartbeatIntervalMs + 1000,
        })),
      };
    }),
    createJob: unary<CreateJobRequest, CreateJobResponse>(deps, AgentServiceService.createJob, async (req, ctx) => {
      if (!req.hostname) throw invalidArgument('hostname is required');
      if (req.argv.length === 0) throw invalidArgument('argv is empty: what should the agent record?');
      if (!(await catalog.agents.list()).some((a) => a.hostname === req.hostname)) throw notFound(`no agent on host ${req.hostname}`);
      const j = await catalog.agents.createJob(req.hostname, req.argv, validateLabels(req.labels));
      ctx.log.info({ job: j.id, host: j.hostname, argv: j.argv, by: ctx.token.name }, 'job created');
      return { job: toJob(j) };
    }),
    getJob: unary<GetJobRequest, GetJobResponse>(deps, AgentServiceService.getJob, async (req, _ctx, call) => {
      for (;;) {
        const j = await catalog.agents.getJob(req.id);
        if (!j) throw notFound(`no job ${req.id}`);
        if (!req.wait || j.state === 'done' || j.state === 'failed') return { job: toJob(j) };
        if (call.cancelled) throw new RpcError(status.CANCELLED, 'cancelled');
        await new Promise((r) => setTimeout(r, 200));
      }
    }),
  };
}
