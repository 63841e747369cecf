// manifest.json: what a trace is (docs/trace-format.md), and the one validator every reader uses
// (the CLI, the debug server, the upload client and the server). Traces are untrusted input:
// every field is checked before anything relies on it. Written last, atomically, so a directory
// with a manifest always holds a finished trace (or one that says it was cut short).
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { HostFacts } from './host_facts.js';
import { isTraceId, SHA256_HEX } from './ids.js';
import { signalName, signalNumber } from './signals.js';
import { UserError } from './user_error.js';

export const TRACE_FORMAT = 'rewind-trace';
export const SUPPORTED_VERSIONS: readonly number[] = [1];
export const CURRENT_VERSION = 1;

/**
 * What a manifest may hold. Generous for any real recording (the kernel caps argv and env at a
 * quarter of the stack limit, at most 6 MiB; paths at 4096 bytes), small enough that no
 * field can break a reader downstream (a protobuf int32, a page of a listing).
 */
export const MANIFEST_LIMITS = {
  blobs: 1_000_000,
  /** One blob: a captured file or a snapshot of an address space (the server may bound it lower). */
  blobBytes: 2 ** 40,
  /** argv, env, and each exec's argv: entries and total bytes (the kernel's bound is 6 MiB). */
  strings: 1 << 18,
  stringBytes: 6 << 20,
  path: 4096,
  /** hostname, kernel, arch, CPU model and vendor, a blob's role, a CPU flag. */
  name: 256,
  cpuFlags: 1024,
  processes: 100_000,
  threads: 1 << 20,
  execs: 1024,
  /** durationMs: about 31 years. */
  durationMs: 1e12,
  /** Times between 1970 and 9999, as a protobuf Timestamp (and SQLite) holds them. */
  maxTimeMs: 253_402_300_799_999,
} as const;

export interface ExitInfo {
  /** Shell-style status: the exit code, or 128 + the signal number. */
  status: number;
  code: number | null;
  signal: string | null;
}

export interface ManifestBlob {
  sha256: string;
  size: number;
  /** events, file or snapshot (docs/trace-format.md); other roles are kept as they are. */
  role: string;
  /** For files: where the program found it. */
  path?: string;
}

export interface ManifestProcess {
  pid: number;
  /** 0 for the recorded program itself. */
  parent: number;
  execs: { exe: string; argv: string[] }[];
  threads: number[];
}

export interface Manifest {
  format: typeof TRACE_FORMAT;
  version: number;
  id: string;
  argv: string[];
  exe: string;
  cwd: string;
  env: string[];
  user: string;
  host: HostFacts;
  startTime: string;
  endTime: string;
  durationMs: number;
  /** null while recording, and in a recording that was cut short. */
  exit: ExitInfo | null;
  /** false while recording; stays false when the recorder was killed (see eventsPath). */
  complete: boolean;
  counts: { events: number; tasks: number; syscalls: number; bytes: number };
  /** Every process of the recorded tree, in the order they started. */
  processes: ManifestProcess[];
  blobs: ManifestBlob[];
  /** Whether the syscall buffer was used (docs/syscall-buffer.md); absent (false) in older traces. */
  syscallBuffer?: boolean;
}

/** A manifest that is not one this rewind can use; the message says which field and why. */
export class ManifestError extends UserError {
  override name = 'ManifestError';
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function bad(field: string, want: string): never {
  throw new ManifestError(`malformed manifest: "${field}" must be ${want}`);
}

function str(o: Obj, k: string, field = k, optional = false, max: number = MANIFEST_LIMITS.path): string {
  const v = o[k];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') bad(field, 'a string');
  return v.length <= max ? v : bad(field, `at most ${max} characters`);
}

function num(o: Obj, k: string, field = k, optional = false, max = Number.MAX_SAFE_INTEGER): number {
  const v = o[k];
  if (v === undefined && optional) return 0;
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= max ? v : bad(field, `a number from 0 to ${max}`);
}

/** An integer in [min, max] (by default any safe integer). */
function int(v: unknown, field: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) bad(field, 'an integer');
  return v >= min && v <= max ? v : bad(field, `an integer from ${min} to ${max}`);
}

/** A list of strings bounded in entries and in total size. */
function strs(o: Obj, k: string, field = k, optional = false, maxEach: number = MANIFEST_LIMITS.stringBytes): string[] {
  const v = o[k];
  if (v === undefined && optional) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) bad(field, 'an array of strings');
  const list = v as string[];
  if (list.length > MANIFEST_LIMITS.strings) bad(field, `at most ${MANIFEST_LIMITS.strings} entries`);
  let bytes = 0;
  for (const x of list) {
    if (x.length > maxEach) bad(field, `made of strings of at most ${maxEach} characters`);
    bytes += x.length + 1;
  }
  return bytes <= MANIFEST_LIMITS.stringBytes ? list : bad(field, `at most ${MANIFEST_LIMITS.stringBytes} bytes in all`);
}

/** An ISO 8601 time between 1970 and 9999. */
function time(o: Obj, k: string, optional = false): string {
  const t = str(o, k, k, optional, 64);
  if (!t && optional) return t;
  const ms = Date.parse(t);
  return ms >= 0 && ms <= MANIFEST_LIMITS.maxTimeMs ? t : bad(k, 'an ISO 8601 time between 1970 and 9999');
}

function obj(o: Obj, k: string, field = k): Obj {
  const v = o[k];
  if (v === undefined) return {};
  return isObj(v) ? v : bad(field, 'an object');
}

/** The parsed JSON of a manifest, or a ManifestError. */
export function parseJson(json: string): Obj {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw new ManifestError(`malformed manifest: not JSON (${(err as Error).message})`);
  }
  return isObj(raw) ? raw : bad('manifest', 'a JSON object');
}

/** The trace id of a manifest (lower case). */
function manifestId(raw: Obj): string {
  const id = str(raw, 'id');
  return isTraceId(id) ? id.toLowerCase() : bad('id', 'a UUID');
}

/** The blob list of a manifest: names, sizes and roles checked, one size per name. */
export function manifestBlobs(raw: Obj): ManifestBlob[] {
  if (!Array.isArray(raw.blobs)) bad('blobs', 'an array');
  const list = raw.blobs as unknown[];
  if (list.length > MANIFEST_LIMITS.blobs) bad('blobs', `at most ${MANIFEST_LIMITS.blobs} entries`);
  const sizes = new Map<string, number>();
  return list.map((b, i) => {
    if (!isObj(b)) bad(`blobs[${i}]`, 'an object');
    const sha256 = str(b, 'sha256', `blobs[${i}].sha256`);
    if (!SHA256_HEX.test(sha256)) bad(`blobs[${i}].sha256`, '64 lowercase hex digits');
    const size = int(b.size, `blobs[${i}].size`, 0, MANIFEST_LIMITS.blobBytes);
    if ((sizes.get(sha256) ?? size) !== size) bad(`blobs[${i}].size`, `the same for every entry of blob ${sha256}`);
    sizes.set(sha256, size);
    const role = str(b, 'role', `blobs[${i}].role`, false, MANIFEST_LIMITS.name);
    if (b.path === undefined) return { sha256, size, role };
    return { sha256, size, role, path: str(b, 'path', `blobs[${i}].path`) };
  });
}

/** A signal as the recorder names it: SIGSEGV, or "signal 34" for one without a name. */
function signalOf(name: string): number {
  const n = /^signal (\d{1,2})$/.exec(name);
  const num = n ? Number(n[1]) : signalNumber(name);
  return num !== undefined && num >= 1 && num <= 64 ? num : bad('exit.signal', 'a signal name (SIGSEGV) or null');
}

function exitOf(raw: Obj): ExitInfo | null {
  if (raw.exit === undefined || raw.exit === null) return null;
  const e = obj(raw, 'exit');
  // Shell-style statuses: an exit code is a byte, and 128 + a signal number stays below 256.
  const intOrNull = (k: string): number | null => (e[k] === undefined || e[k] === null ? null : int(e[k], `exit.${k}`, 0, 255));
  if (e.signal !== undefined && e.signal !== null && typeof e.signal !== 'string') bad('exit.signal', 'a string or null');
  const signal = (e.signal as string | null | undefined) ?? null;
  const code = intOrNull('code');
  const sig = signal === null ? undefined : signalOf(signal);
  const status = intOrNull('status') ?? code ?? (sig === undefined ? null : 128 + sig);
  return status === null ? null : { status, code, signal };
}

function processesOf(raw: Obj): ManifestProcess[] {
  if (raw.processes === undefined) return [];
  if (!Array.isArray(raw.processes)) bad('processes', 'an array');
  const procs = raw.processes as unknown[];
  if (procs.length > MANIFEST_LIMITS.processes) bad('processes', `at most ${MANIFEST_LIMITS.processes} entries`);
  const PID_MAX = 2 ** 22; // the kernel's limit (pid_max)
  let threadCount = 0;
  return procs.map((p, i) => {
    const f = `processes[${i}]`;
    if (!isObj(p)) bad(f, 'an object');
    if (!Array.isArray(p.execs)) bad(`${f}.execs`, 'an array');
    if (p.execs.length > MANIFEST_LIMITS.execs) bad(`${f}.execs`, `at most ${MANIFEST_LIMITS.execs} entries`);
    const execs = (p.execs as unknown[]).map((e, j) =>
      isObj(e) ? { exe: str(e, 'exe', `${f}.execs[${j}].exe`), argv: strs(e, 'argv', `${f}.execs[${j}].argv`) } : bad(`${f}.execs[${j}]`, 'an object'),
    );
    if (p.threads !== undefined && !Array.isArray(p.threads)) bad(`${f}.threads`, 'an array');
    const threads = ((p.threads ?? []) as unknown[]).map((t, j) => int(t, `${f}.threads[${j}]`, 1, PID_MAX));
    threadCount += threads.length;
    if (threadCount > MANIFEST_LIMITS.threads) bad(`${f}.threads`, `at most ${MANIFEST_LIMITS.threads} threads in all`);
    return { pid: int(p.pid, `${f}.pid`, 1, PID_MAX), parent: int(p.parent, `${f}.parent`, 0, PID_MAX), execs, threads };
  });
}

/**
 * Checks a manifest and returns it typed, with the optional fields filled in. `reader` names who
 * refuses an unsupported version ("this server supports version 1").
 */
export function validateManifest(raw: Obj, reader = 'rewind'): Manifest {
  if (raw.format !== TRACE_FORMAT) {
    throw new ManifestError(`not a rewind trace manifest: format is ${JSON.stringify(raw.format)}, expected "${TRACE_FORMAT}"`);
  }
  if (typeof raw.version !== 'number' || !SUPPORTED_VERSIONS.includes(raw.version)) {
    throw new ManifestError(
      `unsupported trace format version ${JSON.stringify(raw.version)}; this ${reader} supports version ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const id = manifestId(raw);
  const argv = strs(raw, 'argv');
  if (!isObj(raw.host)) bad('host', 'an object');
  const hostRaw = raw.host;
  const cpu = obj(hostRaw, 'cpu', 'host.cpu');
  const name = MANIFEST_LIMITS.name;
  const flags = strs(cpu, 'flags', 'host.cpu.flags', true, name);
  if (flags.length > MANIFEST_LIMITS.cpuFlags) bad('host.cpu.flags', `at most ${MANIFEST_LIMITS.cpuFlags} entries`);
  const host: HostFacts = {
    hostname: str(hostRaw, 'hostname', 'host.hostname', false, name),
    kernel: str(hostRaw, 'kernel', 'host.kernel', true, name),
    arch: str(hostRaw, 'arch', 'host.arch', true, name),
    cpu: {
      model: str(cpu, 'model', 'host.cpu.model', true, name),
      vendor: str(cpu, 'vendor', 'host.cpu.vendor', true, name),
      flags,
    },
  };
  const startTime = time(raw, 'startTime');
  const endTime = time(raw, 'endTime', true);
  const counts = obj(raw, 'counts');
  if (raw.complete !== undefined && typeof raw.complete !== 'boolean') bad('complete', 'a boolean');
  if (raw.syscallBuffer !== undefined && typeof raw.syscallBuffer !== 'boolean') bad('syscallBuffer', 'a boolean');
  const blobs = manifestBlobs(raw);
  // A recording cut short (its recorder was killed) replays its events up to where they end:
  // it must say so, and without its event stream (events.partial locally) there is nothing.
  const complete = raw.complete !== false;
  return {
    format: TRACE_FORMAT,
    version: raw.version,
    id,
    argv,
    exe: str(raw, 'exe', 'exe', true),
    cwd: str(raw, 'cwd', 'cwd', true),
    env: strs(raw, 'env', 'env', true),
    user: str(raw, 'user', 'user', true, name),
    host,
    startTime,
    endTime,
    durationMs: num(raw, 'durationMs', 'durationMs', true, MANIFEST_LIMITS.durationMs),
    exit: exitOf(raw),
    complete,
    counts: {
      events: num(counts, 'events', 'counts.events', true),
      tasks: num(counts, 'tasks', 'counts.tasks', true),
      syscalls: num(counts, 'syscalls', 'counts.syscalls', true),
      bytes: num(counts, 'bytes', 'counts.bytes', true),
    },
    processes: processesOf(raw),
    blobs,
    syscallBuffer: raw.syscallBuffer === true,
  };
}

/** Parses and checks the text of a manifest. */
export function parseManifest(json: string, reader?: string): Manifest {
  return validateManifest(parseJson(json), reader);
}

export function manifestPath(dir: string): string {
  return join(dir, 'manifest.json');
}

export function writeManifest(dir: string, manifest: Manifest): void {
  const tmp = join(dir, '.manifest.json.tmp');
  writeFileSync(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(tmp, manifestPath(dir));
}

/** The text of DIR/manifest.json; a directory without one is not a trace. */
export function readManifestText(dir: string): string {
  try {
    return readFileSync(manifestPath(dir), 'utf8');
  } catch {
    throw new UserError(`${dir} is not a rewind trace (it has no manifest.json)`);
  }
}

/** Reads and checks a trace's manifest; every problem is a UserError naming the trace. */
export function readManifest(dir: string): Manifest {
  const text = readManifestText(dir);
  try {
    return parseManifest(text);
  } catch (err) {
    if (err instanceof ManifestError) throw new ManifestError(`${manifestPath(dir)}: ${err.message}`);
    throw err;
  }
}

/** The event stream of a trace; a recording cut short still has the one it was writing. */
export function eventsPath(manifest: Manifest, dir: string): string {
  if (!manifest.complete) {
    const partial = join(dir, 'events.partial');
    if (existsSync(partial)) return partial;
    throw new UserError(`${dir}: the recording was cut short before it wrote any event`);
  }
  const blob = manifest.blobs.find((b) => b.role === 'events');
  if (!blob) throw new UserError(`${dir}: the manifest names no event stream`);
  return join(dir, 'blobs', blob.sha256);
}

/** Distinct blobs of a manifest with their sizes. */
export function distinctBlobs(m: Manifest): Map<string, number> {
  return new Map(m.blobs.map((b) => [b.sha256, b.size]));
}

/** Shell-style exit information from a wait status. */
export function exitInfo(waitStatus: number): ExitInfo {
  const termSig = waitStatus & 0x7f;
  if (termSig === 0) {
    const code = (waitStatus >> 8) & 0xff;
    return { status: code, code, signal: null };
  }
  return { status: 128 + termSig, code: null, signal: signalName(termSig) };
}
