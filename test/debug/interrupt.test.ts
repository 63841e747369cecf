// gdb's Ctrl-C while the replay runs: the session stops soon after, at a moment that can be
// inspected and left in both directions, instead of running on to the end.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { baseEnv, cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';
import { expectNoStray, startServer } from './gdb_harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const exe = compile('ticker', { extra: ['-O1'] });
  // About 3 s of computation in 10 ms rounds.
  const rec = await record(exe, ['300']);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

afterAll(cleanupTemps);

it('Ctrl-C in gdb stops a continue, and the session goes on from there', async () => {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const commands = ['continue', 'monitor when', 'reverse-stepi', 'stepi', 'continue'];
  const args = ['-batch', '-nx', '-iex', 'set pagination off', '-iex', 'set confirm off', '-ex', `target extended-remote 127.0.0.1:${server.port}`];
  commands.forEach((c, i) => args.push('-ex', `echo \\n@@${i}@@\\n`, '-ex', c));
  args.push('-ex', 'echo \\n@@end@@\\n');
  const gdb = spawn('gdb', args, { env: baseEnv({ HOME: '/nonexistent' }), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  gdb.stdout.on('data', (b: Buffer) => (out += b.toString()));
  gdb.stderr.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => gdb.on('close', resolve));
  // Once the continue runs, Ctrl-C: gdb sends 0x03 to the session.
  const started = Date.now();
  while (!out.includes('@@0@@') && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 20));
  await new Promise((r) => setTimeout(r, 500));
  const interruptedAt = Date.now();
  gdb.kill('SIGINT');
  while (!out.includes('@@1@@') && Date.now() - interruptedAt < 30_000) await new Promise((r) => setTimeout(r, 20));
  const stopDelay = Date.now() - interruptedAt;
  expect(await exited).toBe(0);
  const ctx = `${out}\n--- rewind debug stderr ---\n${server.stderr()}`;
  const section = (i: number): string => out.slice(out.indexOf(`@@${i}@@`), out.indexOf(`@@${i + 1 < commands.length ? i + 1 : 'end'}@@`));
  expect(section(0), ctx).toMatch(/Program received signal SIGINT, Interrupt\./);
  // It stopped well before the end (about 2.5 s of replay away), at the start of a round.
  expect(stopDelay, ctx).toBeLessThan(2000);
  const when = /event (\d+) of (\d+)/.exec(section(1));
  expect(when, ctx).not.toBeNull();
  expect(Number(when![1]), ctx).toBeLessThan(Number(when![2]) / 2);
  // History goes on both ways from there: one instruction back, and forwards to the same pc.
  const pc = (text: string): bigint => BigInt(/(0x[0-9a-f]+)\s/.exec(text)?.[1] ?? '0');
  const stoppedAt = pc(section(0).slice(section(0).indexOf('Interrupt.')));
  expect(stoppedAt, ctx).not.toBe(0n);
  expect(pc(section(2)), ctx).toBeLessThan(stoppedAt);
  expect(pc(section(3)), ctx).toBe(stoppedAt);
  expect(section(4), ctx).toMatch(/No more reverse-execution history\./);
  expect(await server.exited, ctx).toBe(0);
  expectNoStray(children, ctx);
}, 120_000);
