// Runs one rr test natively, recorded and replayed through rewind's CLI, and classifies it.
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { constants } from 'node:os';
import { join } from 'node:path';
import type { TestSpec } from './suite.js';

export interface Outcome {
  /** Exit status, or 128+N when signal N ended the process (as a shell reports it). */
  status: number;
  stdout: Buffer;
  stderr: Buffer;
  ms: number;
  timedOut: boolean;
  /** The signal that ended the process, if one did. */
  signal: NodeJS.Signals | null;
}

const MAX_OUTPUT = 16 << 20;

/** Marks every process of one run in its environment, so that runaways can be found. */
const RUN_MARK = 'REWIND_CONFORMANCE_RUN';
let runs = 0;

/**
 * Kills what is left of a run: its process group, and the processes that left the group (a
 * daemon calls setsid) but still carry the run's mark in their environment.
 */
function killRun(pgid: number | undefined, mark: string): void {
  try {
    if (pgid) process.kill(-pgid, 'SIGKILL');
  } catch {
    // the group is already gone
  }
  const needle = `${RUN_MARK}=${mark}\0`;
  for (const pid of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').includes(needle)) process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone, or not ours to read
    }
  }
}

/**
 * Runs a command in its own process group. When the command exits (or the timeout hits) the
 * rest of the run is killed: a test's leftover children must not hold the pipes open or use
 * the CPU, and a hung recording must not outlive its run. Output still unread at the timeout
 * (a descendant that escaped the kill holds the pipe) is dropped.
 */
export function runOnce(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<Outcome> {
  return new Promise((resolve) => {
    const mark = `${process.pid}.${++runs}`;
    const start = process.hrtime.bigint();
    const child = spawn(cmd, args, { cwd, env: { ...env, [RUN_MARK]: mark }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const collect = (into: Buffer[]) => (d: Buffer) => {
      if (into.reduce((n, b) => n + b.length, 0) < MAX_OUTPUT) into.push(d);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    let timedOut = false;
    let exited: { code: number | null; signal: NodeJS.Signals | null; ms: number } | null = null;
    let settled = false;
    const finish = (): void => {
      if (settled || !exited) return;
      settled = true;
      clearTimeout(timer);
      const { code, signal, ms } = exited;
      const status = code ?? 128 + (signal ? constants.signals[signal] : 0);
      resolve({ status, stdout: Buffer.concat(out), stderr: Buffer.concat(err), ms, timedOut, signal });
    };
    const timer = setTimeout(() => {
      if (!exited) timedOut = true;
      killRun(child.pid, mark);
      child.stdout.destroy();
      child.stderr.destroy();
      finish();
    }, timeoutMs);
    // A program that cannot start (ENOENT, EACCES) is reported as a shell would, with status 127.
    child.on('error', (e) => {
      settled = true;
      clearTimeout(timer);
      resolve({ status: 127, stdout: Buffer.alloc(0), stderr: Buffer.from(e.message), ms: 0, timedOut: false, signal: null });
    });
    child.on('exit', (code, signal) => {
      exited = { code, signal, ms: Number(process.hrtime.bigint() - start) / 1e6 };
      killRun(child.pid, mark);
    });
    child.on('close', finish);
  });
}

export type Verdict =
  | 'fails natively'
  | 'identical'
  | 'refused'
  | 'recorder failed'
  | 'recording differs from native'
  | 'replay diverged'
  | 'timeout'
  | 'silent mismatch';

export interface Result {
  name: string;
  verdict: Verdict;
  /** The exact message or cause, used to group failures in the report. */
  reason?: string;
  nativeMs?: number;
  recordMs?: number;
  replayMs?: number;
}

export interface RunConfig {
  cli: string;
  bin: string;
  testDir: string;
  work: string;
  timeoutMs: number;
  keepTraces: boolean;
}

/** The first line of rewind's own complaint ("rewind: ..."), if stderr has one. */
function rewindMessage(stderr: string): string | null {
  const line = stderr.split('\n').find((l) => l.startsWith('rewind: '));
  return line ? line.slice('rewind: '.length) : null;
}

/** The line that ends a successful `rewind record`. */
const TRACE_SAVED = /rewind: trace saved to [^\n]*\n$/;

/** The recorded program's stderr: what rewind record wrote, without its closing "trace saved" line. */
function programStderr(stderr: Buffer): Buffer {
  const m = TRACE_SAVED.exec(stderr.toString('latin1'));
  return m ? stderr.subarray(0, m.index) : stderr;
}

function firstDifference(a: Buffer, b: Buffer): string {
  const la = a.toString('utf8').split('\n');
  const lb = b.toString('utf8').split('\n');
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    if (la[i] !== lb[i]) {
      return `line ${i + 1}: recorded ${JSON.stringify(la[i] ?? '<end>')}, replayed ${JSON.stringify(lb[i] ?? '<end>')}`;
    }
  }
  return 'same lines, other bytes';
}

function tail(s: string): string {
  const lines = s.trim().split('\n').filter(Boolean);
  return (lines[lines.length - 1] ?? '').slice(0, 300);
}

export async function runTest(spec: TestSpec, cfg: RunConfig): Promise<Result> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    LC_ALL: 'C',
    TESTDIR: cfg.testDir,
    PATH: `${cfg.bin}:${process.env.PATH ?? '/usr/bin:/bin'}`,
  };
  const exe = spec.exe.includes('/') ? spec.exe : join(cfg.bin, spec.exe);
  const args = spec.args.map((a) => (a.startsWith('@BIN@') ? join(cfg.bin, a.slice(5)) : a));
  // Each run gets a fresh working directory, as rr's harness gives each test one.
  const dirs: string[] = [];
  const inDir = (what: string): string => {
    const d = mkdtempSync(join(cfg.work, `${spec.name}-${what}-`));
    dirs.push(d);
    return d;
  };
  const has = (out: Buffer): boolean => spec.token === '' || out.includes(spec.token);
  try {
    // Under rr or rewind the test's parent is the recorder, which survives the SIGINT or
    // SIGTERM some tests send it (self_sigint, term_rr); natively a shell that traps them
    // plays that part (a trap, unlike an ignored signal, does not pass to the test).
    const native = await runOnce('/bin/sh', ['-c', 'trap : INT TERM; "$@"; exit $?', 'sh', exe, ...args], inDir('native'), env, cfg.timeoutMs);
    if (native.timedOut) return { name: spec.name, verdict: 'fails natively', reason: 'timeout natively' };
    if (!has(native.stdout)) {
      return { name: spec.name, verdict: 'fails natively', reason: `no ${spec.token} natively (exit ${native.status})` };
    }
    const base = { name: spec.name, nativeMs: native.ms };
    const recDir = inDir('record');
    const trace = join(recDir, 'trace');
    const rec = await runOnce(process.execPath, [cfg.cli, 'record', '-o', trace, '--', exe, ...args], recDir, env, cfg.timeoutMs);
    if (rec.timedOut) return { ...base, verdict: 'timeout', reason: 'record' };
    const recErr = rec.stderr.toString('utf8');
    const recMsg = rewindMessage(recErr);
    if (!TRACE_SAVED.test(recErr)) {
      if (recMsg?.startsWith('cannot record ')) {
        return { ...base, verdict: 'refused', reason: recMsg.replace(/^cannot record [^:]*: /, '') };
      }
      const end = rec.signal ? `was killed by ${rec.signal}` : `ended with status ${rec.status}`;
      const why = recMsg ?? `rewind record ${end} without a message${recErr.trim() ? `: ${tail(recErr)}` : ''}`;
      return { ...base, verdict: 'recorder failed', reason: why };
    }
    const withRecord = { ...base, recordMs: rec.ms };
    if (rec.status !== native.status || !has(rec.stdout)) {
      const what = rec.status !== native.status ? `exit ${rec.status}, natively ${native.status}` : `no ${spec.token}`;
      return { ...withRecord, verdict: 'recording differs from native', reason: `${what}: ${tail(programStderr(rec.stderr).toString()) || tail(rec.stdout.toString())}` };
    }
    const rep = await runOnce(process.execPath, [cfg.cli, 'replay', trace], recDir, env, cfg.timeoutMs);
    if (rep.timedOut) return { ...withRecord, verdict: 'timeout', reason: 'replay' };
    const withReplay = { ...withRecord, replayMs: rep.ms };
    const repMsg = rewindMessage(rep.stderr.toString('utf8'));
    if (rep.status === 125 && repMsg) return { ...withReplay, verdict: 'replay diverged', reason: repMsg };
    const recStderr = programStderr(rec.stderr);
    const diffs: string[] = [];
    if (!rep.stdout.equals(rec.stdout)) diffs.push(`stdout ${firstDifference(rec.stdout, rep.stdout)}`);
    if (!rep.stderr.equals(recStderr)) diffs.push(`stderr ${firstDifference(recStderr, rep.stderr)}`);
    if (rep.status !== rec.status) diffs.push(`exit ${rep.status}, recorded ${rec.status}`);
    if (diffs.length > 0) return { ...withReplay, verdict: 'silent mismatch', reason: diffs.join('; ') };
    return { ...withReplay, verdict: 'identical' };
  } finally {
    if (!cfg.keepTraces) for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
