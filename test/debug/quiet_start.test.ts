// Issue 13, problem 6: what a user meets at once when `rewind debug` starts gdb for them. The
// executable and libraries come out of the trace without a "Reading ... from remote target"
// line each, gdb's "file transfers can be slow" warning or its /proc maps warning; /proc maps
// shows the recorded mappings; gdb's own `record` is refused with a reason instead of stacking
// record-full on the replay.
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, describeRun, expectRecorded, record, requireCli, rewind } from '../engine/harness.js';

let traceDir: string;
let exe: string;

beforeAll(async () => {
  requireCli();
  exe = compile('hello');
  const rec = await record(exe);
  expectRecorded(rec, 3);
  traceDir = rec.traceDir;
});

afterAll(cleanupTemps);

it('starts quietly, with symbols for the program and its libraries, and refuses gdb record', async () => {
  const commands = ['break main', 'continue', 'info sharedlibrary', 'info proc mappings', 'record', 'record full', 'target record-full', 'info record', 'reverse-stepi', 'info registers rip'];
  const r = await rewind(['debug', traceDir, '--', '-batch', '-nx', ...commands.flatMap((c) => ['-ex', c])], { timeoutMs: 60_000 });
  const out = `${r.stdout.toString()}${r.stderr.toString()}`;
  const ctx = describeRun(r);
  expect(r.status, ctx).toBe(0);
  expect(out, ctx).not.toMatch(/from remote target|warning:/);
  expect(out, ctx).toMatch(/Breakpoint 1, main \(\) at .*hello\.c/);
  // Both libraries with their symbols, the vDSO found (no "No  linux-vdso.so.1" line).
  expect(out, ctx).toMatch(/Yes +\S*ld-linux-x86-64\.so\.2\n/);
  expect(out, ctx).toMatch(/Yes +\S*libc\.so\.6\n/);
  expect(out, ctx).not.toMatch(/linux-vdso/);
  // The mappings under the recorded names.
  expect(out, ctx).toMatch(new RegExp(`r-xp +${exe.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\n`));
  expect(out, ctx).toMatch(/r-xp +\/\S*libc\.so\.6\n/);
  expect(out, ctx).toMatch(/r-xp +\[vdso\]\n/);
  // `record` three ways, refused each time; reverse execution is the replay's, as before.
  expect(out.match(/gdb's own 'record' \(record-full\) would record the replay again, slowly, and is refused/g)?.length, ctx).toBe(3);
  expect(out, ctx).toMatch(/No recording is currently active/);
  expect(out, ctx).not.toMatch(/Active record target|Process record/);
  expect(out, ctx).toMatch(/rip +0x[0-9a-f]+ +0x[0-9a-f]+ <\w+\+\d+>/);
  // What rewind laid out for gdb is gone with the session.
  const setup = /Reading symbols from (\/\S*rewind-gdb-[^/]+)\//.exec(out)?.[1];
  expect(setup, ctx).toBeDefined();
  expect(existsSync(setup!), ctx).toBe(false);
});
