import { TokenServiceService } from '../../gen/rewind/auth/v1/auth.js';
import type { Catalog, RoleName, TokenRow } from '../catalog/catalog.js';
import { invalidArgument } from '../errors.js';
import { unary, type AuthDeps } from '../rpc.js';
import {
  Role,
  type CreateTokenRequest,
  type CreateTokenResponse,
  type ListTokensRequest,
  type ListTokensResponse,
  type RevokeTokenRequest,
  type RevokeTokenResponse,
  type Token,
  type TokenServiceServer,
  type WhoAmIRequest,
  type WhoAmIResponse,
} from '../../gen/rewind/auth/v1/auth.js';

export interface TokenDeps extends AuthDeps {
  catalog: Catalog;
}

const ROLE_OF: Record<RoleName, Role> = { agent: Role.ROLE_AGENT, reader: Role.ROLE_READER, admin: Role.ROLE_ADMIN };

function roleName(r: Role): RoleName {
  switch (r) {
    case Role.ROLE_AGENT:
      return 'agent';
    case Role.ROLE_READER:
      return 'reader';
    case Role.ROLE_ADMIN:
      return 'admin';
    default:
      throw invalidArgument('role must be agent, reader or admin');
  }
}

function toToken(t: TokenRow): Token {
  return {
    id: t.id,
    name: t.name,
    role: ROLE_OF[t.role],
    createdAt: new Date(t.createdMs),
    revokedAt: t.revokedMs === null ? undefined : new Date(t.revokedMs),
  };
}

export function tokenService(deps: TokenDeps): TokenServiceServer {
  const { catalog } = deps;
  return {
    createToken: unary<CreateTokenRequest, CreateTokenResponse>(deps, TokenServiceService.createToken, async (req, ctx) => {
      const role = roleName(req.role);
      if (req.name.length > 128) throw invalidArgument('token name is longer than 128 characters');
      const { token, secret } = await catalog.tokens.create(role, req.name);
      ctx.log.info({ token: token.id, name: token.name, role, by: ctx.token.name }, 'token created');
      return { token: toToken(token), secret };
    }),
    revokeToken: unary<RevokeTokenRequest, RevokeTokenResponse>(deps, TokenServiceService.revokeToken, async (req, ctx) => {
      if (!req.token) throw invalidArgument('which token? give its id, name or secret');
      const t = await catalog.tokens.revoke(req.token);
      ctx.log.info({ token: t.id, name: t.name, by: ctx.token.name }, 'token revoked');
      return { token: toToken(t) };
    }),
    listTokens: unary<ListTokensRequest, ListTokensResponse>(deps, TokenServiceService.listTokens, async () => ({
      tokens: (await catalog.tokens.list()).map(toToken),
    })),
    whoAmI: unary<WhoAmIRequest, WhoAmIResponse>(deps, TokenServiceService.whoAmI, (_req, ctx) => ({ token: toToken(ctx.token) })),
  };
}
