// The one logger of rewind's processes (pino): the same fields everywhere (level, time, pid,
// hostname, name, msg, and the event's own), the level from a --log-level flag or REWIND_LOG.
// The server and the agent write JSON lines; the debug server, whose reader is a person at
// gdb's terminal, writes each message as a `rewind: ...` line.
import { writeSync } from 'node:fs';
import { pino, type DestinationStream, type Logger } from 'pino';
import { UserError } from './user_error.js';

export type { Logger };

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The level a --log-level flag or REWIND_LOG asks for (default info). */
export function logLevel(flag?: string): string {
  const level = flag ?? process.env.REWIND_LOG ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UserError(`bad log level ${JSON.stringify(level)}: use ${LOG_LEVELS.join(', ')}`);
  }
  return level;
}

/** JSON lines on `fd` (the server: stdout; the agent: stderr). */
export function jsonLogger(name: string, level: string, fd = 1): Logger {
  return pino({ name, level }, pino.destination({ fd, sync: true }));
}

/** Written at once, whole lines: the protocol may own stdout and a thread may be about to end. */
const humanLines: DestinationStream = {
  write(line: string): void {
    const entry = JSON.parse(line) as { msg?: string };
    try {
      writeSync(2, `rewind: ${entry.msg ?? ''}\n`);
    } catch {
      // stderr is gone; nothing to tell
    }
  },
};

/** Messages for a person, one `rewind: ...` line each on stderr. */
export function humanLogger(name: string, level = logLevel()): Logger {
  return pino({ name, level }, humanLines);
}
