import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { collectLabel } from '../format.js';
import { print } from '../output.js';
import type { ClientFlags } from '../../remote/config.js';
import { newTraceDir } from '../../trace/trace_dir.js';
import { UserError } from '../../trace/user_error.js';

interface RecordFlags extends ClientFlags {
  output?: string;
  json?: boolean;
  push?: boolean;
  on?: string;
  label?: string[];
  keepEnv?: boolean;
  /** false with --no-syscall-buffer. */
  syscallBuffer: boolean;
}

function parseLabels(labels: string[] | undefined): Record<string, string> {
  return (labels ?? []).reduce<Record<string, string>>((all, l) => collectLabel(l, all), {});
}

function prepareOutput(output: string | undefined, program: string): string {
  if (!output) return newTraceDir(program);
  const dir = resolve(output);
  if (existsSync(dir) && readdirSync(dir).length > 0) {
    throw new UserError(`${output} already exists and is not empty; choose another directory for the trace`);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

async function record(command: string[], flags: RecordFlags): Promise<void> {
  const program = command[0];
  if (!program) throw new UserError('nothing to record: give a program after --, e.g. rewind record -- ls -l');
  if (flags.on) {
    if (!flags.syscallBuffer) throw new UserError("--no-syscall-buffer is for recording here; the agent's host sets REWIND_SYSCALL_BUFFER=0 for its own");
    // Recorded by that host's agent; this machine needs neither the engine nor the program.
    const { recordOn } = await import('../../remote/record.js');
    const id = await recordOn(flags.on, command, { ...flags, labels: parseLabels(flags.label) });
    print(`${id}\n`);
    return;
  }
  // Loaded only here: `rewind --help` and remote recording need neither.
  const { recordTrace, resolveProgram } = await import('../../trace/record.js');
  const { requireEngine } = await import('../../trace/engine.js');
  const exe = resolveProgram(program);
  const engine = requireEngine();
  const traceDir = prepareOutput(flags.output, program);
  const manifest = await recordTrace(engine, command, exe, traceDir, { latest: true, syscallBuffer: flags.syscallBuffer });
  let pushedId: string | undefined;
  if (flags.push) {
    const { pushRecorded } = await import('../../remote/record.js');
    pushedId = await pushRecorded(traceDir, { ...flags, labels: parseLabels(flags.label) });
  }
  const { exit } = manifest;
  if (flags.json) {
    process.stderr.write(`${JSON.stringify({ trace: traceDir, id: manifest.id, pushed: pushedId ?? null, exit })}\n`);
  } else {
    process.stderr.write(`rewind: trace saved to ${traceDir}\n`);
    if (pushedId) process.stderr.write(`rewind: uploaded as ${pushedId}\n`);
  }
  process.exitCode = exit.status;
}

export function registerRecord(program: Command): void {
  const cmd = program
    .command('record')
    .description('run a program under the recorder and save a trace of everything it did')
    .usage('[options] -- PROGRAM [ARGS...]')
    .option('-o, --output <dir>', 'directory for the trace (default: $REWIND_TRACE_DIR or ~/.local/share/rewind/traces/<program>-<n>)')
    .option('--json', 'print the trace path, id and exit status as JSON on stderr at the end')
    .option('--push', 'upload the trace to the server when the program ends')
    .option('--on <host>', "record on HOST's agent instead of here (admin token); prints the trace id")
    .option('--label <key=value...>', 'labels for the uploaded trace (with --push or --on)')
    .option('--keep-env', 'with --push: upload the environment as recorded (by default variables named like secrets are redacted; REWIND_TOKEN always is)')
    .option(
      '--no-syscall-buffer',
      'stop in the recorder at every syscall instead of buffering the frequent ones inside the program (slower; REWIND_SYSCALL_BUFFER=0 does the same)',
    )
    .argument('<command...>', 'the program to record and its arguments')
    .passThroughOptions()
    .addHelpText(
      'after',
      '\nThe program runs with rewind\'s stdin, stdout and stderr, and rewind exits with its status\n(128+N when a signal N killed it); the trace becomes the latest recording, with -o too. Example:\n  rewind record -- ls -la /usr/bin',
    )
    .action(record);
  addClientOptions(cmd);
}
