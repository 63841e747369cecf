import { existsSync } from 'node:fs';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { print } from '../output.js';
import type { ClientFlags } from '../../remote/config.js';
import { isTraceId } from '../../trace/ids.js';
import type { QueryAnswer, QueryRow } from '../../trace/query.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';
import { UserError } from '../../trace/user_error.js';

interface QueryFlags extends ClientFlags {
  json?: boolean;
}

const KINDS = new Set(['calls', 'writes', 'syscalls']);

/** Shows replay's progress on a terminal, at most once a second, on one line that it overwrites. */
function progressLine(): { show: (event: number, events: number) => void; done: () => void } {
  if (!process.stderr.isTTY) return { show: () => undefined, done: () => undefined };
  let shown = false;
  return {
    show: (event, events) => {
      shown = true;
      process.stderr.write(`\rrewind: replaying event ${event} of ${events} (${Math.floor((100 * event) / Math.max(events, 1))}%)`);
    },
    done: () => {
      if (shown) process.stderr.write('\r\x1b[K');
    },
  };
}

/** Bytes in memory order as a little-endian integer (1, 2, 4 or 8 of them), otherwise as hex. */
export function showValue(hexBytes: string | undefined): string {
  if (hexBytes === undefined || hexBytes === '') return '?';
  const b = Buffer.from(hexBytes, 'hex');
  if (b.length === 8) return String(b.readBigInt64LE(0));
  if (b.length === 4) return String(b.readInt32LE(0));
  if (b.length === 2) return String(b.readInt16LE(0));
  if (b.length === 1) return String(b.readInt8(0));
  return hexBytes;
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function render(a: QueryAnswer): string {
  const count = `${a.rows.length} ${a.kind === 'calls' ? 'call' : a.kind === 'writes' ? 'write' : 'syscall'}${a.rows.length === 1 ? '' : 's'}`;
  const head = `${count} of ${a.subject} in ${a.events} events\n`;
  if (a.rows.length === 0) return head;
  const moment = (r: QueryRow): string => r.moment || '-';
  if (a.kind === 'calls') {
    const rows = a.rows.map((r) => [moment(r), String(r.thread), (r.arguments ?? []).map((x) => `${x.name}=${x.value}`).join(', ')]);
    return head + table(['MOMENT', 'THREAD', 'ARGUMENTS'], rows);
  }
  if (a.kind === 'writes') {
    const rows = a.rows.map((r) => [moment(r), String(r.thread), showValue(r.old), showValue(r.new), r.cause === 'instruction' ? (r.instruction ?? r.pc ?? '') : r.cause ?? '', r.line ?? '']);
    return head + table(['MOMENT', 'THREAD', 'OLD', 'NEW', 'BY', 'LINE'], rows);
  }
  const rows = a.rows.map((r) => [moment(r), String(r.event), String(r.thread), r.text ?? '']);
  return head + table(['MOMENT', 'EVENT', 'THREAD', 'SYSCALL'], rows);
}

async function query(operands: string[], flags: QueryFlags): Promise<void> {
  const trace = operands[0] !== undefined && !KINDS.has(operands[0]) ? operands[0] : undefined;
  const words = trace === undefined ? operands : operands.slice(1);
  const { parseQuery } = await import('../../trace/query.js');
  const spec = parseQuery(words);
  const progress = progressLine();
  let answer: QueryAnswer;
  try {
    if (trace && !existsSync(trace) && isTraceId(trace)) {
      // Loaded only here: a remote query needs no engine, a local one no gRPC client.
      const { remoteQuery } = await import('../../remote/query.js');
      answer = await remoteQuery(trace, spec, flags, progress.show);
    } else {
      if (trace && !existsSync(trace)) throw new UserError(`${trace}: no such trace directory`);
      const { answerQuery } = await import('../../trace/query.js');
      answer = await answerQuery(resolveTraceDir(trace), spec, { onProgress: progress.show });
    }
  } finally {
    progress.done();
  }
  print(flags.json ? `${JSON.stringify(answer, null, 2)}\n` : render(answer));
}

export function registerQuery(program: Command): void {
  const cmd = program
    .command('query')
    .description('ask a whole recording at once: every call of a function, every write to memory, every syscall')
    .argument('[trace]', 'trace directory, or the id of a trace on the server (default: the latest recording)')
    .argument('<what...>', 'calls FUNCTION | writes ADDRESS[:LEN] | syscalls [NAME]')
    .option('--json', 'print JSON ({query, kind, subject, events, rows})')
    .addHelpText(
      'after',
      '\nEach answer carries its moment: `rewind debug TRACE --moment M` starts gdb stopped there.\n' +
        'calls FUNCTION     every call, with its arguments by the debug info (else rdi..r9 raw);\n' +
        '                   FUNCTION is a name from the symbol table (Rust: crate::name or name) or 0xADDR\n' +
        'writes WHAT[:LEN]  every write to LEN bytes (at most 32) at 0xADDR or of a global variable\n' +
        '                   (default: its size), with the old and new value, the writing instruction and line\n' +
        'syscalls [NAME]    every syscall (or those of that name), with its arguments and result\n' +
        'See docs/queries.md.',
    )
    .action((trace: string | undefined, what: string[], flags: QueryFlags) => query(trace === undefined ? what : [trace, ...what], flags));
  addClientOptions(cmd);
}
