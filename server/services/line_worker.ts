import { status } from '@grpc/grpc-js';
import { RpcError } from '../errors.js';
import type { ReplaySink } from '../replay/manager.js';

/** A worker that answers in lines on its stdout (dump, query), seen from the RPC that runs it. */
export interface LineWorker {
  /** The worker in errors: "the dump worker". */
  name: string;
  /** What the user asked for, in a failure: "cannot read the trace's events". */
  failure: string;
  /** Starts the worker writing into the sink; settles once it has exited. */
  run(sink: ReplaySink, abort: AbortSignal): Promise<void>;
  /** Takes a chunk of stdout; false asks for back-pressure; throws on output that does not parse. */
  push(data: Buffer): boolean;
  /** Called once stdout has ended; throws on a cut-off last line. */
  end(): void;
}

/** The part of a server stream a line worker needs. */
export interface WorkerCall {
  readonly cancelled: boolean;
  on(event: 'cancelled', listener: () => void): unknown;
  once(event: 'drain', listener: () => void): unknown;
}

/** Bytes of the worker's stderr kept for the error message: its last line says why it failed. */
const STDERR_TAIL = 4000;

/**
 * Runs the worker for the call: stdout goes to `push` until the client cancels or a line does not
 * parse (then the worker is stopped); a worker that exits non-zero becomes FAILED_PRECONDITION with
 * its last stderr line, output that does not parse becomes INTERNAL.
 */
export async function runLineWorker(call: WorkerCall, worker: LineWorker): Promise<void> {
  const abort = new AbortController();
  call.on('cancelled', () => abort.abort());
  let bad: Error | undefined;
  let stderr = '';
  let exitStatus = 0;
  const sink: ReplaySink = {
    write: (ev) => {
      if (ev.kind === 'stderr') stderr = (stderr + ev.data.toString('utf8')).slice(-STDERR_TAIL);
      if (ev.kind === 'exit') exitStatus = ev.status;
      if (ev.kind !== 'stdout' || call.cancelled || bad) return true;
      try {
        return worker.push(ev.data);
      } catch (err) {
        bad = err instanceof Error ? err : new Error(String(err));
        abort.abort();
        return true;
      }
    },
    onDrain: (cb) => call.once('drain', cb),
  };
  try {
    await worker.run(sink, abort.signal);
    worker.end();
  } catch (err) {
    if (!bad) throw err;
  }
  if (bad) throw new RpcError(status.INTERNAL, `${worker.name} failed: ${bad.message}`);
  if (exitStatus !== 0) {
    const said = stderr.trim().split('\n').pop()?.replace(/^rewind: /, '') ?? '';
    throw new RpcError(status.FAILED_PRECONDITION, `${worker.failure}: ${said || `${worker.name} exited with ${exitStatus}`}`);
  }
}
