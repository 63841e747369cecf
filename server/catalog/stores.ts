// The catalogue's stores, one per concept, as the services use them. Every method is
// asynchronous: the PostgreSQL catalogue answers over the network, and the SQLite one runs its
// unbounded reads (listing, search, totals) on threads of their own, off the event loop.
import type { Manifest } from '../../trace/manifest.js';
import type { AgentRow, BlobEntry, JobRow, RoleName, SessionRow, StoredToken, TokenRow, TraceFilter, TraceRow } from './types.js';

export interface TokenStore {
  create(role: RoleName, name: string): Promise<{ token: TokenRow; secret: string }>;
  /** The valid (not revoked) token with this secret. */
  forSecret(secret: string): Promise<TokenRow | undefined>;
  /** Revokes by id, name or secret. */
  revoke(ref: string): Promise<TokenRow>;
  list(): Promise<TokenRow[]>;
  /** Adds tokens kept elsewhere, by their secrets' hashes (migration); returns how many were new. */
  addStored(tokens: StoredToken[]): Promise<number>;
}

/** A trace to commit: its checked manifest, the JSON kept, its labels, and who uploaded it. */
export interface NewTrace {
  manifest: Manifest;
  manifestJson: string;
  labels: Record<string, string>;
  tokenId: string;
  /** When it was first uploaded (a migrated trace keeps its time); default: now. */
  uploadedMs?: number;
}

export interface TraceStore {
  has(id: string): Promise<boolean>;
  /**
   * Commits a trace in one transaction, only if every blob it names is present.
   * Returns false (and changes nothing) when the trace is already there.
   */
  commit(t: NewTrace): Promise<boolean>;
  /** Commits many traces in one transaction (bulk loads, migration); returns how many were new. */
  commitMany(ts: NewTrace[]): Promise<number>;
  /**
   * The traces that match, newest first: at most `limit`, and no more rows than fit in
   * `maxBytes` of text (then `truncated`; rows are read a few at a time, so a listing of huge
   * rows never holds much more than that in memory).
   */
  list(f: TraceFilter): Promise<{ rows: TraceRow[]; truncated: boolean }>;
  get(id: string): Promise<{ trace: TraceRow; manifest: string; blobs: BlobEntry[] }>;
  /** Deletes a trace; returns the blobs no trace references any more (their rows are gone). */
  delete(id: string): Promise<{ sha256: string; size: number }[]>;
  stats(): Promise<{ traces: number; blobs: number; blobBytes: number }>;
  /** The size of every trace committed with this token. */
  bytesUploadedBy(tokenId: string): Promise<number>;
}

export interface BlobIndex {
  has(sha256: string): Promise<boolean>;
  /** A committed trace names it. */
  isReferenced(sha256: string): Promise<boolean>;
  /** Records a complete, verified blob (unreferenced until a trace naming it is committed). */
  add(sha256: string, size: number): Promise<void>;
  /**
   * Forgets blobs no trace references that were stored at or before `cutoffMs` (uploads never
   * committed); returns them so their files can be removed. Each orphan goes to one caller.
   */
  takeOrphans(cutoffMs: number): Promise<{ sha256: string; size: number }[]>;
  /**
   * Claims a blob for one writer across every server on this catalogue (an upload into the
   * store, or the removal of an orphan from it): returns the claim, or undefined while another
   * claim holds the blob. A claim lapses when its server's lease runs out (the server died).
   */
  claim(sha256: string): Promise<string | undefined>;
  release(sha256: string, claim: string): Promise<void>;
}

export interface AgentStore {
  /** Registers (or updates) a host for `token`; a host another live token holds is refused. */
  register(hostname: string, facts: string, token: TokenRow): Promise<AgentRow>;
  get(id: string): Promise<AgentRow | undefined>;
  list(): Promise<AgentRow[]>;
  /**
   * Heartbeat: marks the agent alive, renews the lease of the jobs it runs for `leaseMs`, and
   * hands it its pending jobs (now running, each to exactly one caller). A running job whose
   * lease ran out (its agent stopped heartbeating) fails.
   */
  heartbeat(agentId: string, token: TokenRow, leaseMs: number): Promise<JobRow[]>;
  createJob(hostname: string, argv: string[], labels: Record<string, string>): Promise<JobRow>;
  /** Ends a running job of the token's host, with a trace that token uploaded, or an error. */
  completeJob(id: string, traceId: string, error: string, token: TokenRow): Promise<void>;
  getJob(id: string): Promise<JobRow | undefined>;
}

/**
 * Replay and debug sessions, as a record of who replayed what and how it ended. Each belongs to
 * the server running it; a server keeps a lease, and the sessions of one whose lease ran out
 * (killed, or cut off from the catalogue) are ended by whichever server renews its own next.
 */
export interface SessionLog {
  start(id: string, traceId: string, tokenId: string): Promise<void>;
  end(id: string, exitStatus: number | null, error: string): Promise<void>;
  get(id: string): Promise<SessionRow | undefined>;
  /**
   * Renews this server's lease for `leaseMs`; ends the sessions of servers whose lease ran out
   * (returns how many) and drops their blob claims.
   */
  keepAlive(leaseMs: number): Promise<number>;
  /**
   * Ends the lease of a server known to be gone (the previous server on this one's data
   * directory, killed): its blob claims are dropped at once, and its sessions are ended by the
   * next keepAlive, rather than once its lease would have run out.
   */
  retire(serverId: string): Promise<{ claims: number }>;
}

/** Small facts about the catalogue itself (when the first admin token was made). */
export interface MetaStore {
  get(key: string): Promise<string | undefined>;
  /** Sets the key unless it is set already; true when this call set it. */
  setOnce(key: string, value: string): Promise<boolean>;
}

export interface Catalog {
  /** `sqlite` or `postgres`, for messages. */
  readonly kind: string;
  /** This server's id in the session log. */
  readonly serverId: string;
  readonly tokens: TokenStore;
  readonly traces: TraceStore;
  readonly blobs: BlobIndex;
  readonly agents: AgentStore;
  readonly sessions: SessionLog;
  readonly meta: MetaStore;
  close(): Promise<void>;
}
