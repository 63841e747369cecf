// A client that leaves while its continue still runs: the continue is interrupted, and the next
// client's packets get their own replies, not the one the continue leaves behind.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { loggedAsk, RawClient, startServer } from './gdb_harness.js';
import { expectSessionEnded } from './mi_harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  // About 3 s of computation: a continue to the end that outlasts the client that asked for it.
  const rec = await record(compile('ticker', { extra: ['-O1'] }), ['300']);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

afterAll(cleanupTemps);

it('answers the next client\'s packets in turn after a client left mid-continue', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const first = await RawClient.connect(server.port);
  expect(await first.ask('QStartNoAckMode')).toBe('OK');
  first.send('vCont;c');
  first.close();
  const deadline = Date.now() + 20_000;
  while (!server.stderr().includes('the debugger disconnected') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const next = await RawClient.connect(server.port);
  const log: string[] = [];
  const ask = loggedAsk(next, log, 80);
  try {
    // Asked while the continue runs: answered after it, and with its own reply.
    expect(await ask('qSupported:multiprocess+;swbreak+;hwbreak+'), log.join('\n')).toMatch(/^PacketSize=/);
    expect(await ask('QStartNoAckMode'), log.join('\n')).toBe('OK');
    // monitor when: the console output, then OK.
    expect(Buffer.from((await ask('qRcmd,7768656e')).slice(1), 'hex').toString(), log.join('\n')).toMatch(/^event \d+ of \d+\n$/);
    expect(await next.next(), log.join('\n')).toBe('OK');
    // The continue nobody waited for any more was interrupted: the next client starts from a
    // plain stop, not from its stale reply.
    expect(await ask('?'), log.join('\n')).toMatch(/^T05thread:/);
    await ask('D');
  } finally {
    next.close();
  }
  await expectSessionEnded(server, children, log.join('\n'));
});

it('a Ctrl-C that comes between packets (gdb handling a stop of its own) interrupts the next resume', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const c = await RawClient.connect(server.port);
  const log: string[] = [];
  try {
    expect(await c.ask('QStartNoAckMode')).toBe('OK');
    // gdb sends 0x03 whenever the user presses Ctrl-C during a continue, even while it is
    // between a stop and the resume that goes on; the resume after it must stop soon.
    c.raw('\x03');
    const stop = await c.ask('vCont;c');
    log.push(`vCont;c -> ${stop}`);
    expect(stop, log.join('\n')).toMatch(/^T02thread:/);
    const when = Buffer.from((await c.ask('qRcmd,7768656e')).slice(1), 'hex').toString();
    log.push(when);
    expect(await c.next()).toBe('OK');
    const m = /^event (\d+) of (\d+)/.exec(when);
    expect(m, log.join('\n')).not.toBeNull();
    expect(Number(m![1]), log.join('\n')).toBeLessThan(Number(m![2]) / 2);
    // Once only: the next continue runs to the end.
    expect(await c.ask('vCont;c'), log.join('\n')).toMatch(/^T05replaylog:end;/);
    await c.ask('D');
  } finally {
    c.close();
  }
  await expectSessionEnded(server, children, log.join('\n'));
});
