// The web page's JSON layer (server/http/web_server.ts) over HTTP on loopback: the same tokens,
// roles, request bounds and errors as the gRPC side, static files only from the build, and the
// timeline drawn from a trace's events.
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pushTrace } from '../../remote/upload.js';
import { TimelineBuilder, TIMELINE_LIMITS } from '../../server/http/timeline.js';
import { OutputCollector } from '../../server/http/output.js';
import { makeTrace, startTestServer, tmpDir, type TestServer } from './helpers.js';
import { rewind, spawnServer } from './cli.js';

const CATALOG = 'rewind.catalog.v1.CatalogService';

let ts: TestServer;
let base: string;
let reader: string;
let ids: string[];

beforeAll(async () => {
  ts = await startTestServer({ http: '127.0.0.1:0' });
  base = `http://${ts.server.httpAddress!}`;
  reader = await ts.token('reader');
  const agent = ts.client(await ts.token('agent'));
  ids = [];
  for (const [i, spec] of [{ hostname: 'alpha', status: 0 }, { hostname: 'beta', status: 2 }, { hostname: 'beta', status: 139, signal: 'SIGSEGV' }].entries()) {
    const t = makeTrace({ ...spec, startTime: new Date(Date.UTC(2026, 0, 1 + i)).toISOString() });
    await pushTrace(agent, t.dir, { labels: { n: String(i) } });
    ids.push(t.id);
  }
});
afterAll(async () => {
  await ts.close();
});

async function post(method: string, body: unknown, token: string | null = reader): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${base}/api/${method}`, {
    method: 'POST',
    headers: token ? { authorization: `Bearer ${token}` } : {},
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('the JSON layer', () => {
  it('lists with the filters of rewind ls, newest first, in protobuf JSON', async () => {
    const all = await post(`${CATALOG}/ListTraces`, {});
    expect(all.status).toBe(200);
    const traces = all.json.traces as { id: string; startTime: string; sizeBytes: string }[];
    expect(traces.map((t) => t.id)).toEqual([...ids].reverse());
    expect(traces[0]!.startTime).toBe('2026-01-03T00:00:00.000Z');
    expect(typeof traces[0]!.sizeBytes).toBe('string'); // uint64 as protobuf's JSON mapping has it
    const failed = await post(`${CATALOG}/ListTraces`, { failed: true, host: 'beta' });
    expect((failed.json.traces as { id: string }[]).map((t) => t.id)).toEqual([ids[2], ids[1]]);
    const sig = await post(`${CATALOG}/ListTraces`, { signal: 'SEGV' });
    expect((sig.json.traces as { id: string }[]).map((t) => t.id)).toEqual([ids[2]]);
    const label = await post(`${CATALOG}/ListTraces`, { labels: { n: '1' } });
    expect((label.json.traces as { id: string }[]).map((t) => t.id)).toEqual([ids[1]]);
    const until = await post(`${CATALOG}/ListTraces`, { until: '2026-01-02T00:00:00.000Z', limit: 1 });
    expect((until.json.traces as { id: string }[]).map((t) => t.id)).toEqual([ids[1]]);
  });

  it("answers with the gRPC side's statuses and messages, as HTTP statuses", async () => {
    expect(await post(`${CATALOG}/ListTraces`, {}, null)).toEqual({ status: 401, json: { code: 'UNAUTHENTICATED', message: expect.stringContaining('no token given') } });
    expect((await post(`${CATALOG}/ListTraces`, {}, 'not-a-token')).status).toBe(401);
    const del = await post(`${CATALOG}/DeleteTrace`, { id: ids[0] });
    expect(del).toEqual({ status: 403, json: { code: 'PERMISSION_DENIED', message: 'DeleteTrace needs an admin token; this is a reader token' } });
    // An agent may upload but not read.
    expect((await post(`${CATALOG}/ListTraces`, {}, await ts.token('agent'))).status).toBe(403);
    expect((await post(`${CATALOG}/GetTrace`, { id: '00000000-0000-4000-8000-000000000000' })).json.code).toBe('NOT_FOUND');
    expect(await post(`${CATALOG}/GetTrace`, { id: 'x' })).toEqual({ status: 400, json: { code: 'INVALID_ARGUMENT', message: 'bad trace id "x": expected a UUID' } });
    expect((await post(`${CATALOG}/ListTraces`, { signal: 'SIGNOPE' })).json.message).toBe('unknown signal "SIGNOPE"');
    expect((await post(`${CATALOG}/ListTraces`, '{not json')).status).toBe(400);
    expect((await post(`${CATALOG}/ListTraces`, '[1]')).json.message).toContain('expected a JSON object');
    // The gRPC side's bound on a request (64 KiB for a listing), on its JSON.
    const big = await post(`${CATALOG}/ListTraces`, { search: 'x'.repeat(70_000) });
    expect(big.status).toBe(400);
    expect(big.json.message).toContain('takes at most 65536');
    // Only the methods the page needs: token management stays on gRPC.
    expect((await post('rewind.auth.v1.TokenService/CreateToken', { role: 'ROLE_ADMIN' }, ts.adminToken)).status).toBe(404);
    const get = await fetch(`${base}/api/${CATALOG}/ListTraces`, { headers: { authorization: `Bearer ${reader}` } });
    expect(get.status).toBe(501);
  });

  it('streams a refused replay as an HTTP error before any line', async () => {
    const r = await post('rewind.replay.v1.ReplayService/RunReplay', { traceId: '00000000-0000-4000-8000-000000000000' });
    expect(r).toEqual({ status: 404, json: { code: 'NOT_FOUND', message: 'no trace 00000000-0000-4000-8000-000000000000' } });
  });

  it('deletes with an admin token', async () => {
    const r = await post(`${CATALOG}/DeleteTrace`, { id: ids[0] }, ts.adminToken);
    expect(r.status).toBe(200);
    expect(r.json.blobsRemoved).toBe(2);
    expect((await post(`${CATALOG}/GetTrace`, { id: ids[0] })).status).toBe(404);
  });

  it('serves the built page with its security headers, and nothing else from disk', async () => {
    const page = await fetch(`${base}/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
    const html = await page.text();
    const script = /src="(\/assets\/[^"]+\.js)"/.exec(html)?.[1];
    expect(script, html).toBeDefined();
    const js = await fetch(`${base}${script!}`);
    expect(js.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    // A path that walks out of the build is a 404, whatever the client sends on the wire.
    // The URL parser resolves dot segments first: each of these names /package.json (not in the build) or /.
    for (const [p, want] of [['/../package.json', 404], ['/%2e%2e/package.json', 404], ['/assets/../../package.json', 404], ['/assets/%2e%2e/%2e%2e/package.json', 404], ['/index.html/..', 200]] as const) {
      const status = await new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: Number(ts.server.httpAddress!.split(':')[1]), path: p }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }).on('error', reject);
      });
      expect(status, p).toBe(want);
    }
  });
});

describe('rewind server --http', () => {
  it('serves the page at the address it logs, and refuses an address that is not HOST:PORT', async () => {
    const srv = await spawnServer(tmpDir('rewind-web-cli-'), '127.0.0.1:0', ['--http', '127.0.0.1:0']);
    try {
      const line = srv.logs.map((l) => JSON.parse(l) as { msg?: string; http?: string }).find((l) => l.msg === 'rewind server listening');
      expect(line?.http).toMatch(/^127\.0\.0\.1:\d+$/);
      const who = await fetch(`http://${line!.http!}/api/rewind.auth.v1.TokenService/WhoAmI`, { method: 'POST', headers: { authorization: `Bearer ${srv.adminToken}` }, body: '{}' });
      expect(await who.json()).toMatchObject({ token: { role: 'ROLE_ADMIN' } });
      expect((await fetch(`http://${line!.http!}/`)).status).toBe(200);
    } finally {
      await srv.stop();
    }
    const bad = await rewind(['server', '--data', tmpDir('rewind-web-cli-'), '--listen', '127.0.0.1:0', '--http', 'nope']);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toBe('rewind: --http nope: expected HOST:PORT\n');
  });
});

describe('the timeline', () => {
  it('has one lane per task, marks forks, execs, signals and exits, and stays bounded', () => {
    const b = new TimelineBuilder(1000);
    b.add({ index: 0, task: 10, kind: 'exec', text: 'exec of /bin/sh' });
    b.add({ index: 1, task: 10, kind: 'syscall', text: 'clone(0x1200011) = 11, new task 11' });
    b.add({ index: 2, task: 11, kind: 'run', text: 'run' });
    b.add({ index: 3, task: 11, kind: 'syscall', text: 'getpid() = 11' });
    b.add({ index: 4, task: 11, kind: 'signal', text: 'signal SIGUSR1' });
    b.add({ index: 5, task: 11, kind: 'exit', text: 'exit with wait status 0x0' });
    b.add({ index: 6, task: 10, kind: 'rdtsc', text: 'rdtsc' });
    const t = b.build(false);
    expect(t).toMatchObject({ events: 7, buckets: 7, bucketEvents: 1, moreTasks: 0, truncated: false });
    expect(t.lanes).toEqual([
      { task: 10, first: 0, last: 6, marks: { syscall: [], signal: [], fork: [[1, 1]], exec: [[0, 1]], exit: [] } },
      { task: 11, first: 2, last: 5, marks: { syscall: [[3, 1]], signal: [[4, 1]], fork: [], exec: [], exit: [[5, 1]] } },
    ]);

    const big = new TimelineBuilder(5000);
    for (let i = 0; i < 10_000 && big.wantsMore; i++) big.add({ index: i, task: i % 100, kind: 'syscall', text: 'getpid() = 1' });
    const bt = big.build(true);
    expect(bt.events).toBe(5000);
    expect(bt.lanes).toHaveLength(TIMELINE_LIMITS.lanes);
    expect(bt.moreTasks).toBe(100 - TIMELINE_LIMITS.lanes);
    expect(bt.buckets).toBeLessThanOrEqual(TIMELINE_LIMITS.buckets);
    const counted = bt.lanes.reduce((n, l) => n + l.marks.syscall.reduce((m, [, c]) => m + c, 0), 0);
    expect(counted).toBe(Math.ceil((5000 * TIMELINE_LIMITS.lanes) / 100));
  });
});

describe('the recorded output', () => {
  it('keeps each stream up to its bound, asks for no more once both are full, and says when replay ended otherwise', () => {
    const o = new OutputCollector(0, 8);
    expect(o.add(1, Buffer.from('hello '))).toBe(true);
    expect(o.add(2, Buffer.from('oops\n'))).toBe(true);
    expect(o.add(1, Buffer.from('world\n'))).toBe(true); // stdout full; stderr is not
    expect(o.add(2, Buffer.from('more than fits\n'))).toBe(false);
    const b = o.build();
    expect(b.exitStatus).toBeUndefined();
    expect(b.failed).toBeUndefined();
    expect(b.stdout).toEqual({ data: Buffer.from('hello wo').toString('base64'), bytes: 8, truncated: true });
    expect(b.stderr).toEqual({ data: Buffer.from('oops\nmor').toString('base64'), bytes: 8, truncated: true });

    const ended = new OutputCollector(3);
    ended.add(1, Buffer.from('x'));
    ended.exit(3);
    expect(ended.build()).toEqual({ stdout: { data: 'eA==', bytes: 1, truncated: false }, stderr: { data: '', bytes: 0, truncated: false }, exitStatus: 3 });
    const diverged = new OutputCollector(0);
    diverged.exit(125);
    expect(diverged.build().failed).toBe('the replay ended with status 125, the recording with 0');
    // A recording cut short has no status to compare with.
    const unknown = new OutputCollector(-1);
    unknown.exit(125);
    expect(unknown.build().failed).toBeUndefined();
  });

  it('is read only for a token that may read the trace', async () => {
    expect((await post('web/Output', { traceId: ids[1] }, null)).status).toBe(401);
    expect((await post('web/Output', { traceId: ids[1] }, await ts.token('agent'))).status).toBe(403);
    expect((await post('web/Output', { traceId: '00000000-0000-4000-8000-000000000000' })).json.code).toBe('NOT_FOUND');
    expect((await post('web/Output', { traceId: 'x' })).status).toBe(400);
  });
});
