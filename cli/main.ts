#!/usr/bin/env node
// The `rewind` command line. Each command lives in cli/commands/<name>.ts; registering it loads
// only commander and small modules, and its action loads what it uses (the gRPC client, the
// engine, the debug server), so `rewind --help` starts at once and commands that talk to a
// server never load the native addon.
import { writeSync } from 'node:fs';
import { REWIND_VERSION } from '../trace/version.js';

function writeQuietly(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // the reader went away
  }
}

// `rewind --version` answers before anything else loads: scripts call it to probe for rewind.
if (process.argv.length === 3 && ['--version', '-V'].includes(process.argv[2]!)) {
  writeQuietly(1, `${REWIND_VERSION}\n`);
  process.exit(0);
}

const { Command, CommanderError } = await import('commander');
const { registerCommands } = await import('./commands/index.js');
const { reportError, INTERNAL_ERROR } = await import('../trace/user_error.js');

// What escapes every handler (an 'error' event no one listens to: a write to a stderr whose
// reader went away) ends rewind with one line, never a stack trace, and never a second failure.
const fatal = (err: unknown): void => {
  const message = err instanceof Error ? err.message : String(err);
  writeQuietly(2, `rewind: internal error: ${message}\n`);
  if (process.env.REWIND_DEBUG && err instanceof Error) writeQuietly(2, `${err.stack ?? ''}\n`);
  process.exit(INTERNAL_ERROR);
};
process.on('uncaughtException', fatal);
process.on('unhandledRejection', fatal);

const program = new Command('rewind')
  .description('Time-travel debugging for Linux: record a process, replay it exactly, anywhere.')
  .version(REWIND_VERSION)
  .enablePositionalOptions()
  // Written straight to the fds: creating process.stdout would make a pipe non-blocking for the
  // programs we record, and `rewind --help | head` must not end in an EPIPE stack trace.
  .configureOutput({ writeOut: (s) => writeQuietly(1, s), writeErr: (s) => writeQuietly(2, s) })
  .exitOverride()
  .showHelpAfterError('(run with --help for usage)');

registerCommands(program);

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = err instanceof CommanderError ? err.exitCode : reportError(err);
}
