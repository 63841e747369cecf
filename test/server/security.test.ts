// Issue 11's findings, each reproduced against a real server on loopback with real tokens, and
// the defence that holds it (docs/security.md, "How each defence is tested").
import Database from 'better-sqlite3';
import fs from 'node:fs';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest, ListTracesResponse } from '../../gen/rewind/catalog/v1/catalog.js';
import { makeTrace, startTestServer, type TestServer } from './helpers.js';

let ts: TestServer;
let agent: Clients;
let reader: Clients;

beforeAll(async () => {
  ts = await startTestServer();
  agent = ts.client(ts.token('agent'));
  reader = ts.client(ts.token('reader'));
});
afterAll(async () => {
  await ts.close();
});

async function failure(p: Promise<unknown>, what = 'the call'): Promise<{ code: number; details: string }> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e as { code: number; details: string },
  );
  expect(err, `${what} should have failed`).toBeDefined();
  return err!;
}

async function expectCode(p: Promise<unknown>, code: status, text?: RegExp, what?: string): Promise<void> {
  const err = await failure(p, what);
  expect(status[err.code], err.details).toBe(status[code]);
  if (text) expect(err.details).toMatch(text);
}

const manifestOf = (dir: string): string => fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8');
const prepare = (c: Clients, json: string): Promise<unknown> => call(c, c.upload.prepareUpload.bind(c.upload), { manifestJson: json });
const list = (c: Clients, req: Partial<ListTracesRequest> = {}) =>
  call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({ limit: 10_000, ...req }));

describe('finding 2: one upload cannot break the catalogue', () => {
  it('range-checks every manifest field at upload', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ exit: { status: 2147483648, code: null, signal: null } }, /exit\.status/],
      [{ exit: { status: 3, code: -1, signal: null } }, /exit\.code/],
      [{ exit: { status: 300, code: null, signal: null } }, /exit\.status/],
      [{ exit: { status: 139, code: null, signal: 'SIGNOPE' } }, /exit\.signal/],
      [{ startTime: '+275760-09-13T00:00:00.000Z' }, /startTime/],
      [{ durationMs: 1e300 }, /durationMs/],
      [{ counts: { events: 2 ** 60, tasks: 1, syscalls: 1, bytes: 1 } }, /counts\.events/],
      [{ argv: Array.from({ length: 300_000 }, () => 'x') }, /argv/],
      [{ exe: 'x'.repeat(70_000) }, /exe/],
      [{ host: { hostname: 'h'.repeat(5000) } }, /host\.hostname/],
      [{ env: ['A=' + 'v'.repeat(7 << 20)] }, /env/],
      [{ processes: [{ pid: -5, parent: 0, execs: [], threads: [] }] }, /processes\[0\]\.pid/],
      [{ blobs: [{ sha256: 'a'.repeat(64), size: 2 ** 53 - 1, role: 'events' }] }, /blobs\[0\]\.size/],
      [{ blobs: [{ sha256: 'a'.repeat(64), size: 1, role: 'r'.repeat(300) }] }, /blobs\[0\]\.role/],
    ];
    for (const [extra, field] of cases) {
      const t = makeTrace({ extra });
      await expectCode(prepare(agent, manifestOf(t.dir)), status.INVALID_ARGUMENT, field, JSON.stringify(extra).slice(0, 100));
    }
    // The limits are generous: a real recording's manifest passes (a long but sane argv too).
    const ok = makeTrace({ argv: ['prog', ...Array.from({ length: 1000 }, (_, i) => `--arg-${i}=${'y'.repeat(100)}`)] });
    expect((await pushTrace(agent, ok.dir)).created).toBe(true);
  });

  it('bounds labels: their number and their total size', async () => {
    const t = makeTrace();
    const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
    await expectCode(pushTrace(agent, t.dir, { labels: many, retries: 0 }), status.INVALID_ARGUMENT, /labels/);
  });

  it('bounds a list page in bytes, and says it is cut short', async () => {
    const ids: string[] = [];
    // Six traces of about 1.2 MB each (their argv), within the per-trace budget.
    for (let i = 0; i < 6; i++) {
      const t = makeTrace({ argv: ['bigargv', ...Array.from({ length: 300 }, () => 'z'.repeat(4000))], hostname: 'big-page' });
      ids.push((await pushTrace(agent, t.dir)).traceId);
    }
    const page = await list(reader, { host: 'big-page' });
    const bytes = ListTracesResponse.encode(page).finish().length;
    expect(page.traces.length).toBeGreaterThan(0);
    expect(page.traces.length).toBeLessThan(6);
    expect(bytes).toBeLessThan(5 << 20);
    expect(page.truncated).toBe(true);
    // The next page continues before the last one shown.
    const last = page.traces[page.traces.length - 1]!;
    const next = await list(reader, { host: 'big-page', until: new Date(last.startTime!.getTime() - 1) });
    expect(next.traces.length).toBeGreaterThan(0);
    expect(next.traces.map((x) => x.id)).not.toContain(last.id);
  });

  it('a bad trace already stored does not break listing', async () => {
    const t = makeTrace({ hostname: 'stored-bad' });
    await pushTrace(agent, t.dir);
    // As an older server would have let it in.
    const db = new Database(path.join(ts.dataDir, 'catalog.sqlite'));
    db.prepare('UPDATE traces SET exit_status = ?, start_ms = ?, duration_ms = ?, size_bytes = ?, argv = ? WHERE id = ?').run(
      2147483648,
      8.64e15 * 10,
      -1,
      -5,
      'not json',
      t.id,
    );
    db.close();
    const page = await list(reader, { host: 'stored-bad' });
    expect(page.traces.map((x) => x.id)).toEqual([t.id]);
    expect(page.traces[0]!.exitStatus).toBe(-1);
    const all = await list(reader);
    expect(all.traces.map((x) => x.id)).toContain(t.id);
    await call(reader, reader.catalog.getTrace.bind(reader.catalog), { id: t.id });
  });
});
