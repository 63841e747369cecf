import { status } from '@grpc/grpc-js';
import { UserError } from '../trace/user_error.js';
import { connect, isServiceError, userErrorFrom } from './client.js';
import { resolveConfig, type ClientFlags } from './config.js';
import type { RunReplayResponse } from '../gen/rewind/replay/v1/replay.js';

export interface RemoteReplayOptions extends ClientFlags {
  stdout?: NodeJS.WritableStream;
  stderr?: NodeJS.WritableStream;
}

/**
 * Replays a trace stored on the server (`rewind replay ID`): the server runs the replay in a worker
 * process and streams the recorded stdout/stderr, which are written here as they come.
 * Resolves the recorded exit status; throws UserError for failures (unknown id, no permission,
 * worker crash, idle timeout...).
 */
export async function remoteReplay(id: string, opts: RemoteReplayOptions = {}): Promise<number> {
  const config = resolveConfig(opts);
  const out = opts.stdout ?? process.stdout;
  const err = opts.stderr ?? process.stderr;
  const c = connect(config);
  try {
    return await new Promise<number>((resolve, reject) => {
      let exit: number | undefined;
      const stream = c.replay.runReplay({ traceId: id }, c.metadata());
      const onSignal = (): void => stream.cancel();
      process.once('SIGINT', onSignal);
      stream.on('data', (msg: RunReplayResponse) => {
        if (msg.stdout) {
          if (!out.write(msg.stdout)) {
            stream.pause();
            out.once('drain', () => stream.resume());
          }
        } else if (msg.stderr) {
          if (!err.write(msg.stderr)) {
            stream.pause();
            err.once('drain', () => stream.resume());
          }
        } else if (msg.exit) {
          if (msg.exit.error) err.write(`rewind: ${msg.exit.error}\n`);
          exit = msg.exit.status;
        }
      });
      stream.on('error', (e: unknown) => {
        process.off('SIGINT', onSignal);
        if (isServiceError(e) && e.code === status.CANCELLED) reject(new UserError('replay cancelled', 130));
        else if (isServiceError(e) && (e.code === status.ABORTED || e.code === status.DEADLINE_EXCEEDED || e.code === status.INTERNAL)) {
          reject(new UserError(`remote replay failed: ${e.details}`, 70));
        } else reject(userErrorFrom(e, config.server));
      });
      stream.on('end', () => {
        process.off('SIGINT', onSignal);
        if (exit === undefined) reject(new UserError('remote replay ended without an exit status', 70));
        else resolve(exit);
      });
    });
  } finally {
    c.close();
  }
}
