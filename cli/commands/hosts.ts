import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { table } from '../format.js';
import { print } from '../output.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';

export function registerHosts(program: Command): void {
  addClientOptions(program.command('hosts').description('list hosts whose agent registered, with their last heartbeat').option('--json', 'print JSON')).action(
    async (flags: ClientFlags & { json?: boolean }) => {
      const { call, withClients } = await import('../../remote/client.js');
      const res = await withClients(resolveConfig(flags), (c) => call(c, c.agent.listHosts.bind(c.agent), {}));
      if (flags.json) {
        const out = res.hosts.map((h) => ({
          agentId: h.agentId,
          ...h.facts,
          registeredAt: h.registeredAt?.toISOString(),
          lastHeartbeat: h.lastHeartbeat?.toISOString(),
          online: h.online,
        }));
        print(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      if (res.hosts.length === 0) {
        process.stderr.write('no hosts\n');
        return;
      }
      const now = Date.now();
      print(
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
