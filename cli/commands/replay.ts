import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import type { ClientFlags } from '../../remote/config.js';
import { isTraceId } from '../../trace/ids.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';
import { REPLAY_FAILED, UserError } from '../../trace/user_error.js';

async function replay(trace: string | undefined, flags: ClientFlags): Promise<void> {
  if (trace && !existsSync(trace) && isTraceId(trace)) {
    // Loaded only here: local replay must not need the gRPC client, nor remote replay the engine.
    const { remoteReplay } = await import('../../remote/replay.js');
    process.exitCode = await remoteReplay(trace, flags);
    return;
  }
  if (trace && !existsSync(trace)) throw new UserError(`${trace}: no such trace directory`);
  const { replayTrace } = await import('../../trace/replay.js');
  process.exitCode = await replayTrace(resolveTraceDir(trace));
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
