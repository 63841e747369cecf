import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { table } from '../format.js';
import { print } from '../output.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import { UserError } from '../../trace/user_error.js';
import type { Role, Token } from '../../gen/rewind/auth/v1/auth.js';

/** The API's roles by name; loaded with the client, which `rewind --help` does not need. */
async function roles(): Promise<Record<string, Role>> {
  const { Role } = await import('../../gen/rewind/auth/v1/auth.js');
  return { agent: Role.ROLE_AGENT, reader: Role.ROLE_READER, admin: Role.ROLE_ADMIN };
}

function roleName(all: Record<string, Role>, r: Role): string {
  return Object.keys(all).find((k) => all[k] === r) ?? '?';
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('manage API tokens (admin)');
  addClientOptions(
    token
      .command('create')
      .description('create a token and print its secret (shown only once)')
      .requiredOption('--role <role>', 'agent (uploads, jobs), reader (ls, show, replay) or admin (everything)')
      .option('--name <name>', 'a name to recognise it by'),
  ).action(async (flags: ClientFlags & { role: string; name?: string }) => {
    const all = await roles();
    const role = all[flags.role];
    if (role === undefined) throw new UserError(`bad role ${JSON.stringify(flags.role)}: use agent, reader or admin`);
    const { call, withClients } = await import('../../remote/client.js');
    const res = await withClients(resolveConfig(flags), (c) => call(c, c.tokens.createToken.bind(c.tokens), { role, name: flags.name ?? '' }));
    process.stderr.write(`created ${flags.role} token ${res.token!.name} (id ${res.token!.id})\n`);
    print(`${res.secret}\n`);
  });
  addClientOptions(token.command('revoke').description('revoke a token').argument('<token>', 'token id, name or secret')).action(
    async (ref: string, flags: ClientFlags) => {
      const { call, withClients } = await import('../../remote/client.js');
      const res = await withClients(resolveConfig(flags), (c) => call(c, c.tokens.revokeToken.bind(c.tokens), { token: ref }));
      process.stderr.write(`revoked token ${res.token!.name} (id ${res.token!.id})\n`);
    },
  );
  addClientOptions(token.command('ls').description('list tokens').option('--json', 'print JSON')).action(
    async (flags: ClientFlags & { json?: boolean }) => {
      const all = await roles();
      const { call, withClients } = await import('../../remote/client.js');
      const res = await withClients(resolveConfig(flags), (c) => call(c, c.tokens.listTokens.bind(c.tokens), {}));
      const json = (t: Token): Record<string, unknown> => ({
        id: t.id,
        name: t.name,
        role: roleName(all, t.role),
        createdAt: t.createdAt?.toISOString(),
        revokedAt: t.revokedAt?.toISOString() ?? null,
      });
      if (flags.json) {
        print(`${JSON.stringify(res.tokens.map(json), null, 2)}\n`);
        return;
      }
      print(
        table(
          ['ID', 'NAME', 'ROLE', 'CREATED', 'REVOKED'],
          res.tokens.map((t) => [t.id, t.name, roleName(all, t.role), t.createdAt?.toISOString() ?? '', t.revokedAt?.toISOString() ?? '-']),
        ),
      );
    },
  );
}
