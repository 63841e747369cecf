// Questions asked of a whole recording (`rewind query`, the server's query workers): every call
// of a function, every write to some memory, every syscall, each with the moment it happened,
// which `rewind debug --moment` opens. docs/queries.md says what a moment is.
import { closeSync, constants, openSync, readFileSync, fstatSync } from 'node:fs';
import { join } from 'node:path';
import { confine, engineErrorCode, stubPath, type NativeMoment, type QueryHit } from '../native/index.js';
import { Dwarf, type ParamType } from './dwarf.js';
import { demangle, Elf, type ElfSymbol } from './elf.js';
import { readEvents } from './dump.js';
import { requireEngine } from './engine.js';
import { eventsPath, readManifest, type Manifest } from './manifest.js';
import { REPLAY_FAILED, UserError } from './user_error.js';

export type QuerySpec = { kind: 'calls'; function: string } | { kind: 'writes'; target: string } | { kind: 'syscalls'; name?: string };

export interface QueryArgument {
  name: string;
  /** The parameter's type by the debug info; empty without it. */
  type: string;
  /** Shown as C would (a number, a character, a pointer in hex); '?' where it cannot be read at the entry. */
  value: string;
}

export interface QueryRow {
  /** For `rewind debug --moment`; empty where the debugger cannot go (another process). */
  moment: string;
  /** rewind dump's numbering: the syscall's own event; for calls and writes, the event their moment's stretch of code begins at. */
  event: number;
  thread: number;
  /** calls */
  arguments?: QueryArgument[];
  /** writes: the bytes before (empty: not known, not mapped before) and after (hex, in memory order), and what wrote them. */
  old?: string;
  new?: string;
  cause?: 'instruction' | 'syscall' | 'unexplained';
  /** writes: where the program was when stopped (after the writing instruction), and that instruction. */
  pc?: string;
  instruction?: string;
  /** writes: the source line of the writing instruction, when the debug info has it. */
  line?: string;
  /** syscalls: the name, and the call as `rewind dump` shows it (arguments and result). */
  syscall?: string;
  text?: string;
}

export interface QueryAnswer {
  /** What was asked, canonically: the cache's key. */
  query: string;
  kind: QuerySpec['kind'];
  /** What the name resolved to: the function, or the memory watched. */
  subject: string;
  events: number;
  rows: QueryRow[];
}

/** Answers beyond this fail the query rather than take the worker's memory. */
export const MAX_ANSWERS = 200_000;
const MAX_NAME = 256;
/** The largest executable read for its symbols. */
const MAX_EXE = 1 << 30;

/** The query the command line's words ask (`calls FUNCTION`, `writes ADDRESS[:LEN]`, `syscalls [NAME]`). */
export function parseQuery(words: readonly string[]): QuerySpec {
  const [kind, what, ...rest] = words;
  if (rest.length > 0) throw new UserError(`query ${kind}: one ${kind === 'syscalls' ? 'name' : 'operand'} only`);
  if (kind === 'calls') {
    if (!what) throw new UserError('query calls FUNCTION: name the function (or give its address, 0x...)');
    return { kind, function: checkName(what, 'function') };
  }
  if (kind === 'writes') {
    if (!what) throw new UserError('query writes ADDRESS[:LEN]: give an address (0x...) or a global variable, and optionally how many bytes');
    checkTarget(what);
    return { kind, target: what };
  }
  if (kind === 'syscalls') {
    if (what !== undefined && !/^[a-z0-9_]{1,40}$/.test(what)) throw new UserError(`query syscalls ${what}: not a syscall name`);
    return what === undefined ? { kind } : { kind, name: what };
  }
  throw new UserError(`query ${kind ?? ''}: ask for calls FUNCTION, writes ADDRESS[:LEN] or syscalls [NAME]`);
}

/** The words of a query, canonically (the command line's, less any extra spaces). */
export function queryWords(spec: QuerySpec): string[] {
  return spec.kind === 'calls' ? ['calls', spec.function] : spec.kind === 'writes' ? ['writes', spec.target] : spec.name ? ['syscalls', spec.name] : ['syscalls'];
}

/** The canonical text of a query, the key of a cache of answers. */
export function queryText(spec: QuerySpec): string {
  return queryWords(spec).join(' ');
}

function checkName(name: string, what: string): string {
  if (name.length > MAX_NAME || !/^[A-Za-z_.$0-9:<>]+$/.test(name)) throw new UserError(`${name.slice(0, 80)}: not a ${what} name (letters, digits, _ . $ : < >) or an address`);
  return name;
}

function checkTarget(target: string): { what: string; length?: number } {
  const m = /^([^:]+(?:::[^:]+)*)(?::(\d{1,2}))?$/.exec(target);
  if (!m) throw new UserError(`${target.slice(0, 80)}: give ADDRESS[:LEN] or VARIABLE[:LEN]`);
  const length = m[2] === undefined ? undefined : Number(m[2]);
  if (length !== undefined && (length < 1 || length > 32)) throw new UserError(`${target}: LEN is 1 to 32 bytes (the four debug registers watch at most that)`);
  return { what: /^0x[0-9a-f]{1,16}$/i.test(m[1]!) ? m[1]! : checkName(m[1]!, 'variable'), length };
}

// --- Moments ------------------------------------------------------------------------------

const MOMENT = /^(\d{1,15})\.(\d{1,10})(?:\.(?:b([0-9a-f]{1,16})\.(\d{1,15})|w([0-9a-f]{1,16})\+(\d{1,2})\.(\d{1,15})|(end)))?$/;

/** A moment's text (docs/queries.md): EVENT.THREAD, then .bADDR.N, .wADDR+LEN.N or .end. */
export function formatMoment(m: NativeMoment): string {
  const base = `${m.segment}.${m.thread}`;
  if (m.toEnd) return `${base}.end`;
  if (m.count === 0) return base;
  if (m.breakpoint !== undefined) return `${base}.b${m.breakpoint.toString(16)}.${m.count}`;
  if (m.watch) return `${base}.w${m.watch.address.toString(16)}+${m.watch.length}.${m.count}`;
  return base;
}

export function parseMoment(text: string): NativeMoment {
  const m = MOMENT.exec(text);
  if (!m) throw new UserError(`--moment ${text.slice(0, 80)}: not a moment (EVENT.THREAD[.bADDR.N|.wADDR+LEN.N|.end], as rewind query prints them)`);
  const moment: NativeMoment = { segment: Number(m[1]), thread: Number(m[2]), count: 0 };
  if (m[3] !== undefined) return { ...moment, breakpoint: BigInt(`0x${m[3]}`), count: Number(m[4]) };
  if (m[5] !== undefined) {
    const length = Number(m[6]);
    if (length < 1 || length > 32) throw new UserError(`--moment ${text}: a watch of 1 to 32 bytes`);
    return { ...moment, watch: { address: BigInt(`0x${m[5]}`), length }, count: Number(m[7]) };
  }
  return m[8] ? { ...moment, toEnd: true } : moment;
}

// --- Answering ------------------------------------------------------------------------------

export interface QueryOptions {
  /** Divergence messages name the trace by its id (a server's worker). */
  nameById?: boolean;
  /** Called now and then while replay runs: the event reached, of how many. */
  onProgress?: (event: number, events: number) => void;
}

/** Answers a query about a local trace directory with one forward replay (none for syscalls). */
export async function answerQuery(dir: string, spec: QuerySpec, opts: QueryOptions = {}): Promise<QueryAnswer> {
  // The trace is untrusted: in a server's worker, nothing of it is read before the sandbox closes.
  confine(dir);
  const manifest = readManifest(dir);
  const query = queryText(spec);
  if (spec.kind === 'syscalls') return syscalls(dir, manifest, spec.name, query);
  const program = loadProgram(dir, manifest);
  const engine = requireEngine();
  let address: bigint;
  let relative: boolean;
  let length = 0;
  let subject: string;
  let fn: ElfSymbol | undefined;
  if (spec.kind === 'calls') {
    if (/^0x[0-9a-f]+$/i.test(spec.function)) {
      address = BigInt(spec.function);
      relative = false;
      subject = `the function at ${spec.function}`;
    } else {
      fn = findSymbol(program, spec.function, 'function');
      address = fn.value;
      relative = true;
      subject = demangle(fn.name);
    }
  } else {
    const t = checkTarget(spec.target);
    if (t.what.startsWith('0x')) {
      address = BigInt(t.what);
      relative = false;
      length = t.length ?? 8;
      subject = `${length} bytes at ${t.what}`;
    } else {
      const v = findSymbol(program, t.what, 'object');
      address = v.value;
      relative = true;
      length = t.length ?? v.size;
      if (length < 1 || length > 32) throw new UserError(`${t.what} is ${v.size} bytes: give how many to watch (${t.what}:LEN, at most 32)`);
      subject = `${demangle(v.name)} (${length} bytes)`;
    }
  }
  const progress = new Int32Array(new SharedArrayBuffer(4));
  const events = manifest.counts.events;
  const timer = opts.onProgress ? setInterval(() => opts.onProgress?.(Atomics.load(progress, 0), events), 500) : undefined;
  let outcome;
  try {
    outcome = await engine.query(
      {
        traceDir: dir,
        eventsPath: eventsPath(manifest, dir),
        stubPath: stubPath(),
        traceName: opts.nameById ? manifest.id : undefined,
        kind: spec.kind,
        address,
        length,
        relative,
        entry: program.elf.entry,
        starts: spec.kind === 'writes' ? program.starts() : undefined,
        maxHits: MAX_ANSWERS,
      },
      progress,
    );
  } catch (err) {
    const code = engineErrorCode(err);
    const message = err instanceof Error ? err.message : String(err);
    if (code === 'EUNSUPPORTED') throw new UserError(message);
    throw new UserError(code === 'EDIVERGED' || code === 'EBADTRACE' ? message : `the query's replay failed: ${message}`, REPLAY_FAILED);
  } finally {
    if (timer) clearInterval(timer);
  }
  const rows =
    spec.kind === 'calls'
      ? outcome.hits.map((h) => callRow(h, outcome.address, program.dwarf?.functionAt(outcome.address - outcome.bias)))
      : outcome.hits.map((h) => writeRow(h, outcome.address, length, outcome.bias, program.dwarf));
  if (spec.kind === 'calls' && fn === undefined) {
    const named = program.symbols.find((s) => s.kind === 'function' && s.value === outcome.address - outcome.bias);
    if (named) subject = `${demangle(named.name)} at ${spec.function}`;
  }
  return { query, kind: spec.kind, subject, events: outcome.events, rows };
}

interface Program {
  elf: Elf;
  symbols: ElfSymbol[];
  dwarf: Dwarf | undefined;
  starts(): BigUint64Array;
}

/** The recorded program's executable, out of the trace's blobs. */
function loadProgram(dir: string, manifest: Manifest): Program {
  const blob = manifest.blobs.find((b) => b.role === 'file' && b.path === manifest.exe);
  if (!blob) throw new UserError(`the trace holds no copy of its program ${manifest.exe}`);
  let data: Buffer;
  const fd = openSync(join(dir, 'blobs', blob.sha256), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (fstatSync(fd).size > MAX_EXE) throw new UserError(`${manifest.exe} is larger than ${MAX_EXE} bytes`);
    data = readFileSync(fd);
  } finally {
    closeSync(fd);
  }
  let elf: Elf;
  try {
    elf = new Elf(data);
  } catch (err) {
    throw new UserError(`${manifest.exe} in the trace: ${err instanceof Error ? err.message : String(err)}`);
  }
  let dwarf: Dwarf | undefined;
  try {
    dwarf = new Dwarf(elf);
  } catch (err) {
    // Damaged or unusual debug information: the query goes on with the symbol table alone.
    process.stderr.write(`rewind: ignoring the debug information of ${manifest.exe}: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  const symbols = elf.symbols();
  return {
    elf,
    symbols,
    dwarf,
    starts: () => new BigUint64Array([...symbols.filter((s) => s.kind === 'function').map((s) => s.value), ...(dwarf?.lineAddresses() ?? [])]),
  };
}

function findSymbol(program: Program, name: string, kind: ElfSymbol['kind']): ElfSymbol {
  const what = kind === 'function' ? 'function' : 'global variable';
  const matches = program.symbols.filter((s) => {
    if (s.kind !== kind) return false;
    const path = demangle(s.name);
    return s.name === name || path === name || path.endsWith(`::${name}`);
  });
  const distinct = [...new Map(matches.map((s) => [s.value, s])).values()];
  if (distinct.length === 0) throw new UserError(`${name}: no ${what} of that name in the program's symbol table`);
  if (distinct.length > 1) {
    const list = distinct.slice(0, 8).map((s) => `${demangle(s.name)} at 0x${s.value.toString(16)}`);
    throw new UserError(`${name}: ${distinct.length} ${what}s have that name (${list.join(', ')}); name one in full${kind === 'function' ? ' or by its address as the program runs' : ''}`);
  }
  return distinct[0]!;
}

// user_regs_struct offsets of the integer-argument registers, in the ABI's order.
const ARG_REGS: [string, number][] = [
  ['rdi', 112],
  ['rsi', 104],
  ['rdx', 96],
  ['rcx', 88],
  ['r8', 72],
  ['r9', 64],
];
const RIP = 128;

function hex(v: bigint): string {
  return `0x${v.toString(16)}`;
}

/** A call's row: its arguments by the System V ABI at the function's first instruction. */
function callRow(h: QueryHit, address: bigint, fn: ReturnType<Dwarf['functionAt']>): QueryRow {
  const moment = formatMoment({ segment: h.segment, thread: h.thread, count: h.count, breakpoint: address });
  const reg = (off: number): bigint => h.general.readBigUInt64LE(off);
  if (!fn) {
    return { moment, event: h.segment, thread: h.thread, arguments: ARG_REGS.map(([name, off]) => ({ name, type: '', value: hex(reg(off)) })) };
  }
  let ints = 0;
  let floats = 0;
  let stack = 8; // past the return address
  let known = true;
  const args = fn.params.map((p): QueryArgument => {
    const t = p.type;
    const word = (): bigint | undefined => {
      if (ints < ARG_REGS.length) return reg(ARG_REGS[ints++]![1]);
      const at = stack;
      stack += 8;
      return h.stack && at + 8 <= h.stack.length ? h.stack.readBigUInt64LE(at) : undefined;
    };
    let value: string | undefined;
    if (!known || t.kind === 'other' || t.size === 0 || t.size > 8) {
      // An aggregate takes registers or stack by rules this does not follow: the rest is unknown.
      known = false;
    } else if (t.kind === 'float') {
      if (floats < 8 && h.xmm) {
        const at = 16 * floats++;
        value = String(t.size === 4 ? h.xmm.readFloatLE(at) : h.xmm.readDoubleLE(at));
      } else {
        known = false;
      }
    } else {
      const w = word();
      if (w !== undefined) value = showInteger(w, t);
    }
    return { name: p.name, type: t.name, value: value ?? '?' };
  });
  return { moment, event: h.segment, thread: h.thread, arguments: args };
}

function showInteger(word: bigint, t: ParamType): string {
  const bits = BigInt(t.size * 8);
  const v = word & ((1n << bits) - 1n);
  if (t.kind === 'pointer') return hex(v);
  if (t.kind === 'bool') return v === 0n ? 'false' : 'true';
  if (t.kind === 'signed') return String(BigInt.asIntN(Number(bits), v));
  if (t.kind === 'char') {
    const c = Number(v);
    return c >= 0x20 && c < 0x7f ? `${c} '${String.fromCharCode(c)}'` : String(c);
  }
  return String(v);
}

function writeRow(h: QueryHit, address: bigint, length: number, bias: bigint, dwarf: Dwarf | undefined): QueryRow {
  const moment = formatMoment({ segment: h.segment, thread: h.thread, count: h.count, watch: { address, length } });
  const row: QueryRow = { moment, event: h.segment, thread: h.thread, old: (h.before ?? Buffer.alloc(0)).toString('hex'), new: (h.after ?? Buffer.alloc(0)).toString('hex'), cause: h.cause ?? 'instruction' };
  if (row.cause === 'instruction') {
    const pc = h.general.readBigUInt64LE(RIP);
    row.pc = hex(pc);
    if (h.instruction !== undefined) row.instruction = hex(h.instruction);
    // The byte before pc is the writing instruction's last: its line is the writer's.
    const line = dwarf?.lineAt((h.instruction ?? pc - 1n) - bias);
    if (line) row.line = `${line.file}:${line.line}`;
  }
  return row;
}

/** Every syscall of the recording, from its event stream (no replay needed). */
function syscalls(dir: string, manifest: Manifest, name: string | undefined, query: string): QueryAnswer {
  const events = readEvents(dir, 0, Number.MAX_SAFE_INTEGER);
  const debuggee = new Set(manifest.processes[0]?.threads ?? []);
  if (manifest.processes[0]) debuggee.add(manifest.processes[0].pid);
  // A task's stretch of user code begins right after its previous event: the segment a syscall
  // ends is known by that event's index + 1.
  const last = new Map<number, number>();
  const rows: QueryRow[] = [];
  for (const e of events) {
    const segment = (last.get(e.task) ?? -1) + 1;
    last.set(e.task, e.index);
    if (e.kind !== 'syscall') continue;
    const call = /^([a-z0-9_]+)\(/.exec(e.text)?.[1] ?? '?';
    if (name !== undefined && call !== name) continue;
    if (rows.length >= MAX_ANSWERS) throw new UserError(`the query has more than ${MAX_ANSWERS} answers; name a syscall`);
    const moment = debuggee.has(e.task) && segment > 0 ? formatMoment({ segment, thread: e.task, count: 0, toEnd: true }) : '';
    rows.push({ moment, event: e.index, thread: e.task, syscall: call, text: e.text });
  }
  return { query, kind: 'syscalls', subject: name ?? 'every syscall', events: events.length, rows };
}
