// The PostgreSQL server the catalogue suites run against: REWIND_TEST_POSTGRES names it (a URL to
// a database the tests may create databases from; `.ci/postgres start DIR` starts one and prints
// it). Without it the suites are skipped with one line saying so, except in CI (`CI` set), where
// they fail: CI must never skip them.
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export const PG_URL = process.env.REWIND_TEST_POSTGRES || undefined;

const HOWTO = 'PostgreSQL catalogue tests skipped: set REWIND_TEST_POSTGRES=postgres://… (`.ci/postgres start /tmp/rewind-pg` starts a server and prints its URL)';

let told = false;

/** True when the PostgreSQL suites can run; throws in CI when they cannot; otherwise says so once. */
export function postgresAvailable(): boolean {
  if (PG_URL) return true;
  if (process.env.CI) throw new Error('CI must run the PostgreSQL catalogue tests, but REWIND_TEST_POSTGRES is not set (.ci/run sets it)');
  if (!told) process.stderr.write(`${HOWTO}\n`);
  told = true;
  return false;
}

export interface TestDatabase {
  url: string;
  drop(): Promise<void>;
}

/** A new, empty database on the test server (each suite its own, so schema migrations run from nothing). */
export async function freshDatabase(): Promise<TestDatabase> {
  const base = new URL(PG_URL!);
  const name = `rewind_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      try {
        await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await c.end();
      }
    },
  };
}
