// Tokens: who may call (docs/api.md, "Authentication"). Only a secret's hash is kept.
import { createHash, randomBytes } from 'node:crypto';
import type Database from 'better-sqlite3';
import { invalidArgument, notFound } from '../errors.js';
import type { RoleName, TokenRow } from './types.js';

export interface TokenStore {
  create(role: RoleName, name: string): { token: TokenRow; secret: string };
  /** The valid (not revoked) token with this secret. */
  forSecret(secret: string): TokenRow | undefined;
  /** Revokes by id, name or secret. */
  revoke(ref: string): TokenRow;
  list(): TokenRow[];
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

export class SqliteTokens implements TokenStore {
  constructor(private readonly db: Database.Database) {}

  create(role: RoleName, name: string): { token: TokenRow; secret: string } {
    const secret = `rwt_${randomBytes(32).toString('base64url')}`;
    const id = randomBytes(8).toString('hex');
    const createdMs = Date.now();
    const finalName = name || `${role}-${id.slice(0, 6)}`;
    this.db
      .prepare('INSERT INTO tokens (id, name, role, hash, created_ms) VALUES (?, ?, ?, ?, ?)')
      .run(id, finalName, role, hashSecret(secret), createdMs);
    return { token: { id, name: finalName, role, createdMs, revokedMs: null }, secret };
  }

  forSecret(secret: string): TokenRow | undefined {
    const r = this.db
      .prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens WHERE hash = ? AND revoked_ms IS NULL')
      .get(hashSecret(secret)) as { id: string; name: string; role: RoleName; created_ms: number; revoked_ms: null } | undefined;
    return r && { id: r.id, name: r.name, role: r.role, createdMs: r.created_ms, revokedMs: r.revoked_ms };
  }

  revoke(ref: string): TokenRow {
    const r = this.db
      .prepare('SELECT id FROM tokens WHERE id = ? OR name = ? OR hash = ?')
      .all(ref, ref, hashSecret(ref)) as { id: string }[];
    if (r.length === 0) throw notFound(`no token ${JSON.stringify(ref)}`);
    if (r.length > 1) throw invalidArgument(`${JSON.stringify(ref)} names several tokens; use the token id`);
    const id = r[0]!.id;
    this.db.prepare('UPDATE tokens SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ?').run(Date.now(), id);
    return this.list().find((t) => t.id === id)!;
  }

  list(): TokenRow[] {
    const rows = this.db
      .prepare('SELECT id, name, role, created_ms, revoked_ms FROM tokens ORDER BY created_ms')
      .all() as { id: string; name: string; role: RoleName; created_ms: number; revoked_ms: number | null }[];
    return rows.map((r) => ({ id: r.id, name: r.name, role: r.role, createdMs: r.created_ms, revokedMs: r.revoked_ms }));
  }
}
