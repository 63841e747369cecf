// The debug server's messages: one `rewind: ...` line each on stderr (the protocol may own
// stdout), through the one logger (trace/log.ts) at REWIND_LOG's level.
import { humanLogger } from '../trace/log.js';

const logger = humanLogger('rewind-debug');

export function log(line: string): void {
  logger.info(line);
}
