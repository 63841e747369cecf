// The server's JSON layer (docs/api.md, "JSON over HTTP"): POST /api/<gRPC method> with the
// request in protobuf's JSON mapping, where fields at their default value are left out.
const TOKEN_KEY = 'rewind.token';

export const token = {
  get: (): string | null => sessionStorage.getItem(TOKEN_KEY),
  set: (t: string): void => sessionStorage.setItem(TOKEN_KEY, t),
  clear: (): void => sessionStorage.removeItem(TOKEN_KEY),
};

/** A refused call: the gRPC status name (NOT_FOUND) and the server's message. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly httpStatus: number,
  ) {
    super(message);
  }
}

export interface TraceSummary {
  id: string;
  host?: string;
  program?: string;
  argv?: string[];
  exe?: string;
  user?: string;
  startTime?: string;
  durationMs?: number;
  exitStatus?: number;
  signal?: string;
  sizeBytes?: string;
  labels?: Record<string, string>;
  uploadedAt?: string;
  complete?: boolean;
}

export interface ListFilter {
  host?: string;
  program?: string;
  exitStatus?: number;
  failed?: boolean;
  signal?: string;
  since?: string;
  until?: string;
  labels?: Record<string, string>;
  search?: string;
  limit?: number;
}

/** The parts of a manifest (rewind.trace.v1.Manifest, in protobuf's JSON: 64-bit counts as text) the page shows. */
export interface Manifest {
  cwd?: string;
  endTime?: string;
  host?: { hostname?: string; kernel?: string; arch?: string; cpu?: { model?: string; vendor?: string; flags?: string[] } };
  counts?: { events?: string; tasks?: string; syscalls?: string };
  processes?: { pid: number; parent?: number; execs?: { exe?: string; argv?: string[] }[]; threads?: number[] }[];
}

export interface TraceDetail {
  summary?: TraceSummary;
  manifest?: Manifest;
  blobs?: { sha256: string; size?: string; role?: string; path?: string }[];
}

export type Role = 'ROLE_AGENT' | 'ROLE_READER' | 'ROLE_ADMIN';

export interface Timeline {
  events: number;
  truncated: boolean;
  buckets: number;
  bucketEvents: number;
  lanes: { task: number; first: number; last: number; marks: Record<MarkKind, [number, number][]> }[];
  moreTasks: number;
}
export type MarkKind = 'syscall' | 'signal' | 'fork' | 'exec' | 'exit';

/** The recorded stdout and stderr, as one replay on the server echoed them (server/http/output.ts). */
export interface RecordedOutput {
  stdout: RecordedStream;
  stderr: RecordedStream;
  exitStatus?: number;
  failed?: string;
}
export interface RecordedStream {
  /** base64 */
  data: string;
  bytes: number;
  truncated: boolean;
}

/** A query's answer row (rewind.replay.v1.QueryRow in protobuf's JSON: bytes as base64, 64-bit as text). */
export interface QueryRow {
  moment?: string;
  event?: string;
  thread?: number;
  arguments?: { name?: string; type?: string; value?: string }[];
  oldValue?: string;
  newValue?: string;
  cause?: string;
  pc?: string;
  instruction?: string;
  line?: string;
  syscall?: string;
  text?: string;
}

export interface QueryMessage {
  sessionId?: string;
  progress?: { event?: string; events?: string };
  answer?: { query?: string; kind?: string; subject?: string; events?: string; rows?: QueryRow[] };
  error?: { code: string; message: string };
}

export interface ReplayMessage {
  sessionId?: string;
  stdout?: string;
  stderr?: string;
  exit?: { status?: number; error?: string };
  error?: { code: string; message: string };
}

const SERVICES = {
  catalog: 'rewind.catalog.v1.CatalogService',
  replay: 'rewind.replay.v1.ReplayService',
  token: 'rewind.auth.v1.TokenService',
} as const;

async function post(method: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  const t = token.get();
  const res = await fetch(`/api/${method}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(t ? { authorization: `Bearer ${t}` } : {}) },
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) {
    let code = 'UNKNOWN';
    let message = `${res.status} ${res.statusText}`;
    try {
      const e = (await res.json()) as { code?: string; message?: string };
      code = e.code ?? code;
      message = e.message ?? message;
    } catch {
      // not our JSON: keep the HTTP status
    }
    throw new ApiError(code, message, res.status);
  }
  return res;
}

async function unary<T>(method: string, body: unknown): Promise<T> {
  return (await (await post(method, body)).json()) as T;
}

export const api = {
  whoAmI: () => unary<{ token?: { name?: string; role?: Role } }>(`${SERVICES.token}/WhoAmI`, {}),
  listTraces: (f: ListFilter) => unary<{ traces?: TraceSummary[]; truncated?: boolean }>(`${SERVICES.catalog}/ListTraces`, f),
  getTrace: (id: string) => unary<TraceDetail>(`${SERVICES.catalog}/GetTrace`, { id }),
  deleteTrace: (id: string) => unary<{ blobsRemoved?: number; bytesFreed?: string }>(`${SERVICES.catalog}/DeleteTrace`, { id }),
  timeline: (traceId: string) => unary<Timeline>('web/Timeline', { traceId }),
  output: (traceId: string) => unary<RecordedOutput>('web/Output', { traceId }),
  /** Runs a replay; each message as it arrives, until the stream ends. */
  runReplay: (traceId: string, onMessage: (m: ReplayMessage) => void, signal?: AbortSignal) => serverStream(`${SERVICES.replay}/RunReplay`, { traceId }, onMessage, signal),
  /** Asks a query (`calls step`, as `rewind query` takes it): progress, then the answer's parts. */
  query: (traceId: string, query: string, onMessage: (m: QueryMessage) => void, signal?: AbortSignal) => serverStream(`${SERVICES.replay}/Query`, { traceId, query }, onMessage, signal),
};

/** A server stream: one JSON message a line, each handed on as it arrives. */
async function serverStream<T>(method: string, body: unknown, onMessage: (m: T) => void, signal?: AbortSignal): Promise<void> {
  const res = await post(method, body, signal);
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let partial = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    const lines = (partial + value).split('\n');
    partial = lines.pop()!;
    for (const l of lines) if (l) onMessage(JSON.parse(l) as T);
  }
}

/** Bytes the server sent as base64 (protobuf's JSON form of bytes), as text. */
export function decodeBytes(b64: string, decoder: TextDecoder): string {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return decoder.decode(bytes, { stream: true });
}
