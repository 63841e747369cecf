// The web page in real headless Chromium against a real server (`--http`), on traces the suite
// records itself of small C programs: sign-in, the catalogue's filters, a trace's page (process
// tree, timeline), a remote replay streamed into the page, the debug command copied, and
// deletion for admins only. Screenshots at 1280x800 go to test-artifacts/web.
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { browserSuiteRuns, launchChromium, SCREENSHOTS } from '../support/browser.js';
import { compile, expectRecorded, record } from '../support/index.js';
import { rewind } from '../server/cli.js';
import { randomBytes } from 'node:crypto';
import { pushTrace } from '../../remote/upload.js';
import { makeTrace, startTestServer, type TestServer } from '../server/helpers.js';

/** Rounds the query program runs (calls of step, writes of counter). */
const ROUNDS = 5;

describe.skipIf(!browserSuiteRuns())('the web page in Chromium', () => {
  let srv: TestServer;
  let browser: Browser;
  let base: string;
  let reader: string;
  let treeId: string;
  let abortId: string;
  let queryId: string;
  let chattyId: string;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    srv = await startTestServer({ http: '127.0.0.1:0' });
    base = `http://${srv.server.httpAddress!}`;
    reader = await srv.token('reader');
    const agentEnv = { REWIND_SERVER: srv.address, REWIND_TOKEN: await srv.token('agent') };
    const push = async (exe: string, status: number, label: string, args: string[] = []): Promise<string> => {
      const rec = await record(exe, args);
      expectRecorded(rec, status);
      const p = await rewind(['push', rec.traceDir, '--label', `suite=web`, '--label', `case=${label}`], agentEnv);
      expect(p.status, p.stderr).toBe(0);
      return p.stdout.trim().split('\n').pop()!;
    };
    treeId = await push(compile('web_tree'), 3, 'tree');
    abortId = await push(compile('abort'), 134, 'abort');
    queryId = await push(compile('query_target'), 0, 'query', [String(ROUNDS)]);
    chattyId = await push(compile('web_chatty'), 0, 'chatty');
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await srv?.close();
  });

  async function newPage(): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    page.on('console', (m) => {
      if (m.type() === 'error') pageErrors.push(m.text());
    });
    page.on('pageerror', (e) => pageErrors.push(e.message));
    return { context, page };
  }

  async function signIn(page: Page, secret: string): Promise<void> {
    await page.goto(base);
    // The token field has the focus and its label; Enter signs in.
    await expect.poll(() => page.evaluate(() => document.activeElement?.id)).toBe('token');
    expect(await page.getByLabel('Token').count()).toBe(1);
    await page.keyboard.type(secret);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'signin.png') });
    await page.keyboard.press('Enter');
    await page.locator('#traces tr').first().waitFor();
  }

  const rows = (page: Page): Promise<string[]> => page.locator('#traces tr').allInnerTexts();

  /** The HTTP status of GetTrace for this trace, asked with an admin token. */
  const traceStatus = async (id: string): Promise<number> =>
    (await fetch(`${base}/api/rewind.catalog.v1.CatalogService/GetTrace`, { method: 'POST', headers: { authorization: `Bearer ${srv.adminToken}` }, body: JSON.stringify({ id }) })).status;

  it('signs in with a token and filters the catalogue', async () => {
    const { context, page } = await newPage();
    await signIn(page, reader);
    expect(await page.evaluate(() => sessionStorage.getItem('rewind.token'))).toBe(reader);
    // Newest first, in the order the suite pushed them.
    const all = await rows(page);
    expect(all).toHaveLength(4);
    ['web_chatty', 'query_target', 'abort', 'web_tree'].forEach((name, i) => expect(all[i]).toContain(name));
    await page.screenshot({ path: path.join(SCREENSHOTS, 'catalog.png') });

    // Keyboard: the filters in reading order, Enter applies them.
    await page.getByLabel('Host').focus();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('f-program');
    await page.keyboard.type('web_tree');
    await page.keyboard.press('Enter');
    await expect.poll(() => rows(page)).toHaveLength(1);
    expect((await rows(page))[0]).toContain('web_tree');

    await page.getByLabel('Program').fill('');
    await page.getByLabel('Exit').fill('SIGABRT');
    await page.getByLabel('Exit').press('Enter');
    await expect.poll(async () => (await rows(page)).join('|')).toMatch(/^[^|]*abort[^|]*SIGABRT/);
    expect(await rows(page)).toHaveLength(1);

    await page.getByLabel('Exit').fill('3');
    await page.getByLabel('Labels').fill('case=tree');
    await page.getByLabel('Labels').press('Enter');
    await expect.poll(async () => (await rows(page)).join('|')).toContain('web_tree');
    expect(await rows(page)).toHaveLength(1);

    await page.getByLabel('Exit').fill('');
    await page.getByLabel('Labels').fill('');
    await page.getByLabel('Text').fill('no-such-words');
    await page.getByLabel('Text').press('Enter');
    await expect.poll(() => page.locator('#catalog-status').innerText()).toBe('No traces match.');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'catalog-filtered.png') });
    await context.close();
  });

  /** Waits until the trace page has read the recorded output (or said why not). */
  const outputRead = (page: Page): Promise<void> => expect.poll(() => page.locator('#output-status').innerText(), { timeout: 60_000 }).not.toContain('Reading');

  it("shows a trace's process tree, timeline and recorded output, replays it into the page, and copies the debug command", async () => {
    const { context, page } = await newPage();
    await signIn(page, reader);
    await page.getByRole('link', { name: 'web_tree' }).click();
    await page.locator('#proctree').waitFor();
    const tree = await page.locator('#proctree').innerText();
    // Two processes, the child under its parent, each with its exec.
    const pids = [...tree.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    expect(pids, tree).toHaveLength(2);
    expect(tree).toContain(`parent ${pids[0]}`);
    expect(tree).toMatch(/exec .*web_tree child/);
    expect(await page.locator('#delete').count()).toBe(0);

    // The timeline: one lane per task, with the fork in the parent's lane and an exec in each.
    await page.locator('#timeline svg').waitFor({ timeout: 30_000 });
    const lanes = await page.locator('#timeline .lane-label').allTextContents();
    expect(lanes.sort()).toEqual(pids.map((p) => `task ${p}`).sort());
    expect(await page.locator('#timeline .m-fork').count()).toBe(1);
    expect(await page.locator('#timeline .m-exec').count()).toBe(2);
    expect(await page.locator('#timeline .m-exit').count()).toBeGreaterThanOrEqual(2);
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace.png') });

    // The recorded output, without asking for a replay: stdout and stderr, each in its order.
    await outputRead(page);
    expect(await page.locator('#output-status').innerText()).toBe('What the program wrote to its stdout and stderr.');
    const stdout = 'parent starts\nchild 2 says hello\nchild exited with 0\n';
    expect(await page.locator('#output-stdout').innerText()).toBe(stdout);
    expect(await page.locator('#output-stderr').innerText()).toBe('a line on stderr\n');
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace-full.png'), fullPage: true });

    // Replay on the server; its output streams in.
    await page.getByRole('button', { name: 'Replay here' }).click();
    await expect.poll(() => page.locator('#replay-status').innerText(), { timeout: 30_000 }).toBe('Replay ended with exit status 3');
    expect((await page.locator('#replay-output .stdout').allInnerTexts()).join('')).toBe(stdout);
    expect(await page.locator('#replay-output .stderr').innerText()).toBe('a line on stderr\n');
    await page.locator('#replay-output').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace-replayed.png') });

    await page.getByRole('button', { name: /Copy rewind debug/ }).click();
    await expect.poll(() => page.locator('#action-status').innerText()).toContain('Copied');
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(`rewind debug ${treeId}`);
    await context.close();
  });

  it('shows a reader no delete button and refuses its delete request; an admin deletes', async () => {
    const { context, page } = await newPage();
    await signIn(page, reader);
    await page.goto(`${base}/#/trace/${abortId}`);
    await page.locator('#proctree').waitFor();
    expect(await page.locator('#delete').count()).toBe(0);
    await outputRead(page);
    // The request a reader would make by hand is refused by the server, not just hidden.
    const refused = await page.evaluate(async (id) => {
      const r = await fetch('/api/rewind.catalog.v1.CatalogService/DeleteTrace', {
        method: 'POST',
        headers: { authorization: `Bearer ${sessionStorage.getItem('rewind.token')}` },
        body: JSON.stringify({ id }),
      });
      return { status: r.status, body: (await r.json()) as { code: string; message: string } };
    }, abortId);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('PERMISSION_DENIED');
    expect(refused.body.message).toContain('needs an admin token');
    expect(await traceStatus(abortId)).toBe(200);
    // Chromium logs the refused request itself; that one error is this test's own.
    expect(pageErrors.splice(0)).toEqual(['Failed to load resource: the server responded with a status of 403 (Forbidden)']);
    await context.close();

    const admin = await newPage();
    await signIn(admin.page, srv.adminToken);
    await admin.page.goto(`${base}/#/trace/${abortId}`);
    await admin.page.locator('#delete').waitFor();
    await outputRead(admin.page);
    await admin.page.screenshot({ path: path.join(SCREENSHOTS, 'trace-admin.png') });
    admin.page.once('dialog', (d) => void d.accept());
    await admin.page.locator('#delete').click();
    await expect.poll(() => rows(admin.page)).toHaveLength(3);
    expect(await traceStatus(abortId)).toBe(404);
    await admin.context.close();
    expect(pageErrors).toEqual([]);
  });

  it('asks the recording for every call and every write, each with the command that opens its moment', async () => {
    const { context, page } = await newPage();
    await signIn(page, reader);
    await page.goto(`${base}/#/trace/${queryId}`);
    await outputRead(page);
    // What the program printed of each call: the page's answers must say the same.
    const printed = [...(await page.locator('#output-stdout').innerText()).matchAll(/step n=(\d+) k=(\d+) c=(\w) d=([\d.]+) counter=(\d+)/g)];
    expect(printed).toHaveLength(ROUNDS);

    // Keyboard only: the kind, the function, Enter.
    await page.locator('#q-kind').focus();
    await page.keyboard.press('Tab');
    await page.keyboard.type('step');
    await page.keyboard.press('Enter');
    await expect.poll(() => page.locator('#query-status').innerText(), { timeout: 120_000 }).toMatch(new RegExp(`^${ROUNDS} calls of step in \\d+ events$`));
    const calls = await page.locator('#query-results tbody tr').allInnerTexts();
    expect(calls).toHaveLength(ROUNDS);
    calls.forEach((row, i) => expect(row).toMatch(new RegExp(`n=${printed[i]![1]}, k=${printed[i]![2]}, c=\\d+ '${printed[i]![3]}', d=${printed[i]![4]}, s=0x`)));
    const first = page.locator('#query-results .copy-moment').first();
    const command = (await first.getAttribute('data-command'))!;
    expect(command).toMatch(new RegExp(`^rewind debug ${queryId} --moment \\d+\\.\\d+\\.b[0-9a-f]+\\.1$`));
    expect(command).toContain((await page.locator('#query-results .moment code').first().innerText()).trim());
    await first.click();
    await expect.poll(() => page.locator('#query-copied').innerText()).toBe(`Copied “${command}”`);
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(command);
    await page.locator('#query-results').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace-query-calls.png') });

    // Every write to `counter`: the new values are the counters the program printed.
    await page.locator('#q-kind').selectOption('writes');
    await page.locator('#q-subject').fill('counter');
    await page.locator('#q-run').click();
    await expect.poll(() => page.locator('#query-status').innerText(), { timeout: 120_000 }).toMatch(new RegExp(`^${ROUNDS} writes of counter`));
    const news = await page.locator('#query-results tbody tr td:nth-child(4)').allInnerTexts();
    expect(news).toEqual(printed.map((p) => p[5]!));
    await page.locator('#query-results').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace-query-writes.png') });

    // A query the server refuses says why.
    await page.locator('#q-kind').selectOption('calls');
    await page.locator('#q-subject').fill('no_such_function');
    await page.locator('#q-run').click();
    await expect.poll(() => page.locator('#query-status').innerText(), { timeout: 60_000 }).toMatch(/^Query failed: .*no_such_function/);
    await context.close();
    expect(pageErrors).toEqual([]);
  }, 300_000);

  it('keeps the first 256 KiB of a long stdout and says it cut the rest', async () => {
    const { context, page } = await newPage();
    await signIn(page, reader);
    await page.goto(`${base}/#/trace/${chattyId}`);
    await outputRead(page);
    expect(await page.locator('#output-status').innerText()).toBe(`Truncated: only the first 262,144 bytes of stdout are shown (rewind replay ${chattyId} prints all of it).`);
    // The program's lines in order from the first, cut at the bound.
    const all = Array.from({ length: 20_000 }, (_, i) => `line ${String(i).padStart(5, '0')} of the chatty program\n`).join('');
    expect(await page.locator('#output-stdout').innerText()).toBe(`${all.slice(0, 262_144)}\n… truncated after 262,144 bytes`);
    // stderr came after it: the replay went on to the end for it.
    expect(await page.locator('#output-stderr').innerText()).toBe('chatty done\n');
    await page.locator('#output-stdout').scrollIntoViewIfNeeded();
    await page.screenshot({ path: path.join(SCREENSHOTS, 'trace-output-truncated.png') });
    await context.close();
    expect(pageErrors).toEqual([]);
  });

  it('pages through the catalogue newest first, with runs that started in the same millisecond', async () => {
    // A server of its own: 57 small synthetic traces, the last 12 sharing one start time, 5 of
    // which end the first page: the next must go on after those, not show them again.
    const many = await startTestServer({ http: '127.0.0.1:0' });
    try {
      const agent = many.client(await many.token('agent'));
      const starts = Array.from({ length: 57 }, (_, i) => Date.UTC(2026, 0, 1, 0, 0, i < 45 ? 100 - i : 55));
      for (const ms of starts) await pushTrace(agent, makeTrace({ startTime: new Date(ms).toISOString(), blobs: [{ data: randomBytes(64), role: 'events' }] }).dir);
      const { context, page } = await newPage();
      await page.goto(`http://${many.server.httpAddress!}`);
      await page.getByLabel('Token').fill(await many.token('reader'));
      await page.getByLabel('Token').press('Enter');
      await expect.poll(() => page.locator('#traces tr').count()).toBe(50);
      const ids = async (): Promise<string[]> => page.locator('#traces a').evaluateAll((as) => as.map((a) => a.getAttribute('href')!));
      const first = await ids();
      expect(await page.locator('#newer').isDisabled()).toBe(true);
      await page.locator('#older').click();
      await expect.poll(() => page.locator('#traces tr').count()).toBe(7);
      const second = await ids();
      expect(new Set([...first, ...second]).size).toBe(57);
      expect(await page.locator('#older').isDisabled()).toBe(true);
      await page.locator('#newer').click();
      await expect.poll(ids).toEqual(first);
      await context.close();
    } finally {
      await many.close();
    }
    expect(pageErrors).toEqual([]);
  });
});
