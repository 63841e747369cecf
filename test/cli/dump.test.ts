// `rewind dump`: a trace's events, readably, as a divergence message says to run it.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  cleanupTemps,
  compile,
  describeRun,
  EVENT_TYPES,
  eventsBlob,
  expectCleanFailure,
  expectRecorded,
  parseEventStream,
  record,
  replaceEventsBlob,
  requireCli,
  rewind,
  type Recording,
} from '../support/index.js';

let rec: Recording;
let kinds: string[];

beforeAll(async () => {
  requireCli();
  rec = await record(compile('hello'), []);
  expectRecorded(rec, 3);
  const byType = new Map(Object.entries(EVENT_TYPES).map(([k, v]) => [v, k]));
  kinds = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path)).records.map((r) => byType.get(r.type as 1)!);
});
afterAll(cleanupTemps);

describe('rewind dump DIR', () => {
  it('prints every event, one line each: its number, its task and what happened', async () => {
    const r = await rewind(['dump', rec.traceDir]);
    expect(r.status, describeRun(r)).toBe(0);
    const lines = r.stdout.toString().trimEnd().split('\n');
    expect(lines.length).toBe(kinds.length);
    expect(lines.map((l) => Number(/^\s*(\d+) {2}task \d+ {2}\S/.exec(l)?.[1]))).toEqual(kinds.map((_, i) => i));
    expect(lines[0]).toMatch(/^\s*0 {2}task \d+ {2}exec of \S*hello, \d+ regions, ip 0x[0-9a-f]+, cpu -?\d+$/);
    expect(r.stdout.toString()).toMatch(/^\s*\d+ {2}task \d+ {2}write\(0x1, 0x[0-9a-f]+, 0x12\) = 18, to stdout$/m);
    expect(r.stdout.toString()).toMatch(/^\s*\d+ {2}task \d+ {2}exit with wait status 0x300$/m);
  });

  it('--from and --to choose the events; --json gives the same events as objects', async () => {
    const all = (await rewind(['dump', rec.traceDir])).stdout.toString().trimEnd().split('\n');
    const some = await rewind(['dump', rec.traceDir, '--from', '2', '--to', '4']);
    expect(some.stdout.toString().trimEnd().split('\n').map((l) => l.trim())).toEqual(all.slice(2, 5).map((l) => l.trim()));

    const json = await rewind(['dump', rec.traceDir, '--json']);
    expect(json.status, describeRun(json)).toBe(0);
    const events = JSON.parse(json.stdout.toString()) as { index: number; task: number; kind: string; text: string }[];
    expect(events.map((e) => e.kind)).toEqual(kinds);
    expect(events.map((e) => `${e.index}  task ${e.task}  ${e.text}`)).toEqual(all.map((l) => l.trim()));

    const past = await rewind(['dump', rec.traceDir, '--from', String(kinds.length), '--json']);
    expect(past.stdout.toString()).toBe('[]\n');
  });

  it('bad arguments and a damaged event stream are clear errors', async () => {
    expectCleanFailure(await rewind(['dump', rec.traceDir, '--from', 'x']), /^rewind: --from x: not an event number/m);
    expectCleanFailure(await rewind(['dump', rec.traceDir, '--from', '5', '--to', '2']), /^rewind: --to 2 is before --from 5$/m);
    expectCleanFailure(await rewind(['dump', '/nonexistent/trace']), /^rewind: \/nonexistent\/trace: no such trace directory$/m);

    // One byte changed inside the first chunk's compressed records: its check no longer holds.
    const damaged = Buffer.from(readFileSync(eventsBlob(rec.traceDir).path));
    damaged[8 + 32 + 20]! ^= 0xff;
    replaceEventsBlob(rec.traceDir, damaged);
    const r = await rewind(['dump', rec.traceDir]);
    expectCleanFailure(r, /^rewind: .*(event stream|trace)/m);
    expect(r.status, describeRun(r)).toBe(125);
  });
});
