// Issue 11, finding 3: a heavy full-text search ran on the event loop and stalled every RPC of
// every client. The SQLite catalogue now runs listing and search on reader threads: while heavy
// searches run, the server keeps answering other calls.
import { createHash, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import type { NewTrace } from '../../server/catalog/catalog.js';
import { parseManifest } from '../../trace/manifest.js';
import { startTestServer, type TestServer } from './helpers.js';

const WORDS = 'abcdefghijklmnop'.split('');
let ts: TestServer;
let reader: Clients;

beforeAll(async () => {
  ts = await startTestServer();
  reader = ts.client(await ts.token('reader'));
  // 4,000 traces of 100 words each: every one-letter prefix below matches 25,000 words.
  const blob = createHash('sha256').update('events').digest('hex');
  await ts.server.catalog.blobs.add(blob, 10);
  for (let start = 0; start < 4000; start += 1000) {
    const batch: NewTrace[] = [];
    for (let i = start; i < start + 1000; i++) {
      const argv = ['prog', ...Array.from({ length: 100 }, (_, k) => `${WORDS[(i + k) % 16]}${(i * 7 + k) % 1000}`)];
      const json = JSON.stringify({
        format: 'rewind-trace', version: 1, id: randomUUID(), argv, exe: '/usr/bin/prog', cwd: '/', user: 'u', host: { hostname: 'h' },
        startTime: new Date(1.7e12 + i * 1000).toISOString(), durationMs: 1, exit: null, complete: true,
        blobs: [{ sha256: blob, size: 10, role: 'events' }],
      });
      batch.push({ manifest: parseManifest(json), manifestJson: json, labels: {}, tokenId: 'load' });
    }
    await ts.server.catalog.traces.commitMany(batch);
  }
}, 300_000);
afterAll(async () => {
  await ts?.close();
});

describe('finding 3: a heavy search does not stall the server', () => {
  it('other calls, listings among them, are answered while searches of 16 prefix words run', async () => {
    const search = ListTracesRequest.fromPartial({ search: WORDS.join(' '), limit: 50 });
    let searching = true;
    const t0 = performance.now();
    // Four at once: one running on the search thread, three queued behind it.
    const searches = Promise.all(Array.from({ length: 4 }, () => call(reader, reader.catalog.listTraces.bind(reader.catalog), search, 120_000))).finally(
      () => (searching = false),
    );
    let answered = 0;
    let slowest = 0;
    while (searching) {
      const t = performance.now();
      await call(reader, reader.tokens.whoAmI.bind(reader.tokens), {});
      await call(reader, reader.catalog.listTraces.bind(reader.catalog), ListTracesRequest.fromPartial({ limit: 1 }));
      if (searching) {
        answered++;
        slowest = Math.max(slowest, performance.now() - t);
      }
    }
    const pages = await searches;
    const took = performance.now() - t0;
    for (const p of pages) expect(p.traces.length).toBe(50);
    // On the event loop, not one call would have been answered before the searches ended.
    expect(answered, `the searches took ${took.toFixed(0)} ms; the slowest other pair of calls ${slowest.toFixed(0)} ms`).toBeGreaterThanOrEqual(3);
  });
});
