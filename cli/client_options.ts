import type { Command } from 'commander';
import { DEFAULT_SERVER } from '../remote/config.js';

/** Adds --server/--token/--tls/--ca to a command that talks to a server. */
export function addClientOptions(cmd: Command): Command {
  return cmd
    .option('--server <host:port>', `server address, or IP:port,IP:port… of servers tried in turn (env REWIND_SERVER, config file; default ${DEFAULT_SERVER})`)
    .option('--token <token>', 'API token (env REWIND_TOKEN, config file)')
    .option('--tls', 'connect with TLS (implied by https:// or --ca)')
    .option('--ca <file>', 'PEM CA certificate to verify the server with');
}
