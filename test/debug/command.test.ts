// `rewind debug` as a user runs it: gdb launched and connected for them (arguments after --
// passed on), the program's recorded output on the terminal, the exit status gdb's; --help;
// and clear errors for what cannot work.
import net from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, expectCleanFailure, expectRecorded, record, requireCli, rewind, tempDir } from '../engine/harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const rec = await record(compile('stdin_cat'), [], { input: 'one\ntwo\nthree\n' });
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
});

afterAll(cleanupTemps);

it('launches gdb connected to the session, with the arguments after --', async () => {
  const r = await rewind(['debug', traceDir, '--', '-batch', '-nx', '-ex', 'break main', '-ex', 'continue', '-ex', 'continue', '-ex', 'info threads'], {
    timeoutMs: 60_000,
  });
  const out = r.stdout.toString();
  expect(r.status, describeRun(r)).toBe(0);
  expect(out, describeRun(r)).toMatch(/Breakpoint 1, main \(/);
  // Run to the end: the program's recorded output shows up on the terminal, as it did.
  expect(out, describeRun(r)).toContain('ONE\nTWO\nTHREE\n');
  expect(r.stderr.toString(), describeRun(r)).toContain('stdin_cat: 14 bytes');
  expect(`${out}${r.stderr.toString()}`, describeRun(r)).toMatch(/No more reverse-execution history/);
});

it('explains itself in --help', async () => {
  const r = await rewind(['debug', '--help']);
  expect(r.status, describeRun(r)).toBe(0);
  const help = r.stdout.toString();
  for (const s of ['--no-launch', '--stdio', '--port', 'set substitute-path', 'monitor when', 'monitor seek', 'target extended-remote', 'gdb-remote']) {
    expect(help, s).toContain(s);
  }
});

it('fails clearly: no such trace, not a trace, a port in use, a missing gdb', async () => {
  expectCleanFailure(await rewind(['debug', '/nonexistent/trace', '--no-launch']), /no such trace directory/);
  expectCleanFailure(await rewind(['debug', tempDir('rewind-not-a-trace-'), '--no-launch']), /is not a rewind trace/);
  expectCleanFailure(await rewind(['debug', traceDir, '--port', '99999']), /not a TCP port/);
  expectCleanFailure(await rewind(['debug', traceDir, '--gdb', '/nonexistent/gdb']), /cannot run \/nonexistent\/gdb/);
  const taken = net.createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  const port = (taken.address() as net.AddressInfo).port;
  try {
    expectCleanFailure(await rewind(['debug', traceDir, '--port', String(port), '--no-launch']), /port is in use/);
  } finally {
    taken.close();
  }
});
