// The native engine as TypeScript sees it. Loaded lazily: commands that only talk to a
// server must work on machines where the addon was never built.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type BlobRole = 'events' | 'file' | 'snapshot';

export interface BlobInfo {
  sha256: string;
  size: number;
  role: BlobRole;
  path?: string;
}

export interface RecordRequest {
  exe: string;
  argv: string[];
  env: string[];
  traceDir: string;
  /** The syscall buffer's preload library (preloadPath()); without it every syscall stops in the recorder. */
  preload?: string;
}

/** A process of the recorded tree: its pid and parent when recorded, and each program it exec'd. */
export interface ProcessInfo {
  pid: number;
  /** 0 for the recorded program itself. */
  parent: number;
  execs: { exe: string; argv: string[] }[];
  /** Its other threads' tids, in the order they started. */
  threads: number[];
}

export interface RecordOutcome {
  /** The raw wait status of the recorded process. */
  waitStatus: number;
  events: number;
  syscalls: number;
  tasks: number;
  /** Whether the program's syscalls went through the syscall buffer's filter (docs/syscall-buffer.md). */
  syscallBuffer: boolean;
  processes: ProcessInfo[];
  blobs: BlobInfo[];
}

export interface ReplayRequest {
  traceDir: string;
  /** The event stream file: blobs/<sha256>, or events.partial of a recording cut short. */
  eventsPath: string;
  stubPath: string;
  /** How divergence messages name the trace for `rewind dump` (default: traceDir). */
  traceName?: string;
  stdoutFd?: number;
  stderrFd?: number;
}

export interface ReplayOutcome {
  waitStatus: number;
  events: number;
}

/** Codes on the errors the engine rejects with. */
export type EngineErrorCode = 'EUNSUPPORTED' | 'EDIVERGED' | 'EBADTRACE' | 'EEXEC' | 'ESYSTEM';

/** 'execute' is a hardware breakpoint: it stops before the instruction at its address runs. */
export type WatchKind = 'write' | 'read' | 'access' | 'execute';

/** Why a debug session stopped. */
export type DebugStopReason =
  /** The thread is at a breakpoint's address, about to execute it. */
  | 'breakpoint'
  /**
   * A watchpoint fired. Forwards, the thread has just executed the instruction that touched
   * `watch`; backwards, it is about to execute it (the memory still holds the old value).
   */
  | 'watchpoint'
  /** A single step finished. */
  | 'step'
  /** Reverse execution reached the start of the recording (the debuggee's first instruction). */
  | 'begin'
  /**
   * Forward execution reached the end of the recording: the debuggee's last instruction, or the
   * moment it received the signal that killed it.
   */
  | 'end'
  /** The word given to watchInterrupt() was set while the session ran. */
  | 'interrupted'
  /**
   * The thread received a recorded signal (`signal`), not delivered yet: a crash, or a signal a
   * handler takes. The next resume delivers it, as recorded; a fatal one ends history here.
   */
  | 'signal'
  /** A caught syscall (catchSyscalls): at its instruction, not run yet. */
  | 'syscall-entry'
  /** A caught syscall: right after it returned. */
  | 'syscall-return'
  /**
   * The debugged process runs another program (exe()) than at the stop before: forwards, at the
   * first instruction after its execve; backwards, at that execve, in the program that ran it.
   */
  | 'exec';

export interface DebugStop {
  reason: DebugStopReason;
  /** Recorded tid of the thread that stopped; it becomes the current thread. */
  thread: number;
  /** For 'watchpoint': the watched address that fired and the watch's kind. */
  watch?: { kind: WatchKind; address: bigint };
  /** For 'signal': its number (Linux's numbering). */
  signal?: number;
  /** For 'syscall-entry' and 'syscall-return': the syscall's number. */
  syscall?: number;
}

export interface DebugRequest {
  traceDir: string;
  eventsPath: string;
  stubPath: string;
  /** How divergence messages name the trace for `rewind dump` (default: traceDir). */
  traceName?: string;
  /** Where the program's recorded output goes, the first time replay passes it (default: 2, stderr). */
  stdoutFd?: number;
  stderrFd?: number;
  /** Recorded pid of the process to debug (default: the recorded program). */
  pid?: number;
  /** With pid: start where that process runs this program (a path of its execs), from its exec. */
  exe?: string;
}

/**
 * A replay under a debugger's control, moving forwards and backwards through the recording of
 * one process (the recorded program; other processes of the tree replay alongside, unseen).
 * Synchronous: the calling thread becomes the tracer, so every call must come from it.
 * Errors carry `code` (EngineErrorCode).
 */
export interface DebugSession {
  /** Recorded pid of the debugged process. */
  readonly pid: number;
  /** Recorded tids of its live threads, in start order. */
  threads(): number[];
  /**
   * The thread's registers at the current moment: `general` is the kernel's user_regs_struct
   * (216 bytes), `fp` its user_fpregs_struct (512 bytes, the FXSAVE layout). A thread inside a
   * syscall shows the registers of the moment before its `syscall` instruction ran.
   */
  registers(thread: number): { general: Buffer; fp: Buffer };
  /** Memory of the debugged process; shorter (possibly empty) where it is not mapped. */
  readMemory(address: bigint, length: number): Buffer;
  /** The auxiliary vector of the debuggee's current program. */
  auxv(): Buffer;
  /** Path of the debuggee's current program, as recorded. */
  exe(): string;
  /**
   * The debugged process's mappings now, in /proc/PID/maps's format, with the protections the
   * program gave them; files are named by where replay mapped them from (the trace's blobs).
   */
  memoryMap(): string;
  /**
   * A breakpoint; with conditions (gdb agent expressions, the bytecode of Z0's `X` parameters), a
   * hit stops only if one of them is true. Setting it again replaces its conditions.
   */
  setBreakpoint(address: bigint, conditions?: Buffer[]): void;
  removeBreakpoint(address: bigint): void;
  /** Hardware watchpoint: length 1, 2, 4 or 8, aligned to it; at most 4 at once (EUNSUPPORTED otherwise). */
  setWatchpoint(kind: WatchKind, address: bigint, length: number): void;
  removeWatchpoint(kind: WatchKind, address: bigint, length: number): void;
  /**
   * Continuing forwards also stops at the entry and the return of these syscalls (by number; an
   * empty list: every syscall); null: none. Going backwards does not stop at them.
   */
  catchSyscalls(numbers: number[] | null): void;
  /**
   * Runs forwards or backwards until a breakpoint, a watchpoint, the end of a single step of
   * `thread` (default: the current thread), or an end of the recording.
   */
  /** With `range` (forwards): steps the thread while it runs the code of [start, end). */
  resume(options: { reverse: boolean; step: boolean; thread?: number; range?: { start: bigint; end: bigint } }): DebugStop;
  /** The index of the next event to replay, and the number of events in the recording. */
  when(): { event: number; events: number };
  /** Goes to the debuggee's first moment at or after event `event` (backwards or forwards). */
  seek(event: number): DebugStop;
  /** Goes to a moment a query named (docs/queries.md); EUNSUPPORTED if the recording has no such segment. */
  openMoment(moment: NativeMoment): DebugStop;
  /**
   * Checkpoints held now, and the windows between checkpoints that reverse-continue replayed, or
   * skipped because the code coverage of an earlier replay shows that no breakpoint can have been
   * hit there (counts since the session began).
   */
  stats(): { checkpoints: number; windowsReplayed: number; windowsSkipped: number };
  /**
   * A word that another thread (which shares the buffer) sets to non-zero to interrupt a running
   * resume or seek. It stops at the next start of a stretch of the debuggee's user code between
   * two events (the first moment that can be named again), or, going backwards, at the start of
   * the window being replayed; the word is the caller's to clear.
   */
  watchInterrupt(flag: Int32Array): void;
  /**
   * A word where the session keeps the event it has reached (capped at 2^31-1) while it runs,
   * for another thread (which shares the buffer) to show a long resume's progress.
   */
  watchProgress(word: Int32Array): void;
  /** Ends the session and its processes. Idempotent. */
  close(): void;
}

/**
 * A moment as the engine names it: the start of the stretch of thread `thread`'s user code that
 * begins at event `segment`, then the `count`-th stop there at the breakpoint or the write
 * watchpoint (0: the start itself); or, with `toEnd`, the end of that stretch (a syscall about
 * to run).
 */
export interface NativeMoment {
  segment: number;
  thread: number;
  breakpoint?: bigint;
  watch?: { address: bigint; length: number };
  count: number;
  toEnd?: boolean;
}

export interface QueryRequest extends ReplayRequest {
  kind: 'calls' | 'writes';
  /** The function's first instruction, or the first byte written (`length` of them). */
  address: bigint;
  length?: number;
  /** Whether `address` is as the executable's file says (a symbol's), before the load bias. */
  relative: boolean;
  /** The executable's entry point as its file says: tells the load bias. */
  entry: bigint;
  /** Writes: where instructions are known to begin, as the file says (to find the writer). */
  starts?: BigUint64Array;
  /** More answers than this fail the query (EUNSUPPORTED). */
  maxHits: number;
}

export interface QueryHit {
  segment: number;
  thread: number;
  /** Stops of the query's breakpoint or watchpoint in the segment up to this one (0: at its start). */
  count: number;
  /** user_regs_struct at the stop (216 bytes). */
  general: Buffer;
  /** Calls: xmm0-7 (128 bytes), and 64 bytes at the stack pointer. */
  xmm?: Buffer;
  stack?: Buffer;
  /** Writes: the bytes before and after, and what wrote them. */
  before?: Buffer;
  after?: Buffer;
  cause?: 'instruction' | 'syscall' | 'unexplained';
  /** Writes by an instruction: where it begins, when found. */
  instruction?: bigint;
}

export interface QueryOutcome {
  events: number;
  /** The executable's load bias, and the query's address as the program ran. */
  bias: bigint;
  address: bigint;
  hits: QueryHit[];
}

/** One event of a trace, as `rewind dump` shows it. */
export interface DumpedEvent {
  index: number;
  /** The recorded tid of the task the event belongs to. */
  task: number;
  kind: 'exec' | 'syscall' | 'signal' | 'rdtsc' | 'exit' | 'run' | 'preempt' | 'ptrace-set' | 'patch' | 'tsc';
  text: string;
}

export interface Engine {
  record(request: RecordRequest): Promise<RecordOutcome>;
  /** Sends `signal` (a number) to the process group of each program being recorded. */
  signalRecordings(signal: number): void;
  replay(request: ReplayRequest): Promise<ReplayOutcome>;
  /** Starts a session stopped at the debuggee's first instruction. */
  debug(request: DebugRequest): DebugSession;
  /** The sandbox's second step; call it through confine() below. */
  confine(traceDir: string, stubPath: string): boolean;
  /** Events `from` to `to` (inclusive) of an event stream file, for `rewind dump`. */
  dumpEvents(eventsPath: string, from: number, to: number): DumpedEvent[];
  /** One forward replay answering a query; `progress[0]` is kept at the event replay has reached. */
  query(request: QueryRequest, progress: Int32Array): Promise<QueryOutcome>;
  /** One zstd frame of `data`, as the event stream's chunks hold (for tools that rewrite one). */
  zstdCompress(data: Uint8Array): Buffer;
  /** The `size` bytes the zstd frame holds; throws when it is not one frame of that size. */
  zstdDecompress(frame: Uint8Array, size: number): Buffer;
  /** A chunk header's check of its compressed bytes in a stream of `version` (XXH64's low half from 5, crc32 before). */
  chunkCheck(data: Uint8Array, version: number): number;
}

export class EngineUnavailableError extends Error {}

let build: string | undefined;

/** Remembered: a confined worker (confine()) no longer sees where it was found. */
function buildDir(): string {
  if (build) return build;
  // native/index.ts runs from the source tree (tests) or from dist/native (the CLI).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'native', 'build', 'Release');
    if (existsSync(join(candidate, 'rewind.node'))) return (build = candidate);
    dir = dirname(dir);
  }
  return (build = join(dirname(fileURLToPath(import.meta.url)), 'build', 'Release'));
}

let engine: Engine | undefined;

export function loadEngine(): Engine {
  if (engine) return engine;
  const addon = join(buildDir(), 'rewind.node');
  if (!existsSync(addon)) {
    throw new EngineUnavailableError(
      'the native engine is not built on this machine (recording and local replay need Linux x86-64; run `npm run build:native`)',
    );
  }
  const require = createRequire(import.meta.url);
  engine = require(addon) as Engine;
  return engine;
}

export function stubPath(): string {
  return join(buildDir(), 'rewind-stub');
}

/** The syscall buffer's library (docs/syscall-buffer.md), preloaded into recorded programs. */
export function preloadPath(): string {
  return join(buildDir(), 'rewind-preload.so');
}

/** What a sandboxed worker may use (docs/security.md); each bound applies to every process inside. */
export interface SandboxLimits {
  /**
   * Bytes of writable private memory of the worker (RLIMIT_DATA), and of address space of the
   * replayed program (RLIMIT_AS), each; default 4 GiB.
   */
  memoryBytes: number;
  /** CPU seconds of each process (RLIMIT_CPU); default 3600. */
  cpuSeconds: number;
  /**
   * The largest file a process may write before confine() (RLIMIT_FSIZE); default 16 MiB. confine()
   * lifts it to 1 TiB for the memfds replay stands in for files with, whose content the memory bound bounds.
   */
  fileSizeBytes: number;
  /** Tasks (processes and threads) in the sandbox (RLIMIT_NPROC); default 1024. */
  processes: number;
}

const LIMIT_FLAGS: Record<keyof SandboxLimits, string> = {
  memoryBytes: '--memory',
  cpuSeconds: '--cpu',
  fileSizeBytes: '--file-size',
  processes: '--processes',
};

/**
 * The command that runs the worker `argv` for the trace in `traceDir` in a sandbox: no network,
 * no other process in sight, bounded resources (the launcher's defaults where `limits` has none);
 * the worker then calls confine().
 */
export function sandboxedCommand(argv: string[], traceDir: string, limits: Partial<SandboxLimits> = {}): string[] {
  const launcher = join(buildDir(), 'rewind-sandbox');
  if (!existsSync(launcher)) throw new EngineUnavailableError(`the replay sandbox is not built (${launcher}); run \`npm run build:native\``);
  const flags = Object.entries(limits)
    .filter(([, v]) => v !== undefined)
    .flatMap(([k, v]) => [LIMIT_FLAGS[k as keyof SandboxLimits], String(Math.max(0, Math.floor(v)))]);
  return [launcher, '--trace', resolve(traceDir), ...flags, '--', ...argv];
}

/**
 * Called by a worker once it has loaded everything it needs (the engine, every module), before
 * it replays: in a sandbox, the trace (read-only), the replay stub and /proc become all it can
 * see. Outside one (a local replay) it does nothing.
 */
export function confine(traceDir: string): void {
  loadEngine().confine(resolve(traceDir), stubPath());
}

export function engineErrorCode(err: unknown): EngineErrorCode | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    return err.code as EngineErrorCode;
  }
  return undefined;
}
