import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { confine, engineErrorCode, stubPath } from '../../native/index.js';
import { requireEngine } from '../engine.js';
import { eventsPath, readManifest } from '../trace/manifest.js';
import { resolveTraceDir } from '../trace/trace_dir.js';
import { UserError } from '../user_error.js';
import { addClientOptions, type ClientFlags } from '../client/config.js';

/** Exit status of `rewind replay` when replay itself fails (divergence, damaged trace). */
export const REPLAY_FAILED = 125;

async function replayLocal(dir: string): Promise<void> {
  const manifest = readManifest(dir);
  const events = eventsPath(manifest, dir);
  if (!manifest.complete) {
    process.stderr.write('rewind: this recording was cut short (the recorder was killed); replaying the events it holds\n');
  }
  const engine = requireEngine();
  try {
    confine(dir);
    await engine.replay({ traceDir: dir, eventsPath: events, stubPath: stubPath() });
  } catch (err) {
    const code = engineErrorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'EDIVERGED' || code === 'EBADTRACE') throw new UserError(message, REPLAY_FAILED);
    throw new UserError(`replay failed: ${message}`, REPLAY_FAILED);
  }
  process.exitCode = manifest.exit?.status ?? REPLAY_FAILED;
}

/** A trace id as the server hands them out (a UUID); anything else names a local directory. */
const TRACE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

async function replay(trace: string | undefined, flags: ClientFlags): Promise<void> {
  if (trace && !existsSync(trace) && TRACE_ID.test(trace)) {
    // Loaded only here: local replay must not need the gRPC client, nor remote replay the engine.
    const { remoteReplay } = await import('../client/remote_replay.js');
    process.exitCode = await remoteReplay(trace, flags);
    return;
  }
  if (trace && !existsSync(trace)) throw new UserError(`${trace}: no such trace directory`);
  await replayLocal(resolveTraceDir(trace));
}

export function registerReplay(program: Command): void {
  const cmd = program
    .command('replay')
    .description('re-execute a recorded run: the same output, the same exit status, none of its I/O')
    .argument('[trace]', 'trace directory, or the id of a trace on the server (default: the latest recording)')
    .addHelpText(
      'after',
      `\nReplay writes the bytes the program wrote to stdout and stderr and exits with its recorded\nstatus. If replay cannot follow the recording, it stops with a message and exit status ${REPLAY_FAILED}.`,
    )
    .action(replay);
  addClientOptions(cmd);
}
