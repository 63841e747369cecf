import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { collectLabel, parseTime, table } from '../format.js';
import { print } from '../output.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import { formatBytes, formatDuration } from '../../trace/format.js';
import { UserError } from '../../trace/user_error.js';
import type { TraceSummary } from '../../gen/rewind/catalog/v1/catalog.js';

interface LsFlags extends ClientFlags {
  host?: string;
  program?: string;
  exit?: string;
  failed?: boolean;
  signal?: string;
  since?: string;
  until?: string;
  label?: Record<string, string>;
  search?: string;
  limit?: string;
  json?: boolean;
}

export function summaryJson(t: TraceSummary): Record<string, unknown> {
  return {
    id: t.id,
    host: t.host,
    program: t.program,
    argv: t.argv,
    exe: t.exe,
    user: t.user,
    startTime: t.startTime?.toISOString() ?? null,
    durationMs: t.durationMs,
    exitStatus: t.exitStatus,
    signal: t.signal || null,
    sizeBytes: Number(t.sizeBytes),
    labels: t.labels,
    uploadedAt: t.uploadedAt?.toISOString() ?? null,
    complete: t.complete,
  };
}

export function exitText(t: TraceSummary): string {
  if (!t.complete && t.exitStatus < 0) return 'cut short';
  if (t.signal) return `${t.exitStatus} (${t.signal})`;
  return t.exitStatus < 0 ? '?' : String(t.exitStatus);
}

export function registerLs(program: Command): void {
  addClientOptions(
    program
      .command('ls')
      .description('list traces on the server, newest first')
      .option('--host <hostname>', 'recorded on this host')
      .option('--program <name>', 'program basename or executable path')
      .option('--exit <n>', 'exit status (shell style: 128+N for signal N)')
      .option('--failed', 'non-zero exit status or killed by a signal')
      .option('--signal <sig>', 'killed by this signal (SIGSEGV, SEGV or 11)')
      .option('--since <time>', 'started at or after (ISO time or age: 30m, 2h, 7d)')
      .option('--until <time>', 'started at or before')
      .option('--label <k=v>', 'has this label (repeatable)', collectLabel)
      .option('--search <text>', 'full-text search over argv, exe, host, cwd, user, labels')
      .option('--limit <n>', 'at most N traces (default 50)')
      .option('--json', 'print JSON (one array)'),
  ).action(async (flags: LsFlags) => {
    const config = resolveConfig(flags);
    const filters = [flags.exit !== undefined, Boolean(flags.failed), Boolean(flags.signal)].filter(Boolean).length;
    if (filters > 1) throw new UserError('use only one of --exit, --failed, --signal');
    let exitStatus: number | undefined;
    if (flags.exit !== undefined) {
      exitStatus = Number(flags.exit);
      if (!Number.isInteger(exitStatus)) throw new UserError(`--exit wants an integer, got ${JSON.stringify(flags.exit)}`);
    }
    let limit = 0;
    if (flags.limit !== undefined) {
      limit = Number(flags.limit);
      if (!Number.isInteger(limit) || limit <= 0 || limit > 10_000) throw new UserError('--limit must be between 1 and 10000');
    }
    const { call, withClients } = await import('../../remote/client.js');
    const { ListTracesRequest } = await import('../../gen/rewind/catalog/v1/catalog.js');
    const req = ListTracesRequest.fromPartial({
      host: flags.host,
      program: flags.program,
      exitStatus,
      failed: flags.failed,
      signal: flags.signal,
      since: flags.since ? parseTime(flags.since, '--since') : undefined,
      until: flags.until ? parseTime(flags.until, '--until') : undefined,
      labels: flags.label,
      search: flags.search,
      limit,
    });
    const res = await withClients(config, (c) => call(c, c.catalog.listTraces.bind(c.catalog), req));
    const last = res.traces[res.traces.length - 1]?.startTime;
    if (res.truncated && last) {
      process.stderr.write(`rewind: the page reached the server's size bound; for more: --until ${new Date(last.getTime() - 1).toISOString()}\n`);
    }
    if (flags.json) {
      print(`${JSON.stringify(res.traces.map(summaryJson), null, 2)}\n`);
      return;
    }
    if (res.traces.length === 0) {
      process.stderr.write('no traces\n');
      return;
    }
    const rows = res.traces.map((t) => [
      t.id,
      t.startTime ? t.startTime.toISOString().replace(/\.\d+Z$/, 'Z') : '',
      t.host,
      exitText(t),
      formatDuration(t.durationMs),
      formatBytes(Number(t.sizeBytes)),
      [t.program, ...t.argv.slice(1)].join(' '),
    ]);
    print(table(['ID', 'STARTED', 'HOST', 'EXIT', 'DURATION', 'SIZE', 'COMMAND'], rows));
  });
}
