// The debug server's messages: one line each on stderr, written at once (the protocol may own
// stdout, and the session thread may be about to end).
import { writeSync } from 'node:fs';

export function log(line: string): void {
  try {
    writeSync(2, `rewind: ${line}\n`);
  } catch {
    // stderr is gone; nothing to tell
  }
}
