import { ReplayServiceService } from '../../gen/rewind/replay/v1/replay.js';
import { status, type ServerDuplexStream } from '@grpc/grpc-js';
import { checkTraceId } from './catalog.js';
import type { Catalog } from '../catalog/catalog.js';
import { invalidArgument, RpcError } from '../errors.js';
import { bidiStream, serverStream, type AuthDeps } from '../rpc.js';
import type { ReplayManager } from '../replay/manager.js';
import { EventLines } from '../replay/event_lines.js';
import { DUMP_PAGE_EVENTS } from '../../trace/dump.js';
import { QueryCache } from '../replay/query_cache.js';
import { QueryLines } from '../replay/query_lines.js';
import { MAX_ANSWERS as MAX_ROWS, parseMoment, parseQuery, queryText, queryWords, type QueryAnswer, type QuerySpec } from '../../trace/query.js';
import { UserError } from '../../trace/user_error.js';
import { runLineWorker } from './line_worker.js';
import type {
  DumpEventsRequest,
  DumpEventsResponse,
  QueryRequest,
  QueryResponse,
  DebugRequest,
  DebugResponse,
  ReplayServiceServer,
  RunReplayRequest,
  RunReplayResponse,
} from '../../gen/rewind/replay/v1/replay.js';

export interface ReplayDeps extends AuthDeps {
  catalog: Catalog;
  replays: ReplayManager;
}

/** Rows a QueryResponse carries at most: an answer of many rows comes in several. */
const ROWS_PER_MESSAGE = 2000;

/** An answer as QueryResponses: the same head in each, the rows in order. */
function answerMessages(a: QueryAnswer): QueryResponse[] {
  const out: QueryResponse[] = [];
  for (let i = 0; i === 0 || i < a.rows.length; i += ROWS_PER_MESSAGE) {
    const rows = a.rows.slice(i, i + ROWS_PER_MESSAGE).map((r) => ({
      moment: r.moment,
      event: BigInt(r.event),
      thread: r.thread,
      arguments: r.arguments ?? [],
      oldValue: Buffer.from(r.old ?? '', 'hex'),
      newValue: Buffer.from(r.new ?? '', 'hex'),
      cause: r.cause ?? '',
      pc: r.pc ?? '',
      instruction: r.instruction ?? '',
      line: r.line ?? '',
      syscall: r.syscall ?? '',
      text: r.text ?? '',
    }));
    out.push({ answer: { query: a.query, kind: a.kind, subject: a.subject, events: BigInt(a.events), rows } });
  }
  return out;
}

export function replayService(deps: ReplayDeps): ReplayServiceServer {
  const answers = new QueryCache();
  return {
    runReplay: serverStream<RunReplayRequest, RunReplayResponse>(deps, ReplayServiceService.runReplay, async (call, ctx) => {
      const id = checkTraceId(call.request.traceId);
      await deps.catalog.traces.get(id); // NOT_FOUND before taking a slot
      const session = deps.replays.reserve(ctx.token.id);
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      call.write({ sessionId: session });
      ctx.log.info({ session, trace: id, token: ctx.token.name }, 'replay session');
      await deps.replays.run(
        session,
        id,
        ctx.token.id,
        {
          write: (ev) => {
            if (call.cancelled) return true;
            if (ev.kind === 'exit') return call.write({ exit: { status: ev.status, error: '' } });
            return ev.kind === 'stdout' ? call.write({ stdout: ev.data }) : call.write({ stderr: ev.data });
          },
          onDrain: (cb) => call.once('drain', cb),
        },
        abort.signal,
      );
    }),

    dumpEvents: serverStream<DumpEventsRequest, DumpEventsResponse>(deps, ReplayServiceService.dumpEvents, async (call, ctx) => {
      const id = checkTraceId(call.request.traceId);
      const { from, to } = call.request;
      if (from > BigInt(Number.MAX_SAFE_INTEGER)) throw invalidArgument(`from ${from} is past any trace's events`);
      if (to !== undefined && to < from) throw invalidArgument(`to ${to} is before from ${from}`);
      const first = Number(from);
      const last = Math.min(first + DUMP_PAGE_EVENTS - 1, to === undefined ? Infinity : Number(to));
      await deps.catalog.traces.get(id); // NOT_FOUND before taking a slot
      const session = deps.replays.reserve(ctx.token.id);
      ctx.log.info({ session, trace: id, token: ctx.token.name, from: first, to: last }, 'dump session');
      const lines = new EventLines();
      await runLineWorker(call, {
        name: 'the dump worker',
        failure: "cannot read the trace's events",
        run: (sink, signal) => deps.replays.dump(session, id, ctx.token.id, first, last, sink, signal),
        push: (data) => {
          const events = lines.push(data);
          return events.length === 0 || call.write({ events: events.map((e) => ({ ...e, index: BigInt(e.index) })) });
        },
        end: () => lines.end(),
      });
    }),

    query: serverStream<QueryRequest, QueryResponse>(deps, ReplayServiceService.query, async (call, ctx) => {
      const id = checkTraceId(call.request.traceId);
      if (call.request.query.length > 1024) throw invalidArgument('a query is at most 1024 characters');
      let spec: QuerySpec;
      try {
        spec = parseQuery(call.request.query.split(/\s+/).filter((w) => w.length > 0));
      } catch (err) {
        if (err instanceof UserError) throw invalidArgument(err.message);
        throw err;
      }
      const words = queryWords(spec);
      const text = queryText(spec);
      await deps.catalog.traces.get(id); // NOT_FOUND before taking a slot or answering from the cache
      const cached = answers.get(id, text);
      if (cached) {
        ctx.log.info({ trace: id, token: ctx.token.name, query: text }, 'query answered from the cache');
        for (const m of answerMessages(cached)) call.write(m);
        return;
      }
      const session = deps.replays.reserve(ctx.token.id);
      call.write({ sessionId: session });
      ctx.log.info({ session, trace: id, token: ctx.token.name, query: text }, 'query session');
      const lines = new QueryLines();
      let head: Omit<QueryAnswer, 'rows'> | undefined;
      const rows: QueryAnswer['rows'] = [];
      await runLineWorker(call, {
        name: 'the query worker',
        failure: 'cannot answer the query',
        run: (sink, signal) => deps.replays.query(session, id, ctx.token.id, words, sink, signal),
        push: (data) => {
          for (const line of lines.push(data)) {
            if ('progress' in line) {
              call.write({ progress: { event: BigInt(line.progress.event), events: BigInt(line.progress.events) } });
            } else if ('head' in line) {
              head = line.head;
            } else if (!head || rows.length >= MAX_ROWS) {
              throw new Error('rows without a head, or too many');
            } else {
              rows.push(line.row);
            }
          }
          return true;
        },
        end: () => lines.end(),
      });
      if (!head) throw new RpcError(status.FAILED_PRECONDITION, 'cannot answer the query: the query worker gave no answer');
      const answer = { ...head, query: text, rows };
      answers.set(id, text, answer);
      for (const m of answerMessages(answer)) call.write(m);
    }),

    debug: bidiStream<DebugRequest, DebugResponse>(deps, ReplayServiceService.debug, async (call, ctx) => {
      const first = await firstMessage(call, deps.replays.debugStartTimeoutMs);
      if (!first?.start) throw invalidArgument('the first Debug message must be start{trace_id}');
      const id = checkTraceId(first.start.traceId);
      const moment = first.start.moment || undefined;
      if (moment !== undefined) {
        try {
          parseMoment(moment);
        } catch (err) {
          if (err instanceof UserError) throw invalidArgument(err.message);
          throw err;
        }
      }
      const { pid, exec } = first.start;
      // Passed to the worker's command line: a pid as the CLI takes it, a program name of one path.
      if (pid !== undefined && !(pid >= 1 && pid <= 0x7fffffff)) throw invalidArgument(`pid ${pid}: not a process id`);
      if (exec !== undefined && (exec === '' || exec.length > 4096 || exec.includes('\0'))) throw invalidArgument('exec: the name or path of a program the recording ran');
      await deps.catalog.traces.get(id); // NOT_FOUND before taking a slot
      const session = deps.replays.reserve(ctx.token.id);
      const abort = new AbortController();
      call.on('cancelled', () => abort.abort());
      call.write({ sessionId: session });
      ctx.log.info({ session, trace: id, token: ctx.token.name, moment, pid, exec }, 'debug session');
      await deps.replays.debug(
        session,
        id,
        ctx.token.id,
        {
          write: (data) => (call.cancelled ? true : call.write({ data })),
          onDrain: (cb) => call.once('drain', cb),
          attach: (input) => {
            call.on('data', (m: DebugRequest) => {
              if (m.start) {
                abort.abort(invalidArgument('start may only be sent in the first Debug message'));
              } else if (m.data && m.data.length > 0 && !input.write(m.data)) {
                call.pause();
                input.onDrain(() => call.resume());
              }
            });
            call.on('end', () => input.end());
            call.resume();
          },
        },
        abort.signal,
        { moment, pid, exec },
      );
    }),
  };
}

/**
 * The first message of a client stream (undefined if it ended first); the stream is left paused.
 * A stream silent for `timeoutMs` is refused: it holds a connection's stream and memory.
 */
function firstMessage<Req, Res>(call: ServerDuplexStream<Req, Res>, timeoutMs: number): Promise<Req | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new RpcError(status.DEADLINE_EXCEEDED, `no start message within ${Math.round(timeoutMs / 1000)} s; closed`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      call.off('data', onData);
      call.off('end', onEnd);
      call.off('cancelled', onCancel);
      call.off('error', onError);
    };
    const onData = (m: Req): void => {
      call.pause();
      cleanup();
      resolve(m);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(undefined);
    };
    const onCancel = (): void => {
      cleanup();
      reject(new RpcError(status.CANCELLED, 'cancelled by the client'));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    call.on('data', onData).on('end', onEnd).on('cancelled', onCancel).on('error', onError);
  });
}
