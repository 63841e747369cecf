// Records a program into a trace directory with the native engine: `rewind record` and the
// agent's recording workers run the same code.
import { randomUUID } from 'node:crypto';
import { accessSync, constants, existsSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { constants as osConstants, userInfo } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { engineErrorCode, preloadPath, type Engine } from '../native/index.js';
import { hostFacts } from './host_facts.js';
import { CURRENT_VERSION, exitInfo, TRACE_FORMAT, writeManifest, type ExitInfo, type Manifest } from './manifest.js';
import { tracesRoot, updateLatest } from './trace_dir.js';
import { UserError } from './user_error.js';

/** Finds the program the way a shell would: a path, or a name searched in $PATH. */
export function resolveProgram(program: string): string {
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

/**
 * Whether recording uses the syscall buffer (docs/syscall-buffer.md): yes, unless `rewind record
 * --no-syscall-buffer` (`option` false) or REWIND_SYSCALL_BUFFER=0 in the recorder's
 * environment (the agent's too) says not; every syscall then stops in the recorder.
 */
export function syscallBufferWanted(option = true): boolean {
  return option && process.env.REWIND_SYSCALL_BUFFER !== '0';
}

const TERMINAL_SIGNALS = ['SIGINT', 'SIGQUIT', 'SIGHUP'] as const;
/** How long a program may take to end after the SIGTERM rewind passed on, before it is killed. */
const TERM_GRACE_MS = 5000;

/** Removes `latest` if it still names `dir` (a recording that failed). */
function dropLatest(dir: string): void {
  const link = join(tracesRoot(), 'latest');
  try {
    if (readlinkSync(link) === resolve(dir)) rmSync(link, { force: true });
  } catch {
    // no link
  }
}

/**
 * Records `command` (its program resolved to `exe`) into the empty directory `traceDir` and
 * returns the finished manifest. With `latest`, the trace becomes the latest recording. The
 * engine is the caller's (requireEngine), so that a machine without it fails before any
 * directory is made.
 */
export async function recordTrace(
  engine: Engine,
  command: string[],
  exe: string,
  traceDir: string,
  opts: { latest: boolean; syscallBuffer?: boolean },
): Promise<Manifest & { exit: ExitInfo }> {
  const env = Object.entries(process.env).map(([k, v]) => `${k}=${v ?? ''}`);
  // The terminal's signals are for the recorded program; rewind must live to finish the trace.
  const ignore = (): void => {};
  for (const sig of TERMINAL_SIGNALS) process.on(sig, ignore);
  // A SIGTERM came to rewind alone (kill, timeout, a service manager): as under rr, it goes on to
  // the program's process group, and the program is killed if it still runs 5 s later (or at a
  // second SIGTERM). The trace ends with the program, complete.
  let killTimer: NodeJS.Timeout | undefined;
  const kill = (): void => engine.signalRecordings(osConstants.signals.SIGKILL);
  const terminate = (): void => {
    if (killTimer) return kill();
    engine.signalRecordings(osConstants.signals.SIGTERM);
    killTimer = setTimeout(kill, TERM_GRACE_MS).unref();
  };
  process.on('SIGTERM', terminate);

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
  if (opts.latest) updateLatest(traceDir);
  let outcome;
  try {
    // An engine built before the library existed records without it.
    const preload = syscallBufferWanted(opts.syscallBuffer) && existsSync(preloadPath()) ? preloadPath() : undefined;
    outcome = await engine.record({ exe, argv: command, env, traceDir, preload });
  } catch (err) {
    rmSync(traceDir, { recursive: true, force: true });
    if (opts.latest) dropLatest(traceDir);
    const code = engineErrorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'EEXEC') throw new UserError(message, 126);
    if (code === 'EUNSUPPORTED') throw new UserError(`cannot record ${command[0]}: ${message}`, 1);
    throw new UserError(`recording failed: ${message}`, 1);
  } finally {
    for (const sig of TERMINAL_SIGNALS) process.off(sig, ignore);
    process.off('SIGTERM', terminate);
    clearTimeout(killTimer);
  }
  const durationMs = Number(process.hrtime.bigint() - startNs) / 1e6;
  const manifest = {
    ...provisional,
    endTime: new Date(start.getTime() + durationMs).toISOString(),
    durationMs,
    exit: exitInfo(outcome.waitStatus),
    complete: true,
    counts: {
      events: outcome.events,
      tasks: outcome.tasks,
      syscalls: outcome.syscalls,
      bytes: outcome.blobs.reduce((sum, b) => sum + b.size, 0),
    },
    processes: outcome.processes,
    blobs: outcome.blobs,
    syscallBuffer: outcome.syscallBuffer,
  };
  writeManifest(traceDir, manifest);
  return manifest;
}
