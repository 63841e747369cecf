// Child processes of the suites: each runs in its own process group with a hard time limit (the
// whole group is killed), so a hung tracer or tracee fails its test instead of hanging the suite.
// A running process can be waited on for what it prints: an event, never a fixed sleep.
import { spawn, type ChildProcess } from 'node:child_process';
import { testEnv } from './env.js';
import { signalNumber } from '../../trace/signals.js';

/** Default time limit for one child process (record, replay or native run). */
export const RUN_TIMEOUT_MS = 45_000;

export interface RunResult {
  /** What was run, for failure messages. */
  command: string;
  stdout: Buffer;
  stderr: Buffer;
  /** Exit status as a shell reports it: the exit code, or 128+N when killed by signal N. */
  status: number;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  ms: number;
}

export interface RunOptions {
  /** Bytes for stdin; without it stdin is /dev/null. */
  input?: string | Buffer;
  cwd?: string;
  /** The whole environment (default: testEnv()). */
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export interface Running {
  child: ChildProcess;
  command: string;
  /** What it printed so far on stdout / stderr. */
  stdout(): string;
  stderr(): string;
  /**
   * Resolves once stdout or stderr (`which`) matches; rejects when the process ends first or
   * after `timeoutMs`, with what it printed.
   */
  waitFor(pattern: RegExp | string, which?: 'stdout' | 'stderr', timeoutMs?: number): Promise<void>;
  done: Promise<RunResult>;
}

/** Starts a command in its own process group; `done` resolves when it has ended. */
export function start(cmd: string, args: readonly string[], opts: RunOptions = {}): Running {
  const command = [cmd, ...args].map((a) => (/[\s'"]/.test(a) ? JSON.stringify(a) : a)).join(' ');
  const timeoutMs = opts.timeoutMs ?? RUN_TIMEOUT_MS;
  const started = Date.now();
  const child = spawn(cmd, [...args], {
    cwd: opts.cwd,
    env: opts.env ?? testEnv(),
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    detached: true,
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  child.stdout?.on('data', (b: Buffer) => {
    out.push(b);
    notify();
  });
  child.stderr?.on('data', (b: Buffer) => {
    err.push(b);
    notify();
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }, timeoutMs);
  if (opts.input !== undefined && child.stdin) {
    child.stdin.on('error', () => {
      /* the program may exit without reading all of its input */
    });
    child.stdin.end(opts.input);
  }
  let ended = false;
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`cannot run ${command}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      ended = true;
      notify();
      resolve({
        command,
        stdout: Buffer.concat(out),
        stderr: Buffer.concat(err),
        status: code ?? (signal ? 128 + (signalNumber(signal) ?? 0) : -1),
        signal,
        timedOut,
        ms: Date.now() - started,
      });
    });
  });
  const text = (bufs: Buffer[]): string => Buffer.concat(bufs).toString('utf8');
  const waitFor = (pattern: RegExp | string, which: 'stdout' | 'stderr' = 'stdout', waitMs = 60_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const seen = (): boolean => {
        const s = text(which === 'stdout' ? out : err);
        return typeof pattern === 'string' ? s.includes(pattern) : pattern.test(s);
      };
      const finish = (e?: Error): void => {
        listeners.delete(check);
        clearTimeout(t);
        if (e) reject(e);
        else resolve();
      };
      const why = (what: string): Error =>
        new Error(`${what} before ${command} printed ${String(pattern)} on ${which}\n--- stdout ---\n${text(out)}\n--- stderr ---\n${text(err)}`);
      const check = (): void => {
        if (seen()) finish();
        else if (ended) finish(why('it ended'));
      };
      const t = setTimeout(() => finish(why(`${waitMs} ms passed`)), waitMs);
      listeners.add(check);
      check();
    });
  return { child, command, stdout: () => text(out), stderr: () => text(err), waitFor, done };
}

/** Runs a command to completion in its own process group; kills the group on timeout. */
export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return start(cmd, args, opts).done;
}

/** Formats a result for assertion messages. */
export function describeRun(r: RunResult): string {
  const cut = (b: Buffer): string => {
    const s = b.toString('utf8');
    return s.length > 2000 ? `${s.slice(0, 2000)}… (${b.length} bytes)` : s;
  };
  return `$ ${r.command}\nstatus ${r.status}${r.signal ? ` (signal ${r.signal})` : ''}${
    r.timedOut ? ' TIMED OUT' : ''
  } in ${r.ms} ms\n--- stdout ---\n${cut(r.stdout)}\n--- stderr ---\n${cut(r.stderr)}`;
}

/** Waits until `cond` holds, checking every 25 ms, for states no process announces (/proc); fails after `ms`. */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
