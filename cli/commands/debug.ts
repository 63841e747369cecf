import { spawn } from 'node:child_process';
import { existsSync, writeSync } from 'node:fs';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import type { ClientFlags } from '../../remote/config.js';
import { isTraceId } from '../../trace/ids.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';
import { UserError } from '../../trace/user_error.js';
import type { Serving } from '../../debugserver/serve.js';
import type { GdbSetup } from '../../debugserver/gdb_setup.js';
import type { StartAt } from '../../debugserver/gdb_server.js';
import type { ProcessChoice } from '../../debugserver/session_thread.js';

interface DebugFlags extends ClientFlags {
  port?: string;
  launch: boolean;
  stdio?: boolean;
  json?: boolean;
  gdb?: string;
  logLevel?: string;
  atEnd?: boolean;
  event?: string;
  moment?: string;
  pid?: string;
  exec?: string;
}

/** The process --pid N and --exec NAME choose; undefined: the recorded program. */
function processChoice(flags: DebugFlags): ProcessChoice | undefined {
  if (flags.pid === undefined && flags.exec === undefined) return undefined;
  if (flags.pid !== undefined && !(/^[1-9]\d{0,9}$/.test(flags.pid) && Number(flags.pid) <= 0x7fffffff)) throw new UserError(`--pid ${flags.pid}: not a process id (monitor processes lists them)`);
  if (flags.exec === '') throw new UserError('--exec: give the name or path of a program the recording ran');
  return { pid: flags.pid === undefined ? undefined : Number(flags.pid), exec: flags.exec };
}

/** Where --at-end, --event N or --moment M start the session; undefined: at the program's first instruction. */
async function startAt(flags: DebugFlags): Promise<StartAt | undefined> {
  if ([flags.atEnd, flags.event, flags.moment].filter((f) => f !== undefined).length > 1) throw new UserError('--at-end, --event and --moment: one place to start at');
  if (flags.atEnd) return 'end';
  if (flags.moment !== undefined) {
    const { parseMoment } = await import('../../trace/query.js');
    return { moment: parseMoment(flags.moment) };
  }
  if (flags.event === undefined) return undefined;
  if (!/^\d+$/.test(flags.event) || !Number.isSafeInteger(Number(flags.event))) throw new UserError(`--event ${flags.event}: not an event number (see rewind dump)`);
  return { event: Number(flags.event) };
}

function parsePort(text: string | undefined): number {
  if (text === undefined) return 0;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535) throw new UserError(`--port ${text}: not a TCP port number`);
  return n;
}

function gdbCommand(gdb: string, port: number, setup: GdbSetup, extra: string[]): string[] {
  // gdb gives up on a reply after 2 s and then reads the late one as the answer to its next
  // packet; a replay on a busy server or across a slow link can take longer than that.
  return [gdb, '-q', '-iex', 'set remotetimeout 60', ...setup.args, '-ex', `target extended-remote 127.0.0.1:${port}`, ...extra];
}

function shellQuote(args: string[]): string {
  return args.map((a) => (/^[\w./=:@+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

/** Prints where to connect (human text, or one JSON line) on stdout. */
function announce(port: number, what: string, flags: DebugFlags, setup: GdbSetup, extra: string[]): void {
  const gdb = gdbCommand(flags.gdb ?? 'gdb', port, setup, extra);
  const lldb = ['lldb', ...setup.lldb.flatMap((c) => ['-o', c]), '-o', `gdb-remote 127.0.0.1:${port}`];
  const text = flags.json
    ? `${JSON.stringify({ port, trace: what, gdb, lldb })}\n`
    : `rewind: debugging ${what} on 127.0.0.1:${port}\n` +
      `  gdb:  ${shellQuote(gdb)}\n` +
      `  lldb: ${shellQuote(lldb)}\n` +
      `rewind: waiting for a debugger (Ctrl-C ends the session)\n`;
  writeSync(1, text);
}

/** Runs gdb connected to the port; resolves with its exit status. */
function launchGdb(gdb: string, port: number, setup: GdbSetup, extra: string[]): Promise<number> {
  // Ctrl-C in gdb's terminal reaches us too; it is gdb's to handle, not a reason to stop serving.
  const ignore = (): void => undefined;
  process.on('SIGINT', ignore);
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = gdbCommand(gdb, port, setup, extra);
    const child = spawn(cmd!, args, { stdio: 'inherit' });
    child.on('error', (err) => {
      process.off('SIGINT', ignore);
      reject(new UserError(`cannot run ${gdb}: ${err.message} (use --no-launch and connect a debugger yourself)`));
    });
    child.on('close', (code, signal) => {
      process.off('SIGINT', ignore);
      resolve(code ?? (signal ? 128 : 1));
    });
  });
}

async function debugLocal(trace: string | undefined, flags: DebugFlags, extra: string[]): Promise<void> {
  const dir = resolveTraceDir(trace);
  // Loaded only here: remote debugging must not need the engine.
  const { closeOnSignal, debugOverStdio, listenTcp, serveOptions } = await import('../../debugserver/serve.js');
  const at = await startAt(flags);
  const choice = processChoice(flags);
  if (flags.stdio) {
    await debugOverStdio(dir, { at, process: choice });
    return;
  }
  const { SessionThread } = await import('../../debugserver/session_thread.js');
  const { prepareGdbSetup } = await import('../../debugserver/gdb_setup.js');
  // With gdb in the terminal the program's output goes where it went when recorded; otherwise
  // to the debugger's console, wherever that is (stdout is the connection details').
  const gdb = await SessionThread.start(dir, flags.launch ? 1 : 'console', { at, process: choice });
  let serving: Serving;
  try {
    serving = await listenTcp(gdb, parsePort(flags.port), serveOptions());
  } catch (err) {
    await gdb.close();
    const e = err as NodeJS.ErrnoException;
    throw new UserError(`cannot listen on 127.0.0.1:${flags.port ?? 0}: ${e.code === 'EADDRINUSE' ? 'the port is in use' : e.message}`);
  }
  const setup = prepareGdbSetup(dir);
  try {
    if (!flags.launch) {
      announce(serving.port, dir, flags, setup, extra);
      closeOnSignal(serving);
      await serving.done;
      return;
    }
    try {
      process.exitCode = await launchGdb(flags.gdb ?? 'gdb', serving.port, setup, extra);
    } finally {
      serving.close();
    }
  } finally {
    setup.remove();
  }
}

async function debugRemote(traceId: string, flags: DebugFlags, extra: string[]): Promise<void> {
  if (flags.stdio) throw new UserError('--stdio serves a local trace directory; a trace on the server is debugged through its port');
  const at = await startAt(flags); // a malformed --moment is refused before connecting
  // Loaded only here: local debugging must not need the gRPC client.
  const { openRemoteDebugBridge } = await import('../../remote/debug_bridge.js');
  const remoteAt = at !== undefined && at !== 'end' && 'moment' in at ? { moment: flags.moment! } : at;
  const bridge = await openRemoteDebugBridge(traceId, flags, parsePort(flags.port), remoteAt, processChoice(flags));
  const { remoteGdbSetup } = await import('../../debugserver/gdb_setup.js');
  const setup = remoteGdbSetup();
  try {
    if (!flags.launch) {
      announce(bridge.port, traceId, flags, setup, extra);
      const { closeOnSignal } = await import('../../debugserver/serve.js');
      closeOnSignal(bridge);
      await bridge.closed;
      return;
    }
    try {
      process.exitCode = await launchGdb(flags.gdb ?? 'gdb', bridge.port, setup, extra);
    } finally {
      await bridge.close();
    }
  } finally {
    setup.remove();
  }
}

async function debug(operands: string[], flags: DebugFlags): Promise<void> {
  if (flags.logLevel !== undefined) {
    // The session thread reads it too: the debug server's messages go through trace/log.ts.
    const { logLevel } = await import('../../trace/log.js');
    process.env.REWIND_LOG = logLevel(flags.logLevel);
  }
  // Everything after `--` goes to gdb; commander gives us those as operands too.
  const dashes = process.argv.indexOf('--');
  const extra = dashes >= 0 ? process.argv.slice(dashes + 1) : [];
  const before = operands.slice(0, operands.length - extra.length);
  if (before.length > 1) throw new UserError(`one trace at a time (got ${before.join(', ')}); gdb arguments go after --`);
  const trace = before[0];
  if (trace && !existsSync(trace) && isTraceId(trace)) {
    await debugRemote(trace, flags, extra);
    return;
  }
  if (trace && !existsSync(trace)) throw new UserError(`${trace}: no such trace directory`);
  await debugLocal(trace, flags, extra);
}

const HELP = `
Starts a replay of the recording that gdb drives through its remote protocol, forwards and
backwards: break, watch (write, read, access), step, next, finish, continue, and their
reverse-* twins; catch syscall; registers, memory, backtraces, threads. gdb reads the
executable and its libraries out of the trace, never from this machine's own copies.

  rewind debug                           the latest recording, in a gdb started for you
  rewind debug DIR -- -ex 'break main'   arguments after -- go to gdb (after it connects;
                                         use -iex for settings that must come first)
  rewind debug ID                        a trace on the server: the session runs there, and
                                         a local port is bridged to it
  rewind debug DIR --at-end              start at the end: at the crash, for a recording that crashed
  rewind debug DIR --moment M            start at a moment that rewind query printed
  rewind debug DIR --event N             start at event N (numbered as rewind dump and divergence
                                         messages number them)
  rewind debug DIR --pid N               debug process N of a recorded tree (monitor processes
                                         lists them): a fork child, from its start
  rewind debug DIR --exec NAME           debug the process that ran program NAME (a path or a
                                         file name; with --pid, that process's), from its exec
  rewind debug DIR --no-launch           print the port and the commands to connect, and wait:
      gdb -q -ex 'target extended-remote 127.0.0.1:PORT'
      lldb -o 'gdb-remote 127.0.0.1:PORT'

Sources: the debug info names the paths the program was built from. If the sources are
elsewhere on this machine, tell gdb:
  (gdb) set substitute-path /where/it/was/built /where/it/is/now

Monitor commands (in gdb):
  monitor when      the current event number and how many events the recording holds
  monitor seek N    jump to event N; then \`maint flush register-cache\` shows the new place
  monitor history   the checkpoints going back starts from, and how reverse-continue went
  monitor processes the recorded processes, their parents and the programs they ran
  monitor help

History cannot change: writing registers or memory, calling functions and \`jump\` are
refused. Every recorded signal is a stop, as natively; a crash (SIGSEGV, abort) is the last
one, inspectable and a place to go back from. At either end of the recording gdb says
"No more reverse-execution history." Ctrl-C in gdb stops a running continue within
milliseconds. See docs/debugging.md.`;

export function registerDebug(program: Command): void {
  const cmd = program
    .command('debug')
    .description('debug a recording with gdb, forwards and backwards (gdb remote protocol)')
    .argument('[trace]', 'trace directory, or the id of a trace on the server (default: the latest recording)')
    .argument('[gdb-args...]', 'after --: extra arguments for gdb')
    .option('--port <n>', 'TCP port on 127.0.0.1 to serve on (default: a free one)')
    .option('--no-launch', 'do not start gdb: print the port and the gdb and lldb commands, and wait')
    .option('--stdio', 'speak the remote protocol on stdin/stdout (for `target remote | rewind debug DIR --stdio`)')
    .option('--json', 'with --no-launch: print the port and commands as one JSON line')
    .option('--at-end', 'start at the end of the recording: its last instruction, or the fatal signal it ended with')
    .option('--event <n>', 'start at event N (the numbering of rewind dump and of divergence messages)')
    .option('--moment <m>', 'start at moment M, as rewind query prints them (docs/queries.md)')
    .option('--pid <n>', 'debug process N of the recorded tree (default: the recorded program)')
    .option('--exec <name>', 'debug the process that ran program NAME (a path or file name), from its exec')
    .option('--gdb <path>', 'the gdb to launch (default: gdb)')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug, trace or silent (env REWIND_LOG; default info)')
    .addHelpText('after', HELP)
    .action(async (trace: string | undefined, gdbArgs: string[], flags: DebugFlags) => {
      await debug(trace === undefined ? [] : [trace, ...gdbArgs], flags);
    });
  addClientOptions(cmd);
}
