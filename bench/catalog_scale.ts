// `ls` at scale (issue 15, "Performance"): p50/p99 of filtered ListTraces over gRPC against a
// `rewind server` process with N synthetic traces (default 1,000,000) in its catalogue, in SQLite
// and, when a PostgreSQL server is given, in PostgreSQL (a database of its own, dropped after).
// Prints the load time of each as well: loading is part of what was measured.
//
// Usage: node dist/bench/catalog_scale.js [N] [--postgres URL] [--sqlite-only|--postgres-only]
//   URL defaults to REWIND_BENCH_POSTGRES or REWIND_TEST_POSTGRES (`.ci/postgres start DIR` prints one).
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { lsBench } from '../server/bench/service.js';

const args = process.argv.slice(2);
const n = Number(args.find((a) => /^\d+$/.test(a)) ?? 1_000_000);
const flag = args.indexOf('--postgres');
const url = flag >= 0 ? args[flag + 1] : process.env.REWIND_BENCH_POSTGRES || process.env.REWIND_TEST_POSTGRES;
const print = (l: string): void => void process.stdout.write(`${l}\n`);

async function withDatabase(base: string, fn: (url: string) => Promise<void>): Promise<void> {
  const name = `rewind_bench_${randomBytes(4).toString('hex')}`;
  const admin = async (sql: string): Promise<void> => {
    const c = new pg.Client({ connectionString: base });
    await c.connect();
    try {
      await c.query(sql);
    } finally {
      await c.end();
    }
  };
  await admin(`CREATE DATABASE ${name}`);
  try {
    const u = new URL(base);
    u.pathname = `/${name}`;
    await fn(u.toString());
  } finally {
    await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  }
}

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-catalog-scale-'));
try {
  if (!args.includes('--postgres-only')) await lsBench(work, n, print);
  if (args.includes('--sqlite-only')) {
    // nothing more
  } else if (url) {
    await withDatabase(url, (u) => lsBench(work, n, print, u));
  } else {
    print('postgres: skipped (give --postgres URL, or set REWIND_BENCH_POSTGRES)');
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
