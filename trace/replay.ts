// Replays a local trace directory with the native engine: `rewind replay DIR` and the server's
// replay workers run the same code.
import { confine, engineErrorCode, stubPath } from '../native/index.js';
import { requireEngine } from './engine.js';
import { eventsPath, readManifest } from './manifest.js';
import { REPLAY_FAILED, UserError } from './user_error.js';

export interface ReplayTraceOptions {
  /**
   * Divergence messages name the trace by its id (`rewind dump ID`), not by its directory: a
   * server's worker replays a scratch directory that its user never sees.
   */
  nameById?: boolean;
}

/**
 * Writes what the program wrote to stdout and stderr and resolves its recorded exit status;
 * a replay that cannot follow the recording is a UserError with status REPLAY_FAILED.
 */
export async function replayTrace(dir: string, opts: ReplayTraceOptions = {}): Promise<number> {
  const manifest = readManifest(dir);
  const events = eventsPath(manifest, dir);
  if (!manifest.complete) {
    process.stderr.write('rewind: this recording was cut short (the recorder was killed); replaying the events it holds\n');
  }
  const engine = requireEngine();
  try {
    confine(dir);
    await engine.replay({ traceDir: dir, eventsPath: events, stubPath: stubPath(), traceName: opts.nameById ? manifest.id : undefined });
  } catch (err) {
    const code = engineErrorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'EDIVERGED' || code === 'EBADTRACE') throw new UserError(message, REPLAY_FAILED);
    throw new UserError(`replay failed: ${message}`, REPLAY_FAILED);
  }
  return manifest.exit?.status ?? REPLAY_FAILED;
}
