// A command's output on stdout. A reader that goes away (`rewind ls | head -3`) ends the
// command quietly, as SIGPIPE ends a C program, instead of an EPIPE stack trace. Only commands
// that print touch process.stdout: creating it would make a shared pipe non-blocking for the
// programs `record` runs.
let guarded = false;

/** Exit status after the reader of stdout went away: 128 + SIGPIPE, like a program killed by it. */
export const BROKEN_PIPE = 141;

export function print(text: string): void {
  if (!guarded) {
    guarded = true;
    process.stdout.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EPIPE') throw err;
      process.exit(BROKEN_PIPE);
    });
  }
  process.stdout.write(text);
}
