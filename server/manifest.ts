import { SHA256_HEX } from './blobstore/blobstore.js';
import { invalidArgument } from './errors.js';

/** Trace format versions this server accepts. */
export const SUPPORTED_VERSIONS: readonly number[] = [1];

export interface ManifestBlob {
  sha256: string;
  size: number;
  role: string;
  path?: string;
}

/** The fields of manifest.json the server relies on (the rest is kept verbatim). */
export interface Manifest {
  format: 'rewind-trace';
  version: number;
  id: string;
  argv: string[];
  exe: string;
  cwd: string;
  user: string;
  host: { hostname: string; kernel: string; arch: string; cpu: { model: string; vendor: string; flags: string[] } };
  startTime: string;
  endTime: string;
  durationMs: number;
  exit: { status: number | null; code: number | null; signal: string | null };
  complete: boolean;
  counts: { events: number; tasks: number; syscalls: number; bytes: number };
  blobs: ManifestBlob[];
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_BLOBS = 1_000_000;

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses and validates manifest.json; throws INVALID_ARGUMENT with a precise message. */
export function parseManifest(json: string): Manifest {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    throw invalidArgument(`malformed manifest: not JSON (${(err as Error).message})`);
  }
  if (!isObj(raw)) throw invalidArgument('malformed manifest: not a JSON object');
  if (raw.format !== 'rewind-trace') {
    throw invalidArgument(`not a rewind trace manifest: format is ${JSON.stringify(raw.format)}, expected "rewind-trace"`);
  }
  if (typeof raw.version !== 'number' || !SUPPORTED_VERSIONS.includes(raw.version)) {
    throw invalidArgument(
      `unsupported trace format version ${JSON.stringify(raw.version)}; this server supports version ${SUPPORTED_VERSIONS.join(', ')}`,
    );
  }
  const bad = (field: string, want: string): never => {
    throw invalidArgument(`malformed manifest: "${field}" must be ${want}`);
  };
  const str = (o: Obj, k: string, field = k, optional = false): string => {
    const v = o[k];
    if (v === undefined && optional) return '';
    return typeof v === 'string' ? v : bad(field, 'a string');
  };
  const num = (o: Obj, k: string, field = k, optional = false): number => {
    const v = o[k];
    if (v === undefined && optional) return 0;
    return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : bad(field, 'a non-negative number');
  };
  const strs = (o: Obj, k: string, field = k, optional = false): string[] => {
    const v = o[k];
    if (v === undefined && optional) return [];
    return Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : bad(field, 'an array of strings');
  };

  const id = str(raw, 'id');
  if (!UUID.test(id)) bad('id', 'a UUID');
  const argv = strs(raw, 'argv');
  const hostRaw = isObj(raw.host) ? raw.host : bad('host', 'an object');
  const cpuRaw = hostRaw.cpu === undefined ? {} : isObj(hostRaw.cpu) ? hostRaw.cpu : bad('host.cpu', 'an object');
  const host = {
    hostname: str(hostRaw, 'hostname', 'host.hostname'),
    kernel: str(hostRaw, 'kernel', 'host.kernel', true),
    arch: str(hostRaw, 'arch', 'host.arch', true),
    cpu: {
      model: str(cpuRaw, 'model', 'host.cpu.model', true),
      vendor: str(cpuRaw, 'vendor', 'host.cpu.vendor', true),
      flags: strs(cpuRaw, 'flags', 'host.cpu.flags', true),
    },
  };
  const startTime = str(raw, 'startTime');
  if (Number.isNaN(Date.parse(startTime))) bad('startTime', 'an ISO 8601 time');
  const endTime = str(raw, 'endTime', 'endTime', true);
  if (endTime && Number.isNaN(Date.parse(endTime))) bad('endTime', 'an ISO 8601 time');

  const exitRaw = raw.exit === undefined || raw.exit === null ? {} : isObj(raw.exit) ? raw.exit : bad('exit', 'an object');
  const intOrNull = (k: string): number | null => {
    const v = exitRaw[k];
    if (v === undefined || v === null) return null;
    return typeof v === 'number' && Number.isInteger(v) ? v : bad(`exit.${k}`, 'an integer or null');
  };
  const sig = exitRaw.signal;
  if (sig !== undefined && sig !== null && typeof sig !== 'string') bad('exit.signal', 'a string or null');
  const exit = { status: intOrNull('status'), code: intOrNull('code'), signal: (sig as string | null | undefined) ?? null };

  const countsRaw = raw.counts === undefined ? {} : isObj(raw.counts) ? raw.counts : bad('counts', 'an object');
  const counts = {
    events: num(countsRaw, 'events', 'counts.events', true),
    tasks: num(countsRaw, 'tasks', 'counts.tasks', true),
    syscalls: num(countsRaw, 'syscalls', 'counts.syscalls', true),
    bytes: num(countsRaw, 'bytes', 'counts.bytes', true),
  };

  if (!Array.isArray(raw.blobs)) bad('blobs', 'an array');
  const blobsRaw = raw.blobs as unknown[];
  if (blobsRaw.length > MAX_BLOBS) bad('blobs', `at most ${MAX_BLOBS} entries`);
  const blobs: ManifestBlob[] = [];
  const sizes = new Map<string, number>();
  blobsRaw.forEach((b, i) => {
    if (!isObj(b)) bad(`blobs[${i}]`, 'an object');
    const bo = b as Obj;
    const sha256 = str(bo, 'sha256', `blobs[${i}].sha256`);
    if (!SHA256_HEX.test(sha256)) bad(`blobs[${i}].sha256`, '64 lowercase hex digits');
    const size = num(bo, 'size', `blobs[${i}].size`);
    if (!Number.isSafeInteger(size)) bad(`blobs[${i}].size`, 'an integer');
    const prev = sizes.get(sha256);
    if (prev !== undefined && prev !== size) bad(`blobs[${i}].size`, `the same for every entry of blob ${sha256}`);
    sizes.set(sha256, size);
    const role = str(bo, 'role', `blobs[${i}].role`);
    const p = bo.path;
    if (p !== undefined && typeof p !== 'string') bad(`blobs[${i}].path`, 'a string');
    blobs.push(p === undefined ? { sha256, size, role } : { sha256, size, role, path: p as string });
  });

  // A recording cut short (its recorder was killed) is stored too, marked incomplete: replay
  // runs its events up to where they end. Without its event stream there is nothing to replay.
  const complete = raw.complete !== false;
  if (raw.complete !== undefined && typeof raw.complete !== 'boolean') bad('complete', 'a boolean');
  if (!complete && !blobs.some((b) => b.role === 'events')) {
    throw invalidArgument('an incomplete trace (its recording was cut short) must carry the events it holds as a blob with role "events"');
  }

  return {
    format: 'rewind-trace',
    version: raw.version,
    id: id.toLowerCase(),
    argv,
    exe: str(raw, 'exe', 'exe', true),
    cwd: str(raw, 'cwd', 'cwd', true),
    user: str(raw, 'user', 'user', true),
    host,
    startTime,
    endTime,
    durationMs: num(raw, 'durationMs', 'durationMs', true),
    exit,
    complete,
    counts,
    blobs,
  };
}

/** Distinct blobs of a manifest with their sizes. */
export function distinctBlobs(m: Manifest): Map<string, number> {
  const out = new Map<string, number>();
  for (const b of m.blobs) out.set(b.sha256, b.size);
  return out;
}

/** Shell-style exit status of a manifest: exit.status, else code, else 128+signal; -1 unknown. */
export function exitStatusOf(m: Manifest): number {
  if (m.exit.status !== null) return m.exit.status;
  if (m.exit.code !== null) return m.exit.code;
  if (m.exit.signal) {
    const n = signalNumber(m.exit.signal);
    if (n !== undefined) return 128 + n;
  }
  return -1;
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8,
  SIGKILL: 9, SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15,
  SIGSTKFLT: 16, SIGCHLD: 17, SIGCONT: 18, SIGSTOP: 19, SIGTSTP: 20, SIGTTIN: 21, SIGTTOU: 22,
  SIGURG: 23, SIGXCPU: 24, SIGXFSZ: 25, SIGVTALRM: 26, SIGPROF: 27, SIGWINCH: 28, SIGIO: 29,
  SIGPWR: 30, SIGSYS: 31,
};

export function signalNumber(name: string): number | undefined {
  const up = name.toUpperCase();
  return SIGNALS[up.startsWith('SIG') ? up : `SIG${up}`];
}

/** Normalises "segv", "SIGSEGV" or "11" to "SIGSEGV"; undefined when unknown. */
export function normaliseSignal(s: string): string | undefined {
  if (/^\d+$/.test(s)) {
    const n = Number(s);
    return Object.keys(SIGNALS).find((k) => SIGNALS[k] === n);
  }
  const up = s.toUpperCase();
  const name = up.startsWith('SIG') ? up : `SIG${up}`;
  return name in SIGNALS ? name : undefined;
}
