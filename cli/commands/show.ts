import type { Command } from 'commander';
import { call, withClients } from '../client/client.js';
import { addClientOptions, resolveConfig, type ClientFlags } from '../client/config.js';
import { formatBytes, formatDuration } from '../client/format.js';
import { exitText } from './ls.js';

interface ShowFlags extends ClientFlags {
  json?: boolean;
}

type Obj = Record<string, unknown>;

export function registerShow(program: Command): void {
  addClientOptions(
    program
      .command('show')
      .description('print a trace stored on the server: its whole manifest and the processes in it')
      .argument('<id>', 'trace id')
      .option('--json', 'print the manifest as JSON, with the server\'s facts under "server"'),
  ).action(async (id: string, flags: ShowFlags) => {
    const config = resolveConfig(flags);
    const res = await withClients(config, (c) => call(c, c.catalog.getTrace.bind(c.catalog), { id }));
    const m = JSON.parse(res.manifestJson) as Obj;
    const s = res.summary!;
    if (flags.json) {
      const server = { labels: s.labels, sizeBytes: Number(s.sizeBytes), uploadedAt: s.uploadedAt?.toISOString() ?? null };
      process.stdout.write(`${JSON.stringify({ ...m, server }, null, 2)}\n`);
      return;
    }
    const host = (m.host ?? {}) as Obj;
    const cpu = (host.cpu ?? {}) as Obj;
    const counts = (m.counts ?? {}) as Obj;
    const lines: [string, string][] = [
      ['id', s.id],
      ['command', (s.argv ?? []).join(' ')],
      ['exe', s.exe],
      ['cwd', String(m.cwd ?? '')],
      ['user', s.user],
      ['host', `${s.host} (${String(host.kernel ?? '?')}, ${String(host.arch ?? '?')})`],
      ['cpu', `${String(cpu.model ?? '?')} [${String(cpu.vendor ?? '?')}], ${Array.isArray(cpu.flags) ? cpu.flags.length : 0} flags`],
      ['started', String(m.startTime ?? '')],
      ['ended', String(m.endTime ?? '')],
      ['duration', formatDuration(s.durationMs)],
      ['exit', exitText(s)],
      ['complete', s.complete ? 'yes' : 'no: the recording was cut short; replay stops where its events end'],
      ['processes', `${String(counts.tasks ?? '?')} task(s)`],
      ['events', String(counts.events ?? '?')],
      ['syscalls', String(counts.syscalls ?? '?')],
      ['size', `${formatBytes(Number(s.sizeBytes))} in ${new Set(res.blobs.map((b) => b.sha256)).size} blob(s)`],
      ['labels', Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '-'],
      ['uploaded', s.uploadedAt?.toISOString() ?? ''],
    ];
    const w = Math.max(...lines.map(([k]) => k.length));
    let out = lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
    if (Array.isArray(m.env)) out += `env\n${(m.env as string[]).map((e) => `  ${e}`).join('\n')}\n`;
    if (Array.isArray(m.processes) && m.processes.length > 0) {
      out += 'process tree\n';
      for (const p of m.processes as { pid?: number; parent?: number; execs?: { exe?: string; argv?: string[] }[] }[]) {
        const execs = (p.execs ?? []).map((e) => (e.argv ?? [e.exe ?? '?']).join(' ')).join(' -> ') || '(no exec)';
        out += `  pid ${String(p.pid ?? '?').padEnd(7)} parent ${String(p.parent ?? '?').padEnd(7)} ${execs}\n`;
      }
    }
    out += 'blobs\n';
    for (const b of res.blobs) out += `  ${b.sha256.slice(0, 16)}  ${b.role.padEnd(8)}  ${formatBytes(Number(b.size)).padStart(9)}  ${b.path}\n`;
    process.stdout.write(out);
  });
}
