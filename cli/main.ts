#!/usr/bin/env node
// The `rewind` command line. Each command lives in cli/commands/<name>.ts and is loaded
// only when used, so commands that talk to a server never load the native addon.
import { writeSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { registerCommands } from './commands/index.js';
import { UserError } from './user_error.js';

function writeQuietly(fd: number, text: string): void {
  try {
    writeSync(fd, text);
  } catch {
    // the reader went away
  }
}

const program = new Command('rewind')
  .description('Time-travel debugging for Linux: record a process, replay it exactly, anywhere.')
  .version('0.1.0')
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
  if (err instanceof CommanderError) {
    process.exitCode = err.exitCode;
  } else if (err instanceof UserError) {
    process.stderr.write(`rewind: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    // An unexpected failure is still reported in one line; REWIND_DEBUG=1 shows the stack.
    const e = err instanceof Error ? err : new Error(String(err));
    process.stderr.write(`rewind: internal error: ${e.message}\n`);
    if (process.env.REWIND_DEBUG) process.stderr.write(`${e.stack ?? ''}\n`);
    process.exitCode = 70;
  }
}
