import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { print } from '../output.js';
import { exitText } from './ls.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import { formatBytes, formatDuration } from '../../trace/format.js';
import { manifestFromMessage } from '../../trace/manifest_message.js';
import { UserError } from '../../trace/user_error.js';

interface ShowFlags extends ClientFlags {
  json?: boolean;
}

export function registerShow(program: Command): void {
  addClientOptions(
    program
      .command('show')
      .description('print a trace stored on the server: its whole manifest and the processes in it')
      .argument('<id>', 'trace id')
      .option('--json', 'print the manifest as JSON, with the server\'s facts under "server"'),
  ).action(async (id: string, flags: ShowFlags) => {
    const config = resolveConfig(flags);
    const { call, withClients } = await import('../../remote/client.js');
    const res = await withClients(config, (c) => call(c, c.catalog.getTrace.bind(c.catalog), { id }));
    const s = res.summary!;
    if (!res.manifest) throw new UserError(`the server sent trace ${id} without its manifest`);
    const m = manifestFromMessage(res.manifest, 'server');
    if (flags.json) {
      // The manifest as stored, every field of it, in the shape of manifest.json.
      const server = { labels: s.labels, sizeBytes: Number(s.sizeBytes), uploadedAt: s.uploadedAt?.toISOString() ?? null };
      print(`${JSON.stringify({ ...m, server }, null, 2)}\n`);
      return;
    }
    const lines: [string, string][] = [
      ['id', s.id],
      ['command', s.argv.join(' ')],
      ['exe', s.exe],
      ['cwd', m.cwd],
      ['user', s.user],
      ['host', `${s.host} (${m.host.kernel || '?'}, ${m.host.arch || '?'})`],
      ['cpu', `${m.host.cpu.model || '?'} [${m.host.cpu.vendor || '?'}], ${m.host.cpu.flags.length} flags`],
      ['started', m.startTime],
      ['ended', m.endTime],
      ['duration', formatDuration(s.durationMs)],
      ['exit', exitText(s)],
      ['complete', s.complete ? 'yes' : 'no: the recording was cut short; replay stops where its events end'],
      ['processes', `${m.counts.tasks} task(s)`],
      ['events', String(m.counts.events)],
      ['syscalls', String(m.counts.syscalls)],
      ['syscall buffer', m.syscallBuffer ? 'yes' : 'no'],
      ['size', `${formatBytes(Number(s.sizeBytes))} in ${new Set(res.blobs.map((b) => b.sha256)).size} blob(s)`],
      ['labels', Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ') || '-'],
      ['uploaded', s.uploadedAt?.toISOString() ?? ''],
    ];
    const w = Math.max(...lines.map(([k]) => k.length));
    let out = lines.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n';
    if (m.env.length > 0) out += `env\n${m.env.map((e) => `  ${e}`).join('\n')}\n`;
    if (m.processes.length > 0) {
      out += 'process tree\n';
      for (const p of m.processes) {
        const execs = p.execs.map((e) => e.argv.join(' ')).join(' -> ') || '(no exec)';
        out += `  pid ${String(p.pid).padEnd(7)} parent ${String(p.parent).padEnd(7)} ${execs}\n`;
      }
    }
    out += 'blobs\n';
    for (const b of res.blobs) out += `  ${b.sha256.slice(0, 16)}  ${b.role.padEnd(8)}  ${formatBytes(Number(b.size)).padStart(9)}  ${b.path}\n`;
    print(out);
  });
}
