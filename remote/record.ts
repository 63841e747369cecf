import { status } from '@grpc/grpc-js';
import { UserError } from '../trace/user_error.js';
import { call, isServiceError, withClients } from './client.js';
import { resolveConfig, type ClientFlags } from './config.js';
import { pushTrace } from './upload.js';
import { JobState } from '../gen/rewind/agent/v1/agent.js';

/**
 * `rewind record --on HOST -- PROGRAM ARGS`: asks HOST's agent to record the program, waits for
 * the trace to be uploaded and resolves its id. Needs an admin token.
 */
export async function recordOn(host: string, argv: string[], flags: ClientFlags & { labels?: Record<string, string>; timeoutMs?: number } = {}): Promise<string> {
  const config = resolveConfig(flags);
  return withClients(config, async (c) => {
    const created = await call(c, c.agent.createJob.bind(c.agent), { hostname: host, argv, labels: flags.labels ?? {} });
    const id = created.job!.id;
    const deadline = Date.now() + (flags.timeoutMs ?? 3_600_000);
    for (;;) {
      try {
        const res = await call(c, c.agent.getJob.bind(c.agent), { id, wait: true }, 20_000);
        const job = res.job!;
        if (job.state === JobState.JOB_STATE_DONE) return job.traceId;
        if (job.state === JobState.JOB_STATE_FAILED) throw new UserError(`recording on ${host} failed: ${job.error}`);
      } catch (err) {
        if (!(isServiceError(err) && (err.code === status.DEADLINE_EXCEEDED || err.code === status.UNAVAILABLE))) throw err;
      }
      if (Date.now() > deadline) throw new UserError(`timed out waiting for ${host} to record (job ${id})`);
    }
  });
}

/** `rewind record --push`: uploads a freshly recorded trace directory and resolves its id. */
export async function pushRecorded(dir: string, flags: ClientFlags & { labels?: Record<string, string>; keepEnv?: boolean } = {}): Promise<string> {
  const config = resolveConfig(flags);
  const res = await withClients(config, (c) => pushTrace(c, dir, { labels: flags.labels, keepEnv: flags.keepEnv }));
  return res.traceId;
}
