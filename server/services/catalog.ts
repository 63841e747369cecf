import { CatalogServiceService } from '../../gen/rewind/catalog/v1/catalog.js';
import type { BlobStore } from '../blobstore/blobstore.js';
import type { Catalog, TraceRow } from '../catalog/catalog.js';
import { failedPrecondition, invalidArgument } from '../errors.js';
import { isTraceId } from '../../trace/ids.js';
import { normaliseSignal } from '../../trace/signals.js';
import { unary, type AuthDeps } from '../rpc.js';
import type { ServerStats } from '../stats.js';
import type { Logger } from 'pino';
import { MANIFEST_LIMITS, ManifestError, parseManifest } from '../../trace/manifest.js';
import { manifestMessage, type ManifestMessage } from '../../trace/manifest_message.js';
import { TraceSummary } from '../../gen/rewind/catalog/v1/catalog.js';
import { removeBlob } from '../gc.js';
import type {
  CatalogServiceServer,
  DeleteTraceRequest,
  DeleteTraceResponse,
  GetStatsRequest,
  GetStatsResponse,
  GetTraceRequest,
  GetTraceResponse,
  ListTracesRequest,
  ListTracesResponse,
} from '../../gen/rewind/catalog/v1/catalog.js';

/** A stored manifest as the API sends it; one this server can no longer read is named, not hidden. */
function storedManifest(id: string, json: string): ManifestMessage {
  try {
    return manifestMessage(parseManifest(json, 'server'));
  } catch (err) {
    if (err instanceof ManifestError) throw failedPrecondition(`the stored manifest of trace ${id} is damaged: ${err.message}`);
    throw err;
  }
}

export interface CatalogDeps extends AuthDeps {
  catalog: Catalog;
  store: BlobStore;
  stats: ServerStats;
  activeSessions: () => number;
}

export function checkTraceId(id: string): string {
  const lower = id.trim().toLowerCase();
  if (isTraceId(lower)) return lower;
  // Quoted back only when short: the client's bytes are not ours to repeat at any length.
  const shown = id.length <= 64 ? JSON.stringify(id) : `of ${id.length} characters`;
  throw invalidArgument(`bad trace id ${shown}: expected a UUID`);
}

/** A time the catalogue holds as a Timestamp; one out of range (a row no validator saw) is the epoch. */
function timestamp(ms: number): Date {
  return new Date(Number.isFinite(ms) && ms >= 0 && ms <= MANIFEST_LIMITS.maxTimeMs ? ms : 0);
}

/** A stored trace as the API shows it: every number clamped into its protobuf field's range. */
export function toSummary(t: TraceRow): TraceSummary {
  const int32 = Number.isSafeInteger(t.exitStatus) && t.exitStatus >= -1 && t.exitStatus <= 0x7fff_ffff;
  return {
    id: t.id,
    host: t.host,
    program: t.program,
    argv: t.argv,
    exe: t.exe,
    user: t.user,
    startTime: timestamp(t.startMs),
    durationMs: Number.isFinite(t.durationMs) && t.durationMs >= 0 ? t.durationMs : 0,
    exitStatus: int32 ? t.exitStatus : -1,
    signal: t.signal ?? '',
    sizeBytes: Number.isSafeInteger(t.sizeBytes) && t.sizeBytes >= 0 ? BigInt(t.sizeBytes) : 0n,
    labels: t.labels,
    uploadedAt: timestamp(t.uploadedMs),
    complete: t.complete,
  };
}

/** A ListTraces page stops growing at this many bytes (clients accept 64 MiB). */
const PAGE_BYTES = 4 << 20;

/**
 * The summaries that fit one page: at least one, then as many as stay within PAGE_BYTES. A row
 * that cannot be encoded at all is left out (and logged) rather than failing the page.
 */
function boundedPage(rows: TraceRow[], truncated: boolean, log: Logger): ListTracesResponse {
  const traces: TraceSummary[] = [];
  let bytes = 0;
  for (const row of rows) {
    let size: number;
    let s: TraceSummary;
    try {
      s = toSummary(row);
      size = TraceSummary.encode(s).finish().length + 8;
    } catch (err) {
      log.warn({ err, trace: row.id }, 'a stored trace cannot be listed; left out');
      continue;
    }
    if (traces.length > 0 && bytes + size > PAGE_BYTES) return { traces, truncated: true };
    traces.push(s);
    bytes += size;
  }
  return { traces, truncated };
}

export function catalogService(deps: CatalogDeps): CatalogServiceServer {
  const { catalog, store, stats } = deps;
  return {
    listTraces: unary<ListTracesRequest, ListTracesResponse>(deps, CatalogServiceService.listTraces, async (req, ctx) => {
      let signal: string | undefined;
      if (req.signal) {
        signal = normaliseSignal(req.signal);
        if (!signal) throw invalidArgument(`unknown signal ${JSON.stringify(req.signal)}`);
      }
      if (req.limit > 10_000) throw invalidArgument('limit must be at most 10000');
      const { rows, truncated } = await catalog.traces.list({
        host: req.host || undefined,
        program: req.program || undefined,
        exitStatus: req.exitStatus,
        failed: req.failed,
        signal,
        sinceMs: req.since?.getTime(),
        untilMs: req.until?.getTime(),
        labels: req.labels,
        search: req.search.trim() || undefined,
        limit: req.limit,
        maxBytes: PAGE_BYTES,
      });
      return boundedPage(rows, truncated, ctx.log);
    }),

    getTrace: unary<GetTraceRequest, GetTraceResponse>(deps, CatalogServiceService.getTrace, async (req) => {
      const t = await catalog.traces.get(checkTraceId(req.id));
      return {
        summary: toSummary(t.trace),
        manifest: storedManifest(t.trace.id, t.manifest),
        blobs: t.blobs.map((b) => ({ sha256: b.sha256, size: BigInt(b.size), role: b.role, path: b.path })),
      };
    }),

    deleteTrace: unary<DeleteTraceRequest, DeleteTraceResponse>(deps, CatalogServiceService.deleteTrace, async (req, ctx) => {
      const id = checkTraceId(req.id);
      const freed = await catalog.traces.delete(id);
      let bytes = 0n;
      let removed = 0;
      for (const b of freed) {
        // A blob re-uploaded in the meantime (row back, or an upload of it under way) stays.
        if (!(await removeBlob(catalog, store, b))) continue;
        bytes += BigInt(b.size);
        removed++;
      }
      ctx.log.info({ trace: id, blobsRemoved: removed, token: ctx.token.name }, 'trace deleted');
      return { blobsRemoved: removed, bytesFreed: bytes };
    }),

    getStats: unary<GetStatsRequest, GetStatsResponse>(deps, CatalogServiceService.getStats, async () => {
      const s = await catalog.traces.stats();
      return {
        traces: BigInt(s.traces),
        blobs: BigInt(s.blobs),
        blobBytes: BigInt(s.blobBytes),
        bytesReceived: BigInt(stats.bytesReceived),
        chunksRejected: BigInt(stats.chunksRejected),
        blobsCompleted: BigInt(stats.blobsCompleted),
        tracesCommitted: BigInt(stats.tracesCommitted),
        activeReplaySessions: deps.activeSessions(),
        blobBytesReceived: BigInt(stats.blobBytesReceived),
      };
    }),
  };
}
