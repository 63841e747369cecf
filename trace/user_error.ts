/** An error whose message is meant for the user as it is: no stack trace is printed. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

/** Exit status of an unexpected failure (EX_SOFTWARE). */
export const INTERNAL_ERROR = 70;

/** Exit status of a replay that fails itself (divergence, damaged trace). */
export const REPLAY_FAILED = 125;

/**
 * Reports a failure of a command or worker on stderr in one line and returns its exit status;
 * REWIND_DEBUG=1 adds the stack of an unexpected one.
 */
export function reportError(err: unknown): number {
  if (err instanceof UserError) {
    process.stderr.write(`rewind: ${err.message}\n`);
    return err.exitCode;
  }
  const e = err instanceof Error ? err : new Error(String(err));
  process.stderr.write(`rewind: internal error: ${e.message}\n`);
  if (process.env.REWIND_DEBUG) process.stderr.write(`${e.stack ?? ''}\n`);
  return INTERNAL_ERROR;
}
