import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { print } from '../output.js';
import type { DumpedEvent } from '../../native/index.js';
import type { ClientFlags } from '../../remote/config.js';
import { isTraceId } from '../../trace/ids.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';
import { UserError } from '../../trace/user_error.js';

interface DumpFlags extends ClientFlags {
  from?: string;
  to?: string;
  json?: boolean;
}

function eventIndex(text: string | undefined, flag: string): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n)) throw new UserError(`${flag} ${text}: not an event number (0, 1, 2, ...)`);
  return n;
}

async function dump(trace: string | undefined, flags: DumpFlags): Promise<void> {
  const from = eventIndex(flags.from, '--from') ?? 0;
  const to = eventIndex(flags.to, '--to');
  if (to !== undefined && to < from) throw new UserError(`--to ${to} is before --from ${from}`);
  // Numbers as wide as the last one asked for keep the columns straight in a streamed dump.
  const width = String(to ?? 99999).length;
  let first = true;
  const show = (events: DumpedEvent[]): void => {
    if (flags.json) {
      for (const e of events) {
        print(`${first ? '[' : ','}\n  ${JSON.stringify(e)}`);
        first = false;
      }
    } else {
      print(events.map((e) => `${String(e.index).padStart(width)}  task ${e.task}  ${e.text}\n`).join(''));
    }
  };
  if (trace && !existsSync(trace) && isTraceId(trace)) {
    // Loaded only here: a remote dump needs no engine, a local one no gRPC client.
    const { remoteDump } = await import('../../remote/dump.js');
    await remoteDump(trace, from, to, flags, show);
  } else {
    if (trace && !existsSync(trace)) throw new UserError(`${trace}: no such trace directory`);
    const { readEvents } = await import('../../trace/dump.js');
    show(readEvents(resolveTraceDir(trace), from, to ?? Number.MAX_SAFE_INTEGER));
  }
  if (flags.json) print(first ? '[]\n' : '\n]\n');
}

export function registerDump(program: Command): void {
  const cmd = program
    .command('dump')
    .description("print a trace's events, one line each: what each task did, in the order replay follows")
    .argument('[trace]', 'trace directory, or the id of a trace on the server (default: the latest recording)')
    .option('--from <n>', 'first event to print (default 0)')
    .option('--to <n>', 'last event to print (default: the last one)')
    .option('--json', 'print JSON (one array of {index, task, kind, text})')
    .addHelpText(
      'after',
      '\nEvents are numbered from 0, as divergence messages number them: a replay that diverges at\n' +
        'event N says to run `rewind dump TRACE --from N-5 --to N+5`. Each line is the event number,\n' +
        'the recorded tid of the task, and what happened: a syscall with its arguments and result\n' +
        '(and the memory it wrote), a signal, an exec, a preemption at its ip, an exit.',
    )
    .action(dump);
  addClientOptions(cmd);
}
