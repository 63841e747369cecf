import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import { formatBytes } from '../../trace/format.js';

export function registerRm(program: Command): void {
  addClientOptions(
    program
      .command('rm')
      .description('delete traces from the server (blobs no other trace uses are removed too; admin)')
      .argument('<ids...>', 'trace ids'),
  ).action(async (ids: string[], flags: ClientFlags) => {
    const config = resolveConfig(flags);
    const { call, withClients } = await import('../../remote/client.js');
    await withClients(config, async (c) => {
      for (const id of ids) {
        const res = await call(c, c.catalog.deleteTrace.bind(c.catalog), { id });
        process.stderr.write(`deleted ${id} (${res.blobsRemoved} blob(s), ${formatBytes(Number(res.bytesFreed))} freed)\n`);
      }
    });
  });
}
