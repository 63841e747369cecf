import type { Command } from 'commander';
import { call, withClients } from '../client/client.js';
import { addClientOptions, resolveConfig, type ClientFlags } from '../client/config.js';
import { table } from '../client/format.js';
import { UserError } from '../user_error.js';
import { Role, type Token } from '../../gen/rewind/auth/v1/auth.js';

const ROLES: Record<string, Role> = { agent: Role.ROLE_AGENT, reader: Role.ROLE_READER, admin: Role.ROLE_ADMIN };

function roleName(r: Role): string {
  return Object.keys(ROLES).find((k) => ROLES[k] === r) ?? '?';
}

function tokenJson(t: Token): Record<string, unknown> {
  return { id: t.id, name: t.name, role: roleName(t.role), createdAt: t.createdAt?.toISOString(), revokedAt: t.revokedAt?.toISOString() ?? null };
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
    const role = ROLES[flags.role];
    if (role === undefined) throw new UserError(`bad role ${JSON.stringify(flags.role)}: use agent, reader or admin`);
    const res = await withClients(resolveConfig(flags), (c) =>
      call(c, c.tokens.createToken.bind(c.tokens), { role, name: flags.name ?? '' }),
    );
    process.stderr.write(`created ${flags.role} token ${res.token!.name} (id ${res.token!.id})\n`);
    process.stdout.write(`${res.secret}\n`);
  });
  addClientOptions(
    token.command('revoke').description('revoke a token').argument('<token>', 'token id, name or secret'),
  ).action(async (ref: string, flags: ClientFlags) => {
    const res = await withClients(resolveConfig(flags), (c) => call(c, c.tokens.revokeToken.bind(c.tokens), { token: ref }));
    process.stderr.write(`revoked token ${res.token!.name} (id ${res.token!.id})\n`);
  });
  addClientOptions(token.command('ls').description('list tokens').option('--json', 'print JSON')).action(
    async (flags: ClientFlags & { json?: boolean }) => {
      const res = await withClients(resolveConfig(flags), (c) => call(c, c.tokens.listTokens.bind(c.tokens), {}));
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(res.tokens.map(tokenJson), null, 2)}\n`);
        return;
      }
      process.stdout.write(
        table(
          ['ID', 'NAME', 'ROLE', 'CREATED', 'REVOKED'],
          res.tokens.map((t) => [t.id, t.name, roleName(t.role), t.createdAt?.toISOString() ?? '', t.revokedAt?.toISOString() ?? '-']),
        ),
      );
    },
  );
}
