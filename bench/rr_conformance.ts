// `npm run conformance -- /path/to/rr`: rr's own test suite as rewind's conformance measure
// (issue 10). Builds src/test/*.c of an rr checkout as rr's CMakeLists.txt does, runs each test
// natively, under `rewind record` and `rewind replay`, and prints a table per class, the median
// record and replay times against native, and every failure grouped by its exact reason.
// docs/conformance.md explains the classes. Nothing of rr is copied: its lists and scripts are
// read from the checkout at run time.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { buildExitFast, buildTest, conditionalTestOk, prepare, type BuildDirs } from './conformance/build.js';
import { formatReport, type Report } from './conformance/report.js';
import { runTest, type Result, type RunConfig } from './conformance/run.js';
import { readSuite, type TestSpec } from './conformance/suite.js';

const here = dirname(fileURLToPath(import.meta.url));
const REPO = existsSync(join(here, '..', 'package.json')) ? resolve(here, '..') : resolve(here, '..', '..');
const CLI = join(REPO, 'dist', 'cli', 'main.js');

const USAGE = `usage: npm run conformance -- RR_CHECKOUT [options]
  --timeout S       seconds per run (native, record, replay each; default 60)
  --jobs N          tests run at once (default 1)
  --filter REGEX    only tests whose name matches
  --json            print the results as JSON instead of the table
  --work DIR        build and scratch directory (default $TMPDIR/rewind-rr-conformance; binaries are reused)
  --results FILE    append one JSON line per test as it finishes
  --resume          with --results: keep the tests FILE already holds, run only the others
  --report-from FILE  print the report of a --results file (complete or partial) and run nothing
  --keep            keep each test's working directories and trace`;

/** Runs f over xs with at most n at once, in order of xs. */
async function pool<T, R>(xs: T[], n: number, f: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(xs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < xs.length) {
      const i = next++;
      out[i] = await f(xs[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, n) }, worker));
  return out;
}

interface ResultsLine {
  header?: Omit<Report, 'results'>;
  result?: Result;
}

function reportFromResults(file: string): Report {
  let header: Omit<Report, 'results'> | undefined;
  const results: Result[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n').filter(Boolean)) {
    const parsed = JSON.parse(line) as ResultsLine;
    if (parsed.header) header = parsed.header;
    if (parsed.result) results.push(parsed.result);
  }
  if (!header) throw new Error(`${file} has no header line`);
  return { ...header, results };
}

async function main(): Promise<number> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      timeout: { type: 'string', default: '60' },
      jobs: { type: 'string', default: '1' },
      filter: { type: 'string' },
      json: { type: 'boolean', default: false },
      work: { type: 'string', default: join(tmpdir(), 'rewind-rr-conformance') },
      results: { type: 'string' },
      'report-from': { type: 'string' },
      resume: { type: 'boolean', default: false },
      keep: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values['report-from']) {
    process.stdout.write(formatReport(reportFromResults(values['report-from'])));
    return 0;
  }
  const rrArg = positionals[0];
  const timeoutS = Number(values.timeout);
  const jobs = Number(values.jobs);
  if (!rrArg || !(timeoutS > 0) || !(jobs >= 1)) {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const rr = resolve(rrArg);
  if (!existsSync(join(rr, 'CMakeLists.txt')) || !existsSync(join(rr, 'src', 'test'))) {
    process.stderr.write(`conformance: ${rr} is not an rr checkout (no CMakeLists.txt and src/test)\n`);
    return 2;
  }
  if (!existsSync(CLI)) {
    process.stderr.write(`conformance: ${CLI} is missing; run npm run build first\n`);
    return 2;
  }
  const work = resolve(values.work);
  const dirs: BuildDirs = { rr, gen: join(work, 'gen'), bin: join(work, 'bin') };
  const scratch = join(work, 'runs');
  mkdirSync(scratch, { recursive: true });
  prepare(dirs);

  const suite = readSuite(rr, conditionalTestOk);
  const filter = values.filter ? new RegExp(values.filter) : null;
  const wanted = (name: string): boolean => !filter || filter.test(name);
  const tests = suite.tests.filter((t) => wanted(t.name));
  const skipped = suite.skipped.filter((t) => wanted(t.name));

  // Build each program a chosen test runs (its own, or the one its driver script names).
  const programs = new Set(tests.flatMap((t) => [t.exe, ...t.args.filter((a) => a.startsWith('@BIN@')).map((a) => a.slice(5))]));
  process.stderr.write(`conformance: building ${programs.size} programs in ${dirs.bin}\n`);
  const buildErrors = new Map<string, string>();
  await pool([...programs], jobs, async (p) => {
    const rel = suite.sources.get(p);
    const err = p === 'exit_fast' ? await buildExitFast(dirs) : rel ? await buildTest(dirs, p, rel, suite.cppTests.has(p)) : null;
    if (err) buildErrors.set(p, err);
  });
  const builtOk = (t: TestSpec): string | undefined =>
    [t.exe, ...t.args.map((a) => a.replace(/^@BIN@/, ''))].map((p) => buildErrors.get(p)).find(Boolean);
  const notBuilt = tests.flatMap((t) => {
    const error = builtOk(t);
    return error ? [{ name: t.name, error }] : [];
  });
  const runnableAll = tests.filter((t) => !builtOk(t));

  const header: Omit<Report, 'results'> = { rr, timeoutS, skipped, notBuilt };
  const earlier = values.resume && values.results && existsSync(values.results) ? reportFromResults(values.results).results : [];
  if (values.results && !values.resume) writeFileSync(values.results, `${JSON.stringify({ header })}\n`);
  const seen = new Set(earlier.map((r) => r.name));
  const runnable = runnableAll.filter((t) => !seen.has(t.name));
  const cfg: RunConfig = { cli: CLI, bin: dirs.bin, testDir: join(rr, 'src', 'test'), work: scratch, timeoutMs: timeoutS * 1000, keepTraces: values.keep };
  let done = 0;
  const results = await pool(runnable, jobs, async (t) => {
    const r = await runTest(t, cfg);
    done++;
    process.stderr.write(`[${done}/${runnable.length}] ${t.name}: ${r.verdict}${r.reason ? ` (${r.reason.slice(0, 160)})` : ''}\n`);
    if (values.results) appendFileSync(values.results, `${JSON.stringify({ result: r })}\n`);
    return r;
  });
  const report: Report = { ...header, results: [...earlier, ...results] };
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return 0;
}

process.exitCode = await main();
