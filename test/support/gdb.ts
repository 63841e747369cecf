// gdb for the debug suites: real gdb in batch mode (one driver, its output in one ordered
// pipe, waits on what it prints), a `rewind debug DIR --no-launch --json` server as a child
// process, a raw remote-protocol client for hostile input, and line numbers found by `mark:`
// comments in the fixtures.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import { checksum } from '../../debugserver/packet.js';
import { testEnv } from './env.js';
import { CLI, FIXTURES } from './paths.js';
import { start, until, type RunResult, type Running } from './process.js';
import { alive, descendantsOf, replayedCpuMs } from './procs.js';

/** The 1-based line of `mark:NAME` in a fixture. */
export function lineOf(fixture: string, mark: string): number {
  const lines = readFileSync(join(FIXTURES, fixture), 'utf8').split('\n');
  const i = lines.findIndex((l) => new RegExp(`mark:${mark}(\\s|$)`).test(l));
  if (i < 0) throw new Error(`no mark:${mark} in ${fixture}`);
  return i + 1;
}

/** The 1-based line of a fixture that contains `text` (for fixtures without marks). */
export function lineContaining(fixture: string, text: string): number {
  const i = readFileSync(join(FIXTURES, fixture), 'utf8').split('\n').findIndex((l) => l.includes(text));
  if (i < 0) throw new Error(`no line with ${text} in ${fixture}`);
  return i + 1;
}

export interface DebugServer {
  port: number;
  /** The lldb command line the server printed (--json). */
  lldb: string[];
  child: ChildProcess;
  stderr(): string;
  /** Resolves with the exit status (or 128+signal) once the server exits. */
  exited: Promise<number>;
  /** The pids of the server's descendants right now (the replayed processes). */
  descendants(): number[];
  /** Waits for what the server prints (Running.waitFor). */
  waitFor: Running['waitFor'];
  kill(): void;
}

/** Starts `rewind debug DIR --no-launch --json` and waits for it to print its port. */
export async function startServer(traceDir: string, extra: string[] = [], env: Record<string, string> = {}): Promise<DebugServer> {
  const server = start(process.execPath, [CLI, 'debug', traceDir, '--no-launch', '--json', ...extra], { timeoutMs: 600_000, env: testEnv(env) });
  const exited = server.done.then((r) => r.status);
  await server.waitFor('\n', 'stdout', 30_000);
  const info = JSON.parse(server.stdout().split('\n')[0]!) as { port: number; lldb: string[] };
  const pid = server.child.pid!;
  return {
    port: info.port,
    lldb: info.lldb,
    child: server.child,
    stderr: server.stderr,
    exited,
    descendants: () => descendantsOf(pid),
    waitFor: server.waitFor,
    kill: () => server.child.kill('SIGKILL'),
  };
}

/** gdb's Rust pretty printers (String, Option...), loaded explicitly: gdb does not auto-load them for a target: binary. */
export function rustGdbArgs(): string[] {
  const r = spawnSync('rustc', ['--print', 'sysroot'], { encoding: 'utf8' });
  const loader = join(r.stdout.trim(), 'lib', 'rustlib', 'etc', 'gdb_load_rust_pretty_printers.py');
  if (!existsSync(loader)) throw new Error(`no Rust pretty printers at ${loader}`);
  return ['-iex', `source ${loader}`];
}

/**
 * gdb's arguments for a batch run of `commands`, each preceded by an echoed marker. gdb waits
 * 2 s for a reply by default, then goes on and takes the late reply for the next packet's: on a
 * loaded machine a session starting up (a server's worker) takes longer.
 */
function batchArgs(target: number | string, commands: string[], pre: string[] = []): string[] {
  const args = ['-batch', '-nx', ...pre, '-iex', 'set pagination off', '-iex', 'set width 0', '-iex', 'set confirm off', '-iex', 'set remotetimeout 60'];
  args.push('-ex', `target extended-remote ${typeof target === 'number' ? `127.0.0.1:${target}` : target}`);
  commands.forEach((c, i) => args.push('-ex', `echo \\n@@${i}@@\\n`, '-ex', c));
  args.push('-ex', `echo \\n@@end@@\\n`);
  return args;
}

/** The output of each of `count` commands, split at the markers batchArgs echoes. */
function splitSections(transcript: string, count: number): string[] {
  const sections: string[] = [];
  for (let i = 0; i < count; i++) {
    const start = transcript.indexOf(`@@${i}@@\n`);
    const next = transcript.indexOf(`@@${i + 1 < count ? i + 1 : 'end'}@@`, start);
    sections.push(start < 0 ? '' : transcript.slice(start + `@@${i}@@\n`.length, next < 0 ? undefined : next));
  }
  return sections;
}

/**
 * gdb in batch mode against `target`, its stdout and stderr in one pipe so that its messages
 * stay in order with its output.
 */
function startGdb(target: number | string, commands: string[], opts: { pre?: string[]; timeoutMs?: number } = {}): Running {
  return start('sh', ['-c', 'exec gdb "$@" 2>&1', 'gdb', ...batchArgs(target, commands, opts.pre)], {
    timeoutMs: opts.timeoutMs ?? 120_000,
    env: testEnv({ HOME: '/nonexistent' }),
  });
}

export interface GdbRun extends RunResult {
  /** gdb's output (stdout and stderr interleaved) for each command, in order. */
  sections: string[];
  /** Everything, for failure messages. */
  transcript: string;
}

/**
 * `gdb -batch -nx` connected to the port (or to a `| command` for stdio), running the commands
 * in order; a marker echoed before each command splits the output into one section a command.
 */
export async function gdbBatch(
  target: number | string,
  commands: string[],
  opts: { pre?: string[]; timeoutMs?: number } = {},
): Promise<GdbRun> {
  const gdb = startGdb(target, commands, opts);
  const r = await gdb.done;
  const transcript = r.stdout.toString('utf8');
  return { ...r, sections: splitSections(transcript, commands.length), transcript: `$ ${r.command}\n${transcript}` };
}

export interface InterruptedGdb {
  sections: string[];
  transcript: string;
  status: number | null;
  /** From Ctrl-C to the end of the interrupted command's output. */
  stopMs: number;
}

/**
 * Like gdbBatch, but the first command (or command `interrupted`), a resume of a long
 * computation, is interrupted: once the replayed program is seen running it (it has used
 * `runningMs` of CPU time: past the dynamic loader, in its own code), gdb gets SIGINT (the user's Ctrl-C), which it passes on to
 * the session as 0x03.
 */
export async function gdbInterrupted(target: number | string, commands: string[], runningMs = 200, interrupted = 0): Promise<InterruptedGdb> {
  const gdb = startGdb(target, commands);
  await gdb.waitFor(`@@${interrupted}@@`);
  await until(`the replayed program to run ${runningMs} ms of its code`, () => replayedCpuMs() >= runningMs, 60_000);
  const interruptedAt = Date.now();
  gdb.child.kill('SIGINT');
  await gdb.waitFor(`@@${interrupted + 1}@@`);
  const stopMs = Date.now() - interruptedAt;
  const r = await gdb.done;
  const transcript = r.stdout.toString('utf8');
  return { sections: splitSections(transcript, commands.length), transcript, status: r.status, stopMs };
}

/** The section of the first command equal to `command` at or after index `from`. */
export function outputOf(run: GdbRun, commands: string[], command: string, from = 0): string {
  const i = commands.indexOf(command, from);
  if (i < 0) throw new Error(`no command ${command}`);
  return run.sections[i] ?? '';
}

/** gdb's stdout with its frame lines: the lines that start with a source line number. */
export function sourceLines(out: string): number[] {
  return out
    .split('\n')
    .map((l) => /^(\d+)\t/.exec(l)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number);
}

/** A bare remote-protocol client for hostile input: raw bytes out, parsed replies in. */
/**
 * `client.ask` that notes each exchange in `log` (the reply's first `width` characters), for
 * the messages of failed assertions.
 */
export function loggedAsk(client: RawClient, log: string[], width: number): (payload: string) => Promise<string> {
  return async (payload) => {
    const reply = await client.ask(payload);
    log.push(`${payload} -> ${reply.slice(0, width)}`);
    return reply;
  };
}

export class RawClient {
  private buffer = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  closed = false;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, b]);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('close', () => {
      this.closed = true;
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  raw(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends a well-formed packet. */
  send(payload: string): void {
    this.raw(`$${payload}#${checksum(Buffer.from(payload, 'latin1')).toString(16).padStart(2, '0')}`);
  }

  /** The next acknowledgement byte or packet payload ('+', '-', or the payload), acking packets. */
  async next(timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = this.buffer.toString('latin1');
      if (s[0] === '+' || s[0] === '-') {
        this.buffer = this.buffer.subarray(1);
        return s[0];
      }
      const m = /^\$([^#]*)#([0-9a-f]{2})/.exec(s);
      if (m) {
        this.buffer = this.buffer.subarray(m[0].length);
        expect(Number.parseInt(m[2]!, 16), `checksum of ${m[1]}`).toBe(checksum(Buffer.from(m[1]!, 'latin1')));
        return m[1]!;
      }
      if (s.length > 0 && s[0] !== '$') throw new Error(`unexpected bytes from the server: ${JSON.stringify(s.slice(0, 80))}`);
      if (this.closed) throw new Error(`connection closed (pending ${JSON.stringify(s)})`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no reply in ${timeoutMs} ms (pending ${JSON.stringify(s)})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Console output (O packets) that came before the stop replies of resumes, decoded. */
  console = '';

  /**
   * Sends a packet and returns its reply (no-ack mode: no '+' to skip). A resume's reply is its
   * stop reply: the console output before it (the program's output) goes to `console`, as gdb
   * shows it.
   */
  async ask(payload: string): Promise<string> {
    this.send(payload);
    const resume = /^([csCS]|vCont;|b[cs]$)/.test(payload);
    for (;;) {
      const r = await this.next();
      if (r === '+') continue;
      if (resume && /^O([0-9a-f]{2})+$/.test(r)) {
        this.console += Buffer.from(r.slice(1), 'hex').toString('utf8');
        continue;
      }
      return r;
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

export function expectNoStray(pids: number[], ctx: string): void {
  const left = pids.filter(alive);
  expect(left, `processes left behind: ${left.join(' ')}\n${ctx}`).toEqual([]);
}

