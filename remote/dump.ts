import type { DumpedEvent } from '../native/index.js';
import { DUMP_PAGE_EVENTS } from '../trace/dump.js';
import { isServiceError, withClients } from './client.js';
import { resolveConfig, type ClientFlags } from './config.js';
import type { DumpEventsResponse } from '../gen/rewind/replay/v1/replay.js';

/**
 * Events `from` to `to` of a trace stored on the server (`rewind dump ID`), handed to `each` as
 * they arrive; the server sends a bounded number a call, so this asks again from the next index.
 */
export async function remoteDump(id: string, from: number, to: number | undefined, flags: ClientFlags, each: (events: DumpedEvent[]) => void): Promise<void> {
  await withClients(resolveConfig(flags), async (c) => {
    for (let next = from; to === undefined || next <= to; ) {
      let got = 0;
      await new Promise<void>((resolve, reject) => {
        const stream = c.replay.dumpEvents({ traceId: id, from: BigInt(next), to: to === undefined ? undefined : BigInt(to) }, c.metadata());
        stream.on('data', (msg: DumpEventsResponse) => {
          const events = msg.events.map((e) => ({ ...e, index: Number(e.index), kind: e.kind as DumpedEvent['kind'] }));
          got += events.length;
          if (events.length > 0) {
            next = events[events.length - 1]!.index + 1;
            each(events);
          }
        });
        stream.on('error', (e: unknown) => reject(isServiceError(e) ? e : new Error(String(e))));
        stream.on('end', () => resolve());
      });
      if (got < DUMP_PAGE_EVENTS) return; // the last page
    }
  });
}
