import path from 'node:path';
import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import { dataHome } from '../../trace/trace_dir.js';
import { UserError } from '../../trace/user_error.js';

interface AgentFlags extends ClientFlags {
  spool?: string;
  hostname?: string;
  keep?: boolean;
  logLevel?: string;
}

export function registerAgent(program: Command): void {
  addClientOptions(
    program
      .command('agent')
      .description('run the host agent: register, heartbeat, run recording jobs, upload the spool (agent token)')
      .option('--spool <dir>', 'directory of finished traces to upload (default ~/.local/share/rewind/spool)')
      .option('--hostname <name>', 'name to register this host under (default: the system hostname)')
      .option('--keep', 'keep uploaded traces in SPOOL/uploaded instead of deleting them')
      .option('--log-level <level>', 'log level: fatal, error, warn, info, debug, trace or silent (env REWIND_LOG; default info)'),
  ).action(async (flags: AgentFlags) => {
    const config = resolveConfig(flags);
    if (!config.token) throw new UserError('the agent needs a token: pass --token or set REWIND_TOKEN (rewind token create --role agent)');
    const { Agent } = await import('../../agent/agent.js');
    const { userErrorFrom } = await import('../../remote/client.js');
    const { jsonLogger, logLevel } = await import('../../trace/log.js');
    const log = jsonLogger('rewind-agent', logLevel(flags.logLevel), 2);
    const agent = new Agent({ config, spoolDir: path.resolve(flags.spool ?? path.join(dataHome(), 'spool')), hostname: flags.hostname, keep: flags.keep, log });
    const stop = (): void => agent.stop();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    try {
      await agent.run();
    } catch (err) {
      throw userErrorFrom(err, config.server);
    }
  });
}
