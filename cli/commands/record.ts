import { accessSync, constants, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { userInfo } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { randomUUID } from 'node:crypto';
import { constants as osConstants } from 'node:os';
import type { Command } from 'commander';
import { engineErrorCode } from '../../native/index.js';
import { requireEngine } from '../engine.js';
import { exitInfo, CURRENT_VERSION, TRACE_FORMAT, writeManifest, type Manifest } from '../trace/manifest.js';
import { hostFacts } from '../trace/host_facts.js';
import { newTraceDir, tracesRoot, updateLatest } from '../trace/trace_dir.js';
import { UserError } from '../user_error.js';
import { addClientOptions, type ClientFlags } from '../client/config.js';

interface RecordFlags extends ClientFlags {
  output?: string;
  json?: boolean;
  push?: boolean;
  on?: string;
  label?: string[];
}

function parseLabels(labels: string[] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of labels ?? []) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UserError(`--label ${l}: expected KEY=VALUE`);
    out[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return out;
}

export function signalName(n: number): string {
  const entry = Object.entries(osConstants.signals).find(([, v]) => v === n);
  return entry ? entry[0] : `signal ${n}`;
}

/** Finds the program the way a shell would: a path, or a name searched in $PATH. */
function resolveProgram(program: string): string {
  const candidates = program.includes('/')
    ? [resolve(program)]
    : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).map((dir) => join(dir || '.', program));
  for (const candidate of candidates) {
    try {
      if (!statSync(candidate).isFile()) continue;
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  throw new UserError(`${program}: command not found`, 127);
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
    // Recorded by that host's agent; this machine needs neither the engine nor the program.
    const { recordOn } = await import('../client/remote_record.js');
    const id = await recordOn(flags.on, command, { ...flags, labels: parseLabels(flags.label) });
    process.stdout.write(`${id}\n`);
    return;
  }
  const exe = resolveProgram(program);
  const engine = requireEngine();
  const traceDir = prepareOutput(flags.output, program);
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
  // The terminal's signals are for the recorded program; rewind must live to finish the trace.
  const ignore = (): void => {};
  for (const sig of ['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, ignore);

  const start = new Date();
  const startNs = process.hrtime.bigint();
  // Written first, so a recorder that gets killed still leaves a trace: one that says it was cut
  // short and replays the events it holds (events.partial).
  const provisional: Manifest = {
    format: TRACE_FORMAT,
    version: CURRENT_VERSION,
    id: randomUUID(),
    argv: command,
    exe,
    cwd: process.cwd(),
    env,
    user: userInfo().username,
    host: hostFacts(),
    startTime: start.toISOString(),
    endTime: start.toISOString(),
    durationMs: 0,
    exit: null,
    complete: false,
    counts: { events: 0, tasks: 0, syscalls: 0, bytes: 0 },
    processes: [],
    blobs: [],
  };
  writeManifest(traceDir, provisional);
  if (!flags.output) updateLatest(traceDir);
  let outcome;
  try {
    outcome = await engine.record({ exe, argv: command, env, traceDir });
  } catch (err) {
    rmSync(traceDir, { recursive: true, force: true });
    if (!flags.output) rmSync(join(tracesRoot(), 'latest'), { force: true });
    const code = engineErrorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'EEXEC') throw new UserError(message, 126);
    if (code === 'EUNSUPPORTED') throw new UserError(`cannot record ${program}: ${message}`, 1);
    throw new UserError(`recording failed: ${message}`, 1);
  } finally {
    for (const sig of ['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP'] as const) process.off(sig, ignore);
  }
  const durationMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  const exit = exitInfo(outcome.waitStatus, signalName);
  const manifest: Manifest = {
    ...provisional,
    endTime: new Date(start.getTime() + durationMs).toISOString(),
    durationMs,
    exit,
    complete: true,
    counts: {
      events: outcome.events,
      tasks: outcome.tasks,
      syscalls: outcome.syscalls,
      bytes: outcome.blobs.reduce((sum, b) => sum + b.size, 0),
    },
    processes: outcome.processes,
    blobs: outcome.blobs,
  };
  writeManifest(traceDir, manifest);
  let pushedId: string | undefined;
  if (flags.push) {
    const { pushRecorded } = await import('../client/remote_record.js');
    pushedId = await pushRecorded(traceDir, { ...flags, labels: parseLabels(flags.label) });
  }
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
    .argument('<command...>', 'the program to record and its arguments')
    .passThroughOptions()
    .addHelpText(
      'after',
      '\nThe program runs with rewind\'s stdin, stdout and stderr, and rewind exits with its status\n(128+N when a signal N killed it). Example:\n  rewind record -- ls -la /usr/bin',
    )
    .action(record);
  addClientOptions(cmd);
}
