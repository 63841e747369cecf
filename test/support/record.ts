// Record and replay through the CLI, and the assertions that compare them byte for byte.
import { existsSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { rewind } from './cli.js';
import { describeRun, type RunOptions, type RunResult } from './process.js';
import { tempDir } from './tmp.js';

export interface Recording extends RunResult {
  traceDir: string;
  /** The program's own stderr: the record stderr without rewind's trailing trace-path line(s). */
  programStderr: Buffer;
}

/**
 * Strips rewind's own trailing lines (the trace path at the end) from record's stderr, leaving
 * what the program itself wrote.
 */
export function stripRewindLines(stderr: Buffer, traceDir: string): Buffer {
  const marks = new Set([traceDir]);
  try {
    marks.add(realpathSync(traceDir));
  } catch {
    /* the trace may not exist (failed record) */
  }
  let text = stderr.toString('latin1');
  for (;;) {
    const body = text.endsWith('\n') ? text.slice(0, -1) : text;
    const nl = body.lastIndexOf('\n');
    const last = body.slice(nl + 1);
    if (body.length === 0) break;
    const ours = last.startsWith('rewind') || [...marks].some((m) => last.includes(m));
    if (!ours) break;
    text = nl < 0 ? '' : body.slice(0, nl + 1);
  }
  return Buffer.from(text, 'latin1');
}

/** `rewind record -o DIR -- PROGRAM ARGS...`; DIR is a fresh temp path unless given. */
export async function record(
  program: string,
  args: readonly string[] = [],
  opts: RunOptions & { traceDir?: string } = {},
): Promise<Recording> {
  const traceDir = opts.traceDir ?? join(tempDir('rewind-trace-'), 'trace');
  const r = await rewind(['record', '-o', traceDir, '--', program, ...args], opts);
  return { ...r, traceDir, programStderr: stripRewindLines(r.stderr, traceDir) };
}

/** `rewind replay DIR`; stdin is a different, fixed text unless given, to show it is not read. */
export function replay(traceDir: string, opts: RunOptions = {}): Promise<RunResult> {
  return rewind(['replay', traceDir], { input: 'REPLAY STDIN MUST NOT BE READ\n', ...opts });
}

/** Asserts that record succeeded in the sense of producing a trace (whatever the program's status). */
export function expectRecorded(rec: Recording, expectedStatus?: number): void {
  expect(rec.timedOut, describeRun(rec)).toBe(false);
  expect(existsSync(join(rec.traceDir, 'manifest.json')), `no manifest.json in ${rec.traceDir}\n${describeRun(rec)}`).toBe(
    true,
  );
  if (expectedStatus !== undefined) expect(rec.status, describeRun(rec)).toBe(expectedStatus);
}

/** Replay stdout, stderr and status must equal the recorded run's, byte for byte. */
export function expectSameRun(rec: Recording, rep: RunResult): void {
  const ctx = `record:\n${describeRun(rec)}\n\nreplay:\n${describeRun(rep)}`;
  expect(rep.timedOut, ctx).toBe(false);
  // Compare as latin1 strings: one byte per character, and readable diffs on failure.
  expect(rep.stdout.toString('latin1'), `replay stdout differs\n${ctx}`).toBe(rec.stdout.toString('latin1'));
  expect(rep.stderr.toString('latin1'), `replay stderr differs\n${ctx}`).toBe(rec.programStderr.toString('latin1'));
  expect(rep.status, `replay status differs\n${ctx}`).toBe(rec.status);
}

/** Records then replays a program, asserts byte equality, and returns both runs. */
export async function recordReplay(
  program: string,
  args: readonly string[] = [],
  opts: RunOptions & { expectStatus?: number; replayInput?: string | Buffer } = {},
): Promise<{ rec: Recording; rep: RunResult }> {
  const rec = await record(program, args, opts);
  expectRecorded(rec, opts.expectStatus);
  const rep = await replay(rec.traceDir, opts.replayInput === undefined ? {} : { input: opts.replayInput });
  expectSameRun(rec, rep);
  return { rec, rep };
}

/** Asserts a command failed cleanly: non-zero, no timeout, a message, and no stack trace. */
export function expectCleanFailure(r: RunResult, message: RegExp): void {
  const ctx = describeRun(r);
  expect(r.timedOut, `timed out\n${ctx}`).toBe(false);
  expect(r.status, `expected a non-zero exit\n${ctx}`).not.toBe(0);
  expect(r.signal, `killed by a signal\n${ctx}`).toBeNull();
  const err = r.stderr.toString('utf8');
  expect(err, ctx).toMatch(message);
  expect(err, `stack trace on stderr\n${ctx}`).not.toMatch(/^\s+at .*(:\d+:\d+\)?|<anonymous>)$/m);
  expect(err, `internal error instead of a clear message\n${ctx}`).not.toMatch(/internal error|Segmentation fault|core dumped/i);
}

/** Asserts a replay stopped with a divergence at event `index`, saying `what` and how to see it. */
export function expectDivergedAt(rep: RunResult, traceDir: string, index: number, what: RegExp): void {
  expectCleanFailure(rep, /replay diverged at event \d+/);
  const err = rep.stderr.toString();
  expect(Number(/diverged at event (\d+)/.exec(err)?.[1]), err).toBe(index);
  expect(err).toMatch(what);
  expect(err).toContain(`; the events around it: rewind dump ${traceDir} --from ${Math.max(0, index - 5)} --to ${index + 5}`);
}
