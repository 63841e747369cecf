// `rewind query`: its table and JSON, its refusals, `rewind debug --moment` refusals, and the
// same query through a real server (a sandboxed worker, answers cached per trace and query).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, expectCleanFailure, expectRecorded, record, requireCli, rewind, type Recording } from '../support/index.js';
import { spawnServer, type ServerProcess } from '../server/cli.js';
import type { QueryAnswer } from '../../trace/query.js';

let rec: Recording;

beforeAll(async () => {
  requireCli();
  rec = await record(compile('query_target'), ['4']);
  expectRecorded(rec, 0);
}, 60_000);
afterAll(cleanupTemps);

describe('rewind query DIR', () => {
  it('prints a table: how many answers, then one row each with its moment', async () => {
    const calls = await rewind(['query', rec.traceDir, 'calls', 'step']);
    expect(calls.status, describeRun(calls)).toBe(0);
    const lines = calls.stdout.toString().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^4 calls of step in \d+ events$/);
    expect(lines[1]).toMatch(/^MOMENT +THREAD +ARGUMENTS$/);
    expect(lines.slice(2)).toHaveLength(4);
    expect(lines[3]).toMatch(/^\d+\.\d+\.b[0-9a-f]+\.\d+ +\d+ +n=1, k=2, c=98 'b', d=0\.5, s=0x[0-9a-f]+$/);

    const writes = await rewind(['query', rec.traceDir, 'writes', 'counter']);
    const w = writes.stdout.toString().trimEnd().split('\n');
    expect(w[0]).toMatch(/^4 writes of counter \(8 bytes\) in \d+ events$/);
    expect(w[1]).toMatch(/^MOMENT +THREAD +OLD +NEW +BY +LINE$/);
    expect(w[3]).toMatch(/^\S+\.w[0-9a-f]+\+8\.\d+ +\d+ +1 +4 +0x[0-9a-f]+ +\S+query_target\.c:\d+$/);

    const syscalls = await rewind(['query', rec.traceDir, 'syscalls']);
    expect(syscalls.stdout.toString()).toMatch(/^\d+ syscalls of every syscall in \d+ events\nMOMENT +EVENT +THREAD +SYSCALL\n/);
    expect(syscalls.stdout.toString()).toMatch(/^\d+\.\d+\.end +\d+ +\d+ +exit_group\(0x0\)/m);
  });

  it('--json gives the same answers as data', async () => {
    const r = await rewind(['query', rec.traceDir, 'calls', 'step', '--json']);
    const a = JSON.parse(r.stdout.toString()) as QueryAnswer;
    expect(a).toMatchObject({ query: 'calls step', kind: 'calls', subject: 'step' });
    expect(a.rows.map((row) => row.arguments?.[0]?.value)).toEqual(['0', '1', '2', '3']);
  });

  it('refuses what it cannot answer, clearly', async () => {
    expectCleanFailure(await rewind(['query', rec.traceDir, 'frobs', 'x']), /^rewind: query frobs: ask for calls FUNCTION, writes ADDRESS\[:LEN\] or syscalls \[NAME\]$/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'calls', 'a;b']), /^rewind: a;b: not a function name/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'calls', 'nosuch']), /^rewind: nosuch: no function of that name in the program's symbol table$/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'writes', 'counter:64']), /^rewind: counter:64: LEN is 1 to 32 bytes/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'writes', 'main']), /^rewind: main: no global variable of that name/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'writes', '0x1001:31']), /^rewind: the 4 debug registers watch at most 4 aligned pieces/m);
    expectCleanFailure(await rewind(['query', rec.traceDir, 'syscalls', 'Write!']), /^rewind: query syscalls Write!: not a syscall name$/m);
  });

  it('rewind debug --moment refuses a malformed moment, or one the recording does not have', async () => {
    expectCleanFailure(await rewind(['debug', rec.traceDir, '--stdio', '--moment', '12.x']), /^rewind: --moment 12\.x: not a moment/m);
    expectCleanFailure(await rewind(['debug', rec.traceDir, '--stdio', '--moment', '3.1', '--event', '3']), /^rewind: --at-end, --event and --moment: one place to start at$/m);
    expectCleanFailure(await rewind(['debug', rec.traceDir, '--stdio', '--moment', '99999.1']), /^rewind: --moment: no segment of thread 1 of the debugged process begins at event 99999$/m);
  });
});

describe('rewind query ID, on a trace on the server', () => {
  let server: ServerProcess;
  let id: string;
  const client = (): string[] => ['--server', server.address, '--token', server.adminToken];

  beforeAll(async () => {
    server = await spawnServer(mkdtempSync(join(tmpdir(), 'rewind-query-server-')));
    const pushed = await rewind(['push', rec.traceDir, ...client()]);
    expect(pushed.status, describeRun(pushed)).toBe(0);
    id = pushed.stdout.toString().trim().split('\n').pop()!;
  }, 60_000);
  afterAll(async () => server?.stop());

  it('gives the answers a local query gives, the second time from the cache', async () => {
    for (const words of [
      ['calls', 'step'],
      ['writes', 'counter'],
      ['syscalls', 'write'],
    ]) {
      const local = JSON.parse((await rewind(['query', rec.traceDir, ...words, '--json'])).stdout.toString()) as QueryAnswer;
      const first = await rewind(['query', id, ...words, '--json', ...client()]);
      expect(first.status, describeRun(first)).toBe(0);
      expect(JSON.parse(first.stdout.toString())).toEqual(local);
      const cachedBefore = server.logs.filter((l) => l.includes('query answered from the cache')).length;
      const second = await rewind(['query', id, ...words, '--json', ...client()]);
      expect(JSON.parse(second.stdout.toString())).toEqual(local);
      expect(server.logs.filter((l) => l.includes('query answered from the cache')).length).toBe(cachedBefore + 1);
    }
  }, 120_000);

  it('rewind debug ID --moment M opens the moment in a session on the server', async () => {
    const a = JSON.parse((await rewind(['query', id, 'writes', 'counter', '--json', ...client()])).stdout.toString()) as QueryAnswer;
    const row = a.rows[2]!;
    const r = await rewind(['debug', id, '--moment', row.moment, ...client(), '--', '-batch', '-nx', '-ex', 'print/d counter', '-ex', 'print/x $pc']);
    expect(r.status, describeRun(r)).toBe(0);
    expect(r.stdout.toString()).toContain(`$1 = ${Buffer.from(row.new!, 'hex').readBigInt64LE(0)}\n$2 = ${row.pc}\n`);
    expectCleanFailure(await rewind(['debug', id, '--moment', 'x.1', ...client()]), /--moment x\.1: not a moment/);
  }, 120_000);

  it("the server's refusals reach the user", async () => {
    expectCleanFailure(await rewind(['query', id, 'calls', 'nosuch', ...client()]), /nosuch: no function of that name in the program's symbol table/);
  }, 60_000);
});
