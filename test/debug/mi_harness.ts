// gdb's machine interface the way an IDE drives it (VS Code's cppdbg runs
// `gdb --interpreter=mi2`): one command at a time, each answered by a result record; a command
// that resumes (^running) is done only at its *stopped record, which must always come.
import { spawn } from 'node:child_process';
import { expect } from 'vitest';
import { baseEnv } from '../engine/harness.js';
import { expectNoStray, type DebugServer } from './gdb_harness.js';

export interface MiReply {
  command: string;
  /** Every line gdb wrote from this command to its end. */
  lines: string[];
  /** The result record: ^done, ^running, ^error... */
  result: string;
  /** For a command that resumed: the *stopped record, or undefined when none came in time. */
  stopped?: string;
}

export interface MiSession {
  replies: MiReply[];
  transcript: string;
  status: number | null;
}

/**
 * Runs `gdb --interpreter=mi2` connected to the port (or a `| command`), then the commands in
 * order, then -gdb-exit. A reply that does not come in `timeoutMs` ends the run there. With
 * `target` null the commands connect themselves (as an IDE's configuration does).
 */
export async function gdbMi(target: number | string | null, commands: string[], timeoutMs = 60_000): Promise<MiSession> {
  // gdb waits 2 s for a reply by default and then takes a late reply for the next packet's (a
  // server's worker starting on a loaded machine): as in batch runs, wait longer.
  const gdb = spawn('gdb', ['--interpreter=mi2', '-nx', '-iex', 'set pagination off', '-iex', 'set confirm off', '-iex', 'set remotetimeout 60'], {
    env: baseEnv({ HOME: '/nonexistent' }),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let pending = '';
  const lines: string[] = [];
  let wake: (() => void) | undefined;
  const onData = (b: Buffer): void => {
    out += b.toString();
    pending += b.toString();
    const parts = pending.split('\n');
    pending = parts.pop() ?? '';
    lines.push(...parts.map((l) => l.replace(/\r$/, '')));
    wake?.();
  };
  gdb.stdout.on('data', onData);
  gdb.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => gdb.on('close', resolve));
  let closed = false;
  void exited.then(() => {
    closed = true;
    wake?.();
  });
  let seen = 0;
  /** Lines up to and including the first that `done` accepts, or null on timeout. */
  const until = async (done: (l: string) => boolean): Promise<{ taken: string[]; hit?: string }> => {
    const deadline = Date.now() + timeoutMs;
    const taken: string[] = [];
    for (;;) {
      while (seen < lines.length) {
        const l = lines[seen++]!;
        taken.push(l);
        if (done(l)) return { taken, hit: l };
      }
      const left = deadline - Date.now();
      if (left <= 0 || closed) return { taken };
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  };
  const replies: MiReply[] = [];
  const connect = target === null ? [] : [`-target-select extended-remote ${typeof target === 'number' ? `127.0.0.1:${target}` : target}`];
  for (const command of [...connect, ...commands]) {
    gdb.stdin.write(`${command}\n`);
    const r = await until((l) => /^\^(done|running|error|connected|exit)/.test(l));
    const reply: MiReply = { command, lines: r.taken, result: r.hit ?? '' };
    if (!r.hit) {
      replies.push(reply);
      break;
    }
    if (r.hit.startsWith('^running')) {
      const s = await until((l) => l.startsWith('*stopped'));
      reply.lines.push(...s.taken);
      reply.stopped = s.hit;
    }
    replies.push(reply);
  }
  gdb.stdin.write('-gdb-exit\n');
  gdb.stdin.end();
  const timer = setTimeout(() => gdb.kill('SIGKILL'), 20_000);
  const status = await exited;
  clearTimeout(timer);
  return { replies: replies.slice(connect.length), transcript: out, status };
}

/** The value of `name="..."` in an MI record (first occurrence), unescaped. */
export function miField(record: string | undefined, name: string): string | undefined {
  const m = new RegExp(`(?:^|[,{])${name}="((?:[^"\\\\]|\\\\.)*)"`).exec(record ?? '');
  return m ? m[1]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c)) : undefined;
}

/**
 * Waits for the server to end with the debugger's session, with no process left behind and no
 * sign of a dead session in the transcript; returns the context for failure messages.
 */
export async function expectSessionEnded(server: DebugServer, children: number[], transcript: string): Promise<string> {
  const status = await Promise.race([server.exited, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
  const ctx = `${transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
  if (status === -1) server.kill();
  expect(status, `rewind debug did not end with the gdb session\n${ctx}`).toBe(0);
  expectNoStray(children, ctx);
  // The session never died: no command failed for want of a thread or registers.
  expect(transcript, ctx).not.toMatch(/Could not read registers|no thread \d+ at this moment|No threads\.|Remote connection closed|internal-error/);
  return ctx;
}
