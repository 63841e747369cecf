import { checkTraceId } from './catalog.js';
import type { Catalog } from '../catalog/catalog.js';
import { serverStream, type AuthDeps } from '../rpc.js';
import type { ReplayManager } from '../replay/manager.js';
import type { ReplayServiceServer, RunReplayRequest, RunReplayResponse } from '../../gen/rewind/replay/v1/replay.js';

export interface ReplayDeps extends AuthDeps {
  catalog: Catalog;
  replays: ReplayManager;
}

export function replayService(deps: ReplayDeps): ReplayServiceServer {
  return {
    runReplay: serverStream<RunReplayRequest, RunReplayResponse>(deps, 'RunReplay', ['reader'], async (call, ctx) => {
      const id = checkTraceId(call.request.traceId);
      deps.catalog.getTrace(id); // NOT_FOUND before taking a slot
      const session = deps.replays.reserve();
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
  };
}
