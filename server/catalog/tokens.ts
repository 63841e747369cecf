// Tokens: who may call (docs/api.md, "Authentication"). Only a secret's hash is kept.
import { createHash, randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { invalidArgument, notFound } from '../errors.js';
import type { TokenStore } from './stores.js';
import type { RoleName, StoredToken, TokenRow } from './types.js';

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** A new token's secret and id, and the name it gets when none is given. */
export function newToken(role: RoleName, name: string): { secret: string; token: TokenRow } {
  const secret = `rwt_${randomBytes(32).toString('base64url')}`;
  const id = randomBytes(8).toString('hex');
  return { secret, token: { id, name: name || `${role}-${id.slice(0, 6)}`, role, createdMs: Date.now(), revokedMs: null } };
}

export interface RawToken {
  id: string;
  name: string;
  role: RoleName;
  created_ms: number;
  revoked_ms: number | null;
}

/** Inserts a StoredToken (both catalogues' SQL). */
export const ADD_STORED = 'INSERT INTO tokens (id, name, role, hash, created_ms, revoked_ms) VALUES (?, ?, ?, ?, ?, ?)';

export const toToken = (r: RawToken): TokenRow => ({ id: r.id, name: r.name, role: r.role, createdMs: r.created_ms, revokedMs: r.revoked_ms });

/** The one token a reference (id, name or secret) names. */
export function onlyToken(ref: string, ids: string[]): string {
  if (ids.length === 0) throw notFound(`no token ${JSON.stringify(ref)}`);
  if (ids.length > 1) throw invalidArgument(`${JSON.stringify(ref)} names several tokens; use the token id`);
  return ids[0]!;
}

export class SqliteTokens implements TokenStore {
  constructor(private readonly db: Database.Database) {}

  async create(role: RoleName, name: string): Promise<{ token: TokenRow; secret: string }> {
    const { secret, token } = newToken(role, name);
    this.db
      .prepare('INSERT INTO tokens (id, name, role, hash, created_ms) VALUES (?, ?, ?, ?, ?)')
      .run(token.id, token.name, role, hashSecret(secret), token.createdMs);
    return { token, secret };
  }

  async forSecret(secret: string): Promise<TokenRow | undefined> {
    const r = this.db
      .prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE hash = ? AND revoked_ms IS NULL')
      .get(hashSecret(secret)) as RawToken | undefined;
    return r && toToken(r);
  }

  async revoke(ref: string): Promise<TokenRow> {
    const rows = this.db.prepare('SELECT id FROM tokens WHERE id = ? OR name = ? OR hash = ?').all(ref, ref, hashSecret(ref)) as { id: string }[];
    const id = onlyToken(
      ref,
      rows.map((r) => r.id),
    );
    this.db.prepare('UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ?').run(Date.now(), id);
    return toToken(this.db.prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE id = ?').get(id) as RawToken);
  }

  // Tokens created in one millisecond are listed in the order they were created.
  async list(): Promise<TokenRow[]> {
    const rows = this.db.prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens ORDER BY created_ms, rowid').all() as RawToken[];
    return rows.map(toToken);
  }

  async addStored(tokens: StoredToken[]): Promise<number> {
    const add = this.db.prepare(`${ADD_STORED} ON CONFLICT DO NOTHING`);
    return this.db.transaction(() => tokens.reduce((n, t) => n + add.run(t.id, t.name, t.role, t.hash, t.createdMs, t.revokedMs).changes, 0)).immediate();
  }
}
