// The gdb remote serial protocol's commands over a DebugSession: one packet in, the packets to
// send back out. Framing and acknowledgements are the connection's business (connection.ts).
// History is read-only, so every command that would write registers or memory is refused.
import type { DebugSession, DebugStop, NativeMoment, WatchKind } from '../native/index.js';
import { engineErrorCode } from '../native/index.js';
import { escapeBinary, escapeBinaryPrefix, fromHex, MAX_PACKET, parseHex, parseHexNumber, toHex } from './packet.js';
import { allRegisterBytes, registerBytes, REGISTERS, TARGET_XML } from './target_description.js';
import { FileIoError, FILEIO, type TraceFiles } from './trace_files.js';
import type { ManifestProcess } from '../trace/manifest.js';
import { UserError } from '../trace/user_error.js';

export interface Response {
  /** Payloads to send, in order (console output first, then the reply). */
  packets: (string | Buffer)[];
  /** The client asked to end the session (k, vKill, D): the session is closed. */
  end?: boolean;
}

const SUPPORTED = [
  `PacketSize=${MAX_PACKET.toString(16)}`,
  'QStartNoAckMode+',
  'multiprocess+',
  'swbreak+',
  'hwbreak+',
  'ReverseStep+',
  'ReverseContinue+',
  'qXfer:features:read+',
  'qXfer:auxv:read+',
  'qXfer:exec-file:read+',
  'qXfer:threads:read+',
  'vContSupported+',
  'QPassSignals+',
  'QCatchSyscalls+',
  'ConditionalBreakpoints+',
].join(';');

const AT_SYSINFO_EHDR = 33n;

/** The value of an entry of an auxiliary vector (pairs of 64-bit words). */
function auxvEntry(auxv: Buffer, type: bigint): bigint | undefined {
  for (let i = 0; i + 16 <= auxv.length; i += 16) {
    if (auxv.readBigUInt64LE(i) === type) return auxv.readBigUInt64LE(i + 8);
  }
  return undefined;
}

const READ_ONLY = 'E.rewind replays a recording: registers and memory cannot be changed';

/** Sets of one kind of watchpoint pieces: the engine takes 1, 2, 4 or 8 aligned bytes. */
const WATCH_KINDS: Record<string, WatchKind> = { '2': 'write', '3': 'read', '4': 'access' };
const WATCH_REPLY: Record<Exclude<WatchKind, 'execute'>, string> = { write: 'watch', read: 'rwatch', access: 'awatch' };
const MAX_WATCH_PIECES = 4;

/** The target, as lldb's qHostInfo and qProcessInfo describe it (cputype 0x1000007: x86_64). */
const LLDB_ARCH = `cputype:16777223;cpusubtype:3;triple:${toHex('x86_64-pc-linux-gnu')};ostype:linux;vendor:pc;endian:little;ptrsize:8;`;

interface Watch {
  kind: WatchKind;
  address: bigint;
  length: number;
  pieces: { address: bigint; length: number }[];
}

/** A thread-id as the protocol writes it: `p<pid>.<tid>` or `<tid>`; -1 is "all", 0 "any". */
interface ThreadId {
  pid?: number;
  tid: number;
}

function parseThreadId(text: string): ThreadId | null {
  const one = (t: string): number | null => (t === '-1' ? -1 : parseHexNumber(t));
  const m = /^p([0-9a-fA-F]+|-1)(?:\.([0-9a-fA-F]+|-1))?$/.exec(text);
  if (m) {
    const pid = one(m[1]!);
    const tid = m[2] === undefined ? -1 : one(m[2]);
    return pid === null || tid === null ? null : { pid, tid };
  }
  const tid = one(text);
  return tid === null ? null : { tid };
}

/**
 * The conditions of a Z0 packet (`;X<len>,<bytecode hex>` each, gdb's agent expressions), or
 * null when malformed. Other parameters (`;cmds:`) are not offered (no BreakpointCommands+).
 */
export function parseConditions(params: string): Buffer[] | null {
  const conditions: Buffer[] = [];
  for (const p of params.split(';').slice(1)) {
    const m = /^X([0-9a-fA-F]+),([0-9a-fA-F]*)$/.exec(p);
    const length = m ? parseHexNumber(m[1]!) : null;
    const code = m ? fromHex(m[2]!) : undefined;
    if (length === null || !code || code.length !== length || length === 0) return null;
    conditions.push(code);
  }
  return conditions;
}

/** Splits [address, address + length) into naturally aligned pieces of 8, 4, 2 or 1 bytes. */
export function watchPieces(address: bigint, length: number): { address: bigint; length: number }[] {
  const pieces: { address: bigint; length: number }[] = [];
  let a = address;
  const end = address + BigInt(length);
  while (a < end) {
    let size = 8;
    while (size > 1 && (a % BigInt(size) !== 0n || a + BigInt(size) > end)) size /= 2;
    pieces.push({ address: a, length: size });
    a += BigInt(size);
  }
  return pieces;
}

/**
 * gdb's number for a Linux signal: gdb numbers signals its own way (include/gdb/signals.def),
 * the same as Linux's for most of the first 31; real-time ones from 45 on.
 */
function gdbSignal(linux: number): number {
  const differs: Record<number, number> = {
    7: 10, // SIGBUS
    10: 30, // SIGUSR1
    12: 31, // SIGUSR2
    16: 143, // SIGSTKFLT: gdb has none (GDB_SIGNAL_UNKNOWN)
    17: 20, // SIGCHLD
    18: 19, // SIGCONT
    19: 17, // SIGSTOP
    20: 18, // SIGTSTP
    23: 16, // SIGURG
    29: 23, // SIGIO
    30: 32, // SIGPWR
    31: 12, // SIGSYS
    32: 77, // SIGRTMIN (GDB_SIGNAL_REALTIME_32)
    64: 78, // SIGRTMAX (GDB_SIGNAL_REALTIME_64)
  };
  if (differs[linux] !== undefined) return differs[linux];
  if (linux >= 1 && linux <= 31) return linux;
  if (linux >= 33 && linux <= 63) return linux - 33 + 45;
  return 143;
}

/** The engine's message for an error, and the `E.` reply carrying it (protocol-safe characters). */
export function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const code = engineErrorCode(err);
  return code && !msg.includes(code) ? `${msg} (${code})` : msg;
}

export function errorReply(text: string): string {
  return `E.${text.replace(/[$#}*\n]/g, ' ').slice(0, 400)}`;
}

function consoleOutput(text: string): string {
  return `O${toHex(text)}`;
}

const MONITOR_HELP = `rewind monitor commands:
  monitor when      the current event number and the number of events in the recording
  monitor seek N    go to the first moment at or after event N (then: maint flush register-cache)
  monitor seek end  go to the end (a crash: the fatal signal's stop)
  monitor history   the checkpoints going back starts from, and how reverse-continue went
  monitor processes the recorded processes: pid, parent, the programs each ran (* debugged)
  monitor help      this text
`;

export interface GdbServerOptions {
  /** Where diagnostics go (stderr): never the protocol stream. */
  log: (line: string) => void;
  /** A stop reported the interrupt (gdb's Ctrl-C): it is taken, and its word may be cleared. */
  interruptTaken: () => void;
  /** The program's output since last asked, to show on gdb's console; absent: it goes elsewhere. */
  programOutput?: () => Buffer;
  /** The recorded process tree (the manifest's), for `monitor processes`. */
  processes?: readonly ManifestProcess[];
}

/** Where a session starts: event N (rewind dump's numbering), a moment a query named, or the end of the recording. */
export type StartAt = { event: number } | { moment: NativeMoment } | 'end';

/** Offset of rip in the kernel's user_regs_struct. */
const RIP_OFFSET = 16 * 8;

export class GdbServer {
  private readonly pid: number;
  /** Thread for g/p/m (Hg) and for resuming (Hc); undefined means the current one. */
  private generalThread: number | undefined;
  private continueThread: number | undefined;
  private current: number;
  private lastStop: DebugStop;
  /** Software breakpoints (Z0); hardware ones (Z1) are 'execute' watches, in the debug registers. */
  private readonly breakpoints = new Set<bigint>();
  private watches: Watch[] = [];
  /** Signals gdb passes to the program silently (QPassSignals), in gdb's numbering. */
  private passSignals = new Set<number>();
  private closed = false;

  constructor(
    private readonly session: DebugSession,
    private readonly files: TraceFiles,
    private readonly options: GdbServerOptions,
  ) {
    this.pid = session.pid;
    const first = session.threads()[0] ?? session.pid;
    this.current = first;
    this.lastStop = { reason: 'step', thread: first };
  }

  /** The number of events in the recording. */
  get events(): number {
    return this.session.when().events;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Ends the session and its processes; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.files.closeAll();
    try {
      this.session.close();
    } catch (err) {
      this.options.log(`closing the session: ${errorText(err)}`);
    }
  }

  /**
   * A client went away without ending the session: forget what it had set, so that the next
   * client starts from a clean slate (gdb reinserts its breakpoints itself).
   */
  clientGone(): void {
    if (this.closed) return;
    for (const address of this.breakpoints) this.tryEngine(() => this.session.removeBreakpoint(address));
    this.breakpoints.clear();
    for (const w of this.watches) for (const p of w.pieces) this.tryEngine(() => this.session.removeWatchpoint(w.kind, p.address, p.length));
    this.watches = [];
    this.files.closeAll();
    this.generalThread = undefined;
    this.continueThread = undefined;
    this.passSignals = new Set();
    this.tryEngine(() => this.session.catchSyscalls(null));
    // The next client attaches to a plain stop here, even if this one's resume was interrupted.
    this.lastStop = { reason: 'step', thread: this.current };
  }

  handle(payload: Buffer): Response {
    if (this.closed) return { packets: ['E.the session has ended'], end: true };
    const text = payload.toString('latin1');
    try {
      return this.dispatch(text);
    } catch (err) {
      // Whatever goes wrong in one command is that command's error, never the session's end.
      const msg = errorText(err);
      this.options.log(`${text.slice(0, 40)}: ${msg}`);
      return { packets: [errorReply(msg)] };
    }
  }

  private dispatch(text: string): Response {
    const one = (p: string | Buffer): Response => ({ packets: [p] });
    const head = text[0] ?? '';
    switch (head) {
      case '?':
        return one(this.stopReply(this.lastStop));
      case '!':
        return one('OK');
      case 'g':
        return text === 'g' ? one(this.readAllRegisters()) : one('');
      case 'p':
        return one(this.readRegister(text.slice(1)));
      case 'G':
      case 'P':
      case 'M':
      case 'X':
        return one(READ_ONLY);
      case 'm':
        return one(this.readMemory(text.slice(1)));
      case 'H':
        return one(this.setThread(text));
      case 'T':
        return one(this.threadAlive(text.slice(1)));
      case 'Z':
      case 'z':
        return one(this.breakOrWatch(head === 'Z', text.slice(1)));
      case 'c':
      case 's':
      case 'C':
      case 'S':
        return this.resumePacket(text);
      case 'b':
        if (text === 'bc' || text === 'bs') return this.resume(true, text === 'bs', this.specific(this.continueThread));
        return one('');
      case 'k':
        // gdb expects no reply (it uses vKill anyway), lldb the process's end.
        this.close();
        return { packets: [`X09;process:${this.pid.toString(16)}`], end: true };
      case 'D':
        this.close();
        return { packets: ['OK'], end: true };
      case 'q':
      case 'Q':
        return this.query(text);
      case 'v':
        return this.vPacket(text);
      default:
        return one('');
    }
  }

  // --- stop replies ------------------------------------------------------------------------

  private threadId(tid: number): string {
    return `p${this.pid.toString(16)}.${tid.toString(16)}`;
  }

  private stopReply(stop: DebugStop): string {
    // gdb's Ctrl-C: the thread stopped as if by SIGINT.
    if (stop.reason === 'interrupted') return `T02thread:${this.threadId(stop.thread)};`;
    // A recorded signal, as gdb sees one natively; gdb passes it on (C) or not, but replay
    // delivers it either way, as it was.
    if (stop.reason === 'signal') return `T${gdbSignal(stop.signal ?? 0).toString(16).padStart(2, '0')}thread:${this.threadId(stop.thread)};`;
    let why = '';
    const watch = stop.reason === 'watchpoint' ? stop.watch : undefined;
    if (stop.reason === 'breakpoint') {
      why = 'swbreak:;';
    } else if (watch?.kind === 'execute') {
      why = 'hwbreak:;';
    } else if (watch) {
      why = `${WATCH_REPLY[watch.kind]}:${watch.address.toString(16)};`;
    } else if (stop.reason === 'begin' || stop.reason === 'end') {
      why = `replaylog:${stop.reason};`;
    } else if (stop.reason === 'exec') {
      // gdb loads the program named (through its sysroot) and sets its breakpoints anew.
      why = `exec:${toHex(this.session.exe())};`;
    } else if (stop.reason === 'syscall-entry' || stop.reason === 'syscall-return') {
      why = `${stop.reason === 'syscall-entry' ? 'syscall_entry' : 'syscall_return'}:${(stop.syscall ?? 0).toString(16)};`;
    }
    return `T05${why}thread:${this.threadId(stop.thread)};`;
  }

  // --- threads -----------------------------------------------------------------------------

  /** The thread a command names, or null when it names none of ours. */
  private resolveThread(id: ThreadId): number | undefined | null {
    if (id.pid !== undefined && id.pid !== -1 && id.pid !== 0 && id.pid !== this.pid) return null;
    if (id.tid === -1 || id.tid === 0) return undefined;
    return this.session.threads().includes(id.tid) ? id.tid : null;
  }

  private specific(thread: number | undefined): number | undefined {
    return thread !== undefined && this.session.threads().includes(thread) ? thread : undefined;
  }

  private setThread(text: string): string {
    const op = text[1];
    const id = parseThreadId(text.slice(2));
    if ((op !== 'g' && op !== 'c') || !id) return 'E01';
    const thread = this.resolveThread(id);
    if (thread === null) return 'E01';
    if (op === 'g') this.generalThread = thread;
    else this.continueThread = thread;
    return 'OK';
  }

  private threadAlive(arg: string): string {
    const id = parseThreadId(arg);
    if (!id || id.tid <= 0) return 'E01';
    return this.resolveThread(id) ? 'OK' : 'E01';
  }

  private inspected(): number {
    return this.specific(this.generalThread) ?? this.current;
  }

  // --- registers and memory ----------------------------------------------------------------

  private readAllRegisters(): string {
    const bytes = allRegisterBytes(this.session.registers(this.inspected()));
    return bytes ? bytes.toString('hex') : 'E.the engine returned short register buffers';
  }

  private readRegister(arg: string): string {
    const n = parseHexNumber(arg);
    if (n === null) return 'E01';
    if (n >= REGISTERS.length) return 'E.no such register';
    const bytes = registerBytes(n, this.session.registers(this.inspected()));
    return bytes ? bytes.toString('hex') : 'E.the engine returned short register buffers';
  }

  private readMemory(arg: string): string {
    const m = /^([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(arg);
    const address = m ? parseHex(m[1]!) : null;
    const length = m ? parseHexNumber(m[2]!) : null;
    if (address === null || length === null) return 'E01';
    if (length === 0) return '';
    const n = Math.min(length, Math.floor((MAX_PACKET - 4) / 2));
    if (address + BigInt(n) > 0xffffffffffffffffn + 1n) return 'E14';
    const data = this.session.readMemory(address, n);
    return data.length === 0 ? 'E14' : data.toString('hex');
  }

  // --- breakpoints and watchpoints -----------------------------------------------------------

  private breakOrWatch(insert: boolean, arg: string): string {
    const m = /^([0-4]),([0-9a-fA-F]+),([0-9a-fA-F]+)(;.*)?$/.exec(arg);
    const address = m ? parseHex(m[2]!) : null;
    const kind = m ? parseHexNumber(m[3]!) : null;
    if (!m || address === null || kind === null) return 'E01';
    const type = m[1]!;
    if (type === '0') {
      if (!insert) return this.removeBreakpoint(address);
      const conditions = parseConditions(m[4] ?? '');
      return conditions ? this.insertBreakpoint(address, conditions) : 'E.malformed breakpoint condition';
    }
    // A hardware breakpoint's kind is its instruction length, which x86 debug registers ignore.
    if (type === '1') return insert ? this.insertWatch('execute', address, 1) : this.removeWatch('execute', address, 1);
    const watchKind = WATCH_KINDS[type]!;
    return insert ? this.insertWatch(watchKind, address, kind) : this.removeWatch(watchKind, address, kind);
  }

  private insertBreakpoint(address: bigint, conditions: Buffer[]): string {
    // gdb inserts a breakpoint again to change its conditions: they replace the old ones. The
    // engine refuses an address where nothing is mapped, with a message for gdb to show.
    this.session.setBreakpoint(address, conditions);
    this.breakpoints.add(address);
    return 'OK';
  }

  private removeBreakpoint(address: bigint): string {
    if (!this.breakpoints.delete(address)) return 'OK';
    this.session.removeBreakpoint(address);
    return 'OK';
  }

  private insertWatch(kind: WatchKind, address: bigint, length: number): string {
    if (length <= 0 || length > 32) return 'E.a watchpoint covers 1 to 32 bytes';
    const pieces = watchPieces(address, length);
    const used = this.watches.reduce((n, w) => n + w.pieces.length, 0);
    if (used + pieces.length > MAX_WATCH_PIECES) return `E.out of debug registers: hardware breakpoints and watchpoints share ${MAX_WATCH_PIECES}, a watchpoint taking one per aligned piece of up to 8 bytes`;
    const set: { address: bigint; length: number }[] = [];
    try {
      for (const p of pieces) {
        this.session.setWatchpoint(kind, p.address, p.length);
        set.push(p);
      }
    } catch (err) {
      for (const p of set) this.tryEngine(() => this.session.removeWatchpoint(kind, p.address, p.length));
      throw err;
    }
    this.watches.push({ kind, address, length, pieces });
    return 'OK';
  }

  private removeWatch(kind: WatchKind, address: bigint, length: number): string {
    const i = this.watches.findIndex((w) => w.kind === kind && w.address === address && w.length === length);
    if (i < 0) return 'OK';
    const [w] = this.watches.splice(i, 1);
    for (const p of w!.pieces) this.session.removeWatchpoint(kind, p.address, p.length);
    return 'OK';
  }

  private tryEngine(f: () => void): void {
    try {
      f();
    } catch (err) {
      this.options.log(errorText(err));
    }
  }

  // --- execution ---------------------------------------------------------------------------

  private resumePacket(text: string): Response {
    const step = text[0] === 's' || text[0] === 'S';
    // `c ADDR` resumes elsewhere: that would change history. A signal to deliver (C/S) is
    // ignored: replay delivers exactly the recorded signals.
    const rest = text[0] === 'C' || text[0] === 'S' ? text.slice(1).split(';').slice(1).join(';') : text.slice(1);
    if (rest !== '') return { packets: ['E.resuming at another address would change history'] };
    return this.resume(false, step, step ? this.specific(this.continueThread) ?? this.current : undefined);
  }

  private vCont(text: string): Response {
    if (text === 'vCont?') return { packets: ['vCont;c;C;s;S;r'] };
    const actions = text.slice('vCont;'.length).split(';');
    let stepThread: number | undefined;
    let step = false;
    let range: { start: bigint; end: bigint } | undefined;
    for (const a of actions) {
      const [action, thread] = a.split(':');
      const r = action ? /^r([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(action) : null;
      if (!action || (!r && !/^([cs]|[CS][0-9a-fA-F]{2})$/.test(action))) return { packets: ['E.unsupported vCont action'] };
      if (r || action[0] === 's' || action[0] === 'S') {
        if (step) continue; // the first action that applies to a thread wins
        step = true;
        // Range stepping: step while the thread stays in [start, end), at full speed.
        if (r) {
          const [start, end] = [parseHex(r[1]!), parseHex(r[2]!)];
          if (start === null || end === null) return { packets: ['E.malformed range'] };
          range = { start, end };
        }
        if (thread !== undefined) {
          const id = parseThreadId(thread);
          const resolved = id ? this.resolveThread(id) : null;
          if (resolved === null) return { packets: ['E.no such thread'] };
          stepThread = resolved;
        }
      }
    }
    return this.resume(false, step, step ? stepThread ?? this.specific(this.continueThread) ?? this.current : undefined, range);
  }

  private resume(reverse: boolean, step: boolean, thread: number | undefined, range?: { start: bigint; end: bigint }): Response {
    let stop: DebugStop;
    try {
      const how = { reverse, step, ...(thread === undefined ? {} : { thread }), ...(range ? { range } : {}) };
      stop = this.session.resume(how);
      // gdb would only resume at once: a signal it passes silently goes to the program here. A
      // step still reports it, for gdb's stepping to go round the handler.
      while (!step && stop.reason === 'signal' && this.passSignals.has(gdbSignal(stop.signal ?? 0))) stop = this.session.resume(how);
    } catch (err) {
      // gdb takes an E stop reply as a stop and prints it; the console line says what happened.
      const msg = errorText(err);
      this.options.log(`resume: ${msg}`);
      return { packets: [...this.programOutput(), consoleOutput(`rewind: ${msg}\n`), errorReply(msg)] };
    }
    this.stopped(stop);
    return { packets: [...this.programOutput(), this.stopReply(stop)] };
  }

  /** What the program wrote while replay ran, as console output packets (gdb shows them). */
  private programOutput(): string[] {
    const out = this.options.programOutput?.();
    if (!out || out.length === 0) return [];
    const packets: string[] = [];
    const chunk = Math.floor((MAX_PACKET - 8) / 2);
    for (let i = 0; i < out.length; i += chunk) packets.push(`O${out.subarray(i, i + chunk).toString('hex')}`);
    return packets;
  }

  /**
   * Moves the session before any debugger connects: to the first moment at or after event N, or
   * to the end. A recording that ends in a fatal signal ends where it arrived: there the stop
   * shown is the signal's, as natively.
   */
  startAt(at: StartAt): void {
    if (at !== 'end' && 'moment' in at) {
      try {
        this.stopped(this.session.openMoment(at.moment));
      } catch (err) {
        if (engineErrorCode(err) !== 'EUNSUPPORTED') throw err;
        throw new UserError(`--moment: ${err instanceof Error ? err.message : String(err)}`);
      }
      return;
    }
    if (at !== 'end') {
      const { events } = this.session.when();
      if (!Number.isSafeInteger(at.event) || at.event < 0 || at.event >= events) {
        throw new UserError(`--event ${at.event}: the recording has events 0 to ${events - 1} (see rewind dump)`);
      }
      this.stopped(this.session.seek(at.event));
      return;
    }
    let before: DebugStop | undefined;
    let stop = this.session.resume({ reverse: false, step: false });
    while (stop.reason !== 'end' && stop.reason !== 'interrupted') {
      before = stop;
      stop = this.session.resume({ reverse: false, step: false });
    }
    const rip = (s: DebugStop): bigint => this.session.registers(s.thread).general.readBigUInt64LE(RIP_OFFSET);
    if (before?.reason === 'signal' && before.thread === stop.thread && rip(before) === rip(stop)) stop = before;
    this.stopped(stop);
  }

  /**
   * After a stop gdb takes the stopped thread for its general thread (it sends no Hg for it), so
   * g and p read that thread from now on; the thread for resuming stays as Hc set it.
   */
  private stopped(stop: DebugStop): void {
    this.lastStop = stop;
    this.current = stop.thread;
    this.generalThread = undefined;
    if (stop.reason === 'interrupted') this.options.interruptTaken();
  }

  // --- queries -----------------------------------------------------------------------------

  private query(text: string): Response {
    const one = (p: string | Buffer): Response => ({ packets: [p] });
    // Exec events only to a gdb that asks for them (one that does not would take them for a plain stop).
    if (text.startsWith('qSupported')) return one(text.includes('exec-events+') ? `${SUPPORTED};exec-events+` : SUPPORTED);
    if (text === 'QStartNoAckMode') return one('OK');
    if (text.startsWith('QPassSignals:')) return one(this.setPassSignals(text.slice('QPassSignals:'.length)));
    if (text.startsWith('QCatchSyscalls:')) return one(this.setCatchSyscalls(text.slice('QCatchSyscalls:'.length)));
    if (text.startsWith('qAttached')) return one('1');
    if (text === 'qC') return one(`QC${this.threadId(this.current)}`);
    if (text === 'qfThreadInfo') return one(`m${this.session.threads().map((t) => this.threadId(t)).join(',')}`);
    if (text === 'qsThreadInfo') return one('l');
    if (text.startsWith('qSymbol')) return one('OK');
    // lldb's: what it cannot learn from the executable's headers, and how many watchpoints.
    if (text === 'qHostInfo') return one(`${LLDB_ARCH}hostname:${toHex('rewind')};`);
    if (text === 'qProcessInfo') return one(`pid:${this.pid.toString(16)};${LLDB_ARCH}`);
    if (text === 'qWatchpointSupportInfo' || text === 'qWatchpointSupportInfo:') return one(`num:${MAX_WATCH_PIECES.toString(16)};`);
    if (text.startsWith('qXfer:')) return one(this.xfer(text));
    if (text.startsWith('qRcmd,')) return this.monitor(text.slice('qRcmd,'.length));
    return one('');
  }

  private setPassSignals(list: string): string {
    // gdb ends each number with ';'.
    const signals = list.split(';').filter((s) => s !== '').map((s) => parseHexNumber(s));
    if (signals.some((n) => n === null)) return 'E01';
    this.passSignals = new Set(signals as number[]);
    return 'OK';
  }

  /** gdb's `catch syscall`: `0` (none), `1` (all), or `1;NR;NR...` (hex). */
  private setCatchSyscalls(arg: string): string {
    const [on, ...numbers] = arg.split(';');
    if (on === '0' && numbers.length === 0) {
      this.session.catchSyscalls(null);
      return 'OK';
    }
    const nrs = numbers.map((n) => parseHexNumber(n));
    if (on !== '1' || nrs.some((n) => n === null)) return 'E01';
    this.session.catchSyscalls(nrs as number[]);
    return 'OK';
  }

  private xfer(text: string): string | Buffer {
    const m = /^qXfer:([a-z0-9-]+):read:([^:]*):([0-9a-fA-F]+),([0-9a-fA-F]+)$/.exec(text);
    if (!m) return text.includes(':read:') ? 'E00' : '';
    const [, object, annex] = m;
    const offset = parseHexNumber(m[3]!);
    const length = parseHexNumber(m[4]!);
    if (offset === null || length === null) return 'E00';
    let data: Buffer;
    switch (object) {
      case 'features':
        if (annex !== 'target.xml') return 'E00';
        data = Buffer.from(TARGET_XML, 'utf8');
        break;
      case 'auxv':
        data = this.session.auxv();
        break;
      case 'exec-file': {
        const pid = annex === '' ? this.pid : parseHexNumber(annex!);
        if (pid !== this.pid) return 'E.no such process';
        data = Buffer.from(this.session.exe(), 'utf8');
        break;
      }
      case 'threads':
        data = Buffer.from(this.threadsXml(), 'utf8');
        break;
      default:
        return '';
    }
    const wanted = data.subarray(offset, offset + length);
    const { bytes, consumed } = escapeBinaryPrefix(wanted, MAX_PACKET - 1);
    const last = offset + consumed >= data.length;
    return Buffer.concat([Buffer.from(last ? 'l' : 'm'), bytes]);
  }

  private threadsXml(): string {
    const name = this.session.exe().split('/').pop()?.slice(0, 15).replace(/[<>&"]/g, '_') ?? '';
    const threads = this.session.threads().map((t) => `<thread id="${this.threadId(t)}" core="0" name="${name}"/>`);
    return `<?xml version="1.0"?>\n<threads>\n${threads.join('\n')}\n</threads>\n`;
  }

  private monitor(hex: string): Response {
    const command = fromHex(hex)?.toString('utf8').trim();
    if (command === undefined) return { packets: ['E01'] };
    const say = (s: string): Response => ({ packets: [consoleOutput(s), 'OK'] });
    const words = command.split(/\s+/);
    switch (words[0]) {
      case '':
      case 'help':
        return say(MONITOR_HELP);
      case 'when': {
        const w = this.session.when();
        return say(`event ${w.event} of ${w.events}\n`);
      }
      case 'history': {
        const h = this.session.stats();
        return say(
          `${h.checkpoints} checkpoints to go back from; reverse-continue replayed ${h.windowsReplayed} windows ` +
            `between them and skipped ${h.windowsSkipped} whose code coverage showed no breakpoint could be there\n`,
        );
      }
      case 'processes':
        return say(this.processList());
      case 'seek': {
        const end = words[1] === 'end';
        const n = words[1] !== undefined && /^\d+$/.test(words[1]) ? Number(words[1]) : NaN;
        if (words.length !== 2 || (!end && !Number.isSafeInteger(n))) return say('usage: monitor seek N (an event number; see monitor when), or monitor seek end\n');
        try {
          if (end) this.startAt('end');
          else this.stopped(this.session.seek(n));
        } catch (err) {
          const msg = errorText(err);
          return { packets: [consoleOutput(`rewind: ${msg}\n`), errorReply(msg)] };
        }
        const w = this.session.when();
        return { packets: [...this.programOutput(), consoleOutput(`now at event ${w.event} of ${w.events}; run "maint flush register-cache" to show the new position\n`), 'OK'] };
      }
      default:
        return say(`rewind: unknown monitor command "${command}"\n${MONITOR_HELP}`);
    }
  }

  private processList(): string {
    const rows = (this.options.processes ?? []).map((p) => {
      const programs = p.execs.map((e) => [e.exe, ...e.argv.slice(1)].join(' ')).join('  then  ');
      const mark = p.pid === this.pid ? '*' : ' ';
      return `${mark} ${String(p.pid).padStart(7)} ${String(p.parent || '-').padStart(7)}  ${programs || '(no exec: a fork of its parent)'}`;
    });
    return `  ${'pid'.padStart(7)} ${'parent'.padStart(7)}  program\n${rows.join('\n')}\n`;
  }

  // --- v packets ---------------------------------------------------------------------------

  private vPacket(text: string): Response {
    const one = (p: string | Buffer): Response => ({ packets: [p] });
    if (text.startsWith('vCont')) return this.vCont(text);
    if (text.startsWith('vKill')) {
      this.close();
      return { packets: ['OK'], end: true };
    }
    if (text.startsWith('vFile:')) return one(this.vFile(text));
    return one('');
  }

  /**
   * /proc/PID/maps or /proc/PID/task/TID/maps of the debuggee (gdb reads it for the vDSO's
   * extent at every start, and for `info proc mappings`): the replay's mappings now, which are
   * the recorded ones, under the recorded file names. Other /proc files do not exist here.
   */
  private procMaps(path: string): Buffer | undefined {
    const m = /^\/proc\/(\d+)\/(?:task\/(\d+)\/)?maps$/.exec(path);
    if (!m || Number(m[1]) !== this.pid || (m[2] !== undefined && !this.session.threads().includes(Number(m[2])))) return undefined;
    // Replay maps the recorded vDSO as plain memory: its name comes from the auxiliary vector.
    const vdso = auxvEntry(this.session.auxv(), AT_SYSINFO_EHDR);
    const maps = this.files
      .recordedMaps(this.session.memoryMap())
      .split('\n')
      .map((l) => (vdso !== undefined && l.startsWith(`${vdso.toString(16).padStart(8, '0')}-`) ? `${l.padEnd(73)}[vdso]` : l));
    return Buffer.from(maps.join('\n'), 'utf8');
  }

  private vFile(text: string): string | Buffer {
    const colon = text.indexOf(':', 6);
    const op = colon < 0 ? text.slice(6) : text.slice(6, colon);
    const args = colon < 0 ? [] : text.slice(colon + 1).split(',');
    const fail = (errno: number): string => `F-1,${errno.toString(16)}`;
    try {
      switch (op) {
        case 'setfs':
          // Every process of the trace sees the same recorded files.
          return 'F0';
        case 'open': {
          const name = fromHex(args[0] ?? '');
          const flags = parseHexNumber(args[1] ?? '');
          if (!name || flags === null) return fail(FILEIO.EINVAL);
          const maps = this.procMaps(name.toString('utf8'));
          if (maps) return `F${this.files.openData(maps).toString(16)}`;
          return `F${this.files.openFile(name.toString('utf8'), flags).toString(16)}`;
        }
        case 'pread': {
          const [fd, count, offset] = args.map((a) => parseHexNumber(a));
          if (fd == null || count == null || offset == null) return fail(FILEIO.EINVAL);
          const data = this.files.pread(fd, Math.min(count, MAX_PACKET), offset);
          const { bytes, consumed } = escapeBinaryPrefix(data, MAX_PACKET - 16);
          return Buffer.concat([Buffer.from(`F${consumed.toString(16)};`), bytes]);
        }
        case 'fstat': {
          const fd = parseHexNumber(args[0] ?? '');
          if (fd === null) return fail(FILEIO.EINVAL);
          const st = this.files.fstat(fd);
          return Buffer.concat([Buffer.from(`F${st.length.toString(16)};`), escapeBinary(st)]);
        }
        case 'close': {
          const fd = parseHexNumber(args[0] ?? '');
          if (fd === null) return fail(FILEIO.EINVAL);
          this.files.close(fd);
          return 'F0';
        }
        case 'pwrite':
        case 'unlink':
          return fail(FILEIO.EROFS);
        default:
          return '';
      }
    } catch (err) {
      if (err instanceof FileIoError) return fail(err.errno);
      throw err;
    }
  }
}
