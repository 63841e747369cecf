// The catalogue's rows, as the services see them.

export type RoleName = 'agent' | 'reader' | 'admin';

export interface TokenRow {
  id: string;
  name: string;
  role: RoleName;
  createdMs: number;
  revokedMs: number | null;
}

/** A token as the catalogue keeps it: the sha256 of its secret, never the secret. */
export interface StoredToken extends TokenRow {
  hash: string;
}

export interface TraceRow {
  id: string;
  host: string;
  program: string;
  argv: string[];
  exe: string;
  user: string;
  cwd: string;
  startMs: number;
  durationMs: number;
  exitStatus: number;
  signal: string | null;
  complete: boolean;
  sizeBytes: number;
  labels: Record<string, string>;
  uploadedMs: number;
}

export interface TraceFilter {
  host?: string;
  program?: string;
  exitStatus?: number;
  failed?: boolean;
  signal?: string;
  sinceMs?: number;
  untilMs?: number;
  labels?: Record<string, string>;
  search?: string;
  limit?: number;
  /** Stop reading rows past this many bytes of text. */
  maxBytes?: number;
}

export interface BlobEntry {
  sha256: string;
  size: number;
  role: string;
  path: string;
}

export interface AgentRow {
  id: string;
  hostname: string;
  facts: string;
  registeredMs: number;
  lastHeartbeatMs: number;
}

export type JobState = 'pending' | 'running' | 'done' | 'failed';

export interface JobRow {
  id: string;
  hostname: string;
  argv: string[];
  labels: Record<string, string>;
  state: JobState;
  traceId: string;
  error: string;
  createdMs: number;
}

export interface SessionRow {
  id: string;
  traceId: string;
  tokenId: string;
  serverId: string;
  startedMs: number;
  endedMs: number | null;
  exitStatus: number | null;
  error: string | null;
}
