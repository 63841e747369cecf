// The events of a trace, one readable line each: `rewind dump DIR` and the server's dump workers.
import { engineErrorCode, type DumpedEvent } from '../native/index.js';
import { requireEngine } from './engine.js';
import { eventsPath, readManifest } from './manifest.js';
import { REPLAY_FAILED, UserError } from './user_error.js';

/** Events one DumpEvents call sends at most: a client asks again from the next index. */
export const DUMP_PAGE_EVENTS = 100_000;

/** Events `from` to `to` (inclusive; beyond the last is fine) of a trace directory. */
export function readEvents(dir: string, from: number, to: number): DumpedEvent[] {
  const events = eventsPath(readManifest(dir), dir);
  try {
    return requireEngine().dumpEvents(events, from, to);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (engineErrorCode(err) === 'EBADTRACE') throw new UserError(`${dir}: ${message}`, REPLAY_FAILED);
    throw err;
  }
}
