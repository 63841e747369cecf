import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';

/**
 * Threads with read-only connections of their own to the SQLite catalogue, for the queries whose
 * work has no small bound (listing, full-text search, totals): those never run on the server's
 * event loop, so one heavy search does not stall every other call. Each thread runs one query at
 * a time, in order.
 *
 * The threads run a small plain-JS program (below), so the same code runs from the TypeScript
 * sources under the tests and from dist/. A listing reads its rows one at a time and stops at a
 * budget of text bytes (`maxBytes`), as the catalogue did on the main thread.
 */
const THREAD_SOURCE = `
'use strict';
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { readonly: true, fileMustExist: true });
db.pragma('busy_timeout = 5000');
const statements = new Map();
const BYTES = ['argv', 'labels', 'exe', 'cwd', 'host', 'user'];
parentPort.on('message', (m) => {
  try {
    let st = statements.get(m.sql);
    if (!st) {
      st = db.prepare(m.sql);
      statements.set(m.sql, st);
    }
    const rows = [];
    let bytes = 0;
    let truncated = false;
    for (const r of st.iterate(...m.args)) {
      if (m.maxBytes !== null) {
        bytes += 100;
        for (const k of BYTES) if (typeof r[k] === 'string') bytes += r[k].length;
        if (rows.length > 0 && bytes > m.maxBytes) {
          truncated = true;
          break;
        }
      }
      rows.push(r);
    }
    parentPort.postMessage({ seq: m.seq, rows, truncated });
  } catch (e) {
    parentPort.postMessage({ seq: m.seq, error: String(e && e.message), code: e && e.code });
  }
});
`;

interface Reply {
  seq: number;
  rows?: unknown[];
  truncated?: boolean;
  error?: string;
  code?: string;
}

interface Pending {
  resolve: (r: { rows: unknown[]; truncated: boolean }) => void;
  reject: (e: Error) => void;
}

class ReaderThread {
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  dead: Error | undefined;

  constructor(file: string, driver: string) {
    this.worker = new Worker(THREAD_SOURCE, { eval: true, workerData: { file, driver } });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.seq);
      if (!p) return;
      this.pending.delete(r.seq);
      // Rebuilt as the driver's own error, so the RPC layer maps SQLITE_BUSY etc. as for the main connection.
      if (r.error !== undefined) p.reject(r.code ? new Database.SqliteError(r.error, r.code) : new Error(r.error));
      else p.resolve({ rows: r.rows ?? [], truncated: r.truncated ?? false });
    });
    this.worker.on('error', (err) => this.failAll(err));
    this.worker.on('exit', (code) => this.failAll(new Error(`a catalogue reader thread exited (${code})`)));
  }

  get load(): number {
    return this.pending.size;
  }

  query(sql: string, args: unknown[], maxBytes: number | null): Promise<{ rows: unknown[]; truncated: boolean }> {
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.worker.postMessage({ seq, sql, args, maxBytes });
    });
  }

  private failAll(err: Error): void {
    this.dead ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }
}

/** Which thread a query runs on: full-text searches have one of their own, so a flood of heavy searches delays only other searches. */
export type Lane = 'search' | 'other';

export class SqliteReaders {
  private readonly threads: Record<Lane, ReaderThread>;
  private readonly driver = createRequire(import.meta.url).resolve('better-sqlite3');

  constructor(private readonly file: string) {
    this.threads = { search: new ReaderThread(file, this.driver), other: new ReaderThread(file, this.driver) };
  }

  /** Runs a read-only query on its lane's thread; stops reading rows past `maxBytes` of text. */
  async all<T>(sql: string, args: unknown[], lane: Lane, maxBytes?: number): Promise<{ rows: T[]; truncated: boolean }> {
    // A thread that died (out of memory, say) is replaced; its queries failed with it.
    if (this.threads[lane].dead) this.threads[lane] = new ReaderThread(this.file, this.driver);
    const r = await this.threads[lane].query(sql, args, maxBytes === undefined || maxBytes === Infinity ? null : maxBytes);
    return { rows: r.rows as T[], truncated: r.truncated };
  }

  async close(): Promise<void> {
    await Promise.all(Object.values(this.threads).map((t) => t.close()));
  }
}
