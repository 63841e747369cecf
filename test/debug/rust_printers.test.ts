// Issue 13, problem 6: the Rust standard library's pretty-printers are loaded for a recorded
// Rust program without the user asking, so String and Option print as values.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, describeRun, expectRecorded, record, requireCli, rewind, tempDir } from '../engine/harness.js';
import { FIXTURES } from '../support/paths.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const exe = join(tempDir('rewind-rust-printers-'), 'creatures');
  const build = spawnSync('rustc', ['-g', '-C', 'opt-level=0', '-o', exe, join(FIXTURES, 'creatures.rs')], { encoding: 'utf8', timeout: 300_000 });
  if (build.status !== 0) throw new Error(`rustc failed:\n${build.stderr}`);
  const rec = await record(exe, [], { input: 'Smaug\n171\n\n2.5\n' });
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 300_000);

afterAll(cleanupTemps);

it('prints String and Option as values in the gdb rewind debug starts', async () => {
  const r = await rewind(['debug', traceDir, '--', '-batch', '-nx', '-ex', 'break creatures::describe', '-ex', 'continue', '-ex', 'print c.name', '-ex', 'print c.wingspan', '-ex', 'print c.horn_length'], {
    timeoutMs: 120_000,
  });
  const out = r.stdout.toString();
  expect(r.status, describeRun(r)).toBe(0);
  expect(out, describeRun(r)).toMatch(/Breakpoint 1, creatures::describe/);
  // Without the printers: alloc::string::String {vec: alloc::vec::Vec<u8, ...> {buf: ...
  expect(out, describeRun(r)).toMatch(/\$1 = "Smaug"/);
  expect(out, describeRun(r)).toMatch(/\$2 = core::option::Option<[^>]+>::None/);
  expect(out, describeRun(r)).toMatch(/\$3 = core::option::Option<f64>::Some\(2\.5\)/);
});
