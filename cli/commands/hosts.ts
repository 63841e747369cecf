import type { Command } from 'commander';
import { call, withClients } from '../client/client.js';
import { addClientOptions, resolveConfig, type ClientFlags } from '../client/config.js';
import { table } from '../client/format.js';

export function registerHosts(program: Command): void {
  addClientOptions(program.command('hosts').description('list hosts whose agent registered, with their last heartbeat').option('--json', 'print JSON')).action(
    async (flags: ClientFlags & { json?: boolean }) => {
      const res = await withClients(resolveConfig(flags), (c) => call(c, c.agent.listHosts.bind(c.agent), {}));
      if (flags.json) {
        const out = res.hosts.map((h) => ({
          agentId: h.agentId,
          ...h.facts,
          registeredAt: h.registeredAt?.toISOString(),
          lastHeartbeat: h.lastHeartbeat?.toISOString(),
          online: h.online,
        }));
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      if (res.hosts.length === 0) {
        process.stderr.write('no hosts\n');
        return;
      }
      const now = Date.now();
      process.stdout.write(
        table(
          ['HOST', 'STATE', 'LAST HEARTBEAT', 'KERNEL', 'CPU', 'VERSION'],
          res.hosts.map((h) => [
            h.facts?.hostname ?? '',
            h.online ? 'online' : 'offline',
            h.lastHeartbeat ? `${Math.round((now - h.lastHeartbeat.getTime()) / 1000)}s ago` : '-',
            h.facts?.kernel ?? '',
            h.facts?.cpuModel ?? '',
            h.facts?.rewindVersion ?? '',
          ]),
        ),
      );
    },
  );
}
