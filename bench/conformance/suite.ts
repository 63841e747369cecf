// What rr's test suite contains, read from an rr checkout at run time (nothing of rr is copied
// into this repository): the test lists of CMakeLists.txt and, for tests that have their own
// driver script, what that script does, when it is simple enough to run without rr's harness.
import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';

/** The program a test runs, and how rr decides it passed. */
export interface TestSpec {
  name: string;
  /** Name of the built binary to run (often the test's own). */
  exe: string;
  args: string[];
  /** rr's pass token: must appear in stdout ('' means any output). */
  token: string;
}

export interface SkippedTest {
  name: string;
  /** Why it cannot run without rr's harness, grouped in the report. */
  reason: string;
}

export interface Suite {
  tests: TestSpec[];
  skipped: SkippedTest[];
  /** Sources to build: test name → path relative to src/test (without extension). */
  sources: Map<string, string>;
  cppTests: Set<string>;
}

/** The items of `set(NAME ...)` in CMakeLists.txt, and those appended by `set(NAME ${NAME} x)`. */
function cmakeList(cmake: string, name: string): { items: string[]; appended: string[] } {
  const block = new RegExp(`set\\(${name}\\s([^)]*)\\)`).exec(cmake);
  if (!block?.[1]) throw new Error(`CMakeLists.txt has no set(${name} ...)`);
  const items = block[1]
    .split('\n')
    .map((l) => (l.split('#')[0] ?? '').trim())
    .filter((l) => l && !l.startsWith('$'));
  const appended = [...cmake.matchAll(new RegExp(`set\\(${name} \\$\\{${name}\\} ([^)]*)\\)`, 'g'))].map((m) =>
    (m[1] ?? '').trim(),
  );
  return { items, appended };
}

/** Drops tests for other architectures, as the CMake loop does on x86-64. */
const forThisArch = (t: string): boolean => !t.startsWith('arm/');

export function readSuite(rr: string, conditionalOk: (test: string) => boolean): Suite {
  const cmake = readFileSync(join(rr, 'CMakeLists.txt'), 'utf8');
  const basic = cmakeList(cmake, 'BASIC_TESTS');
  const cpp = cmakeList(cmake, 'BASIC_CPP_TESTS');
  const withProgram = cmakeList(cmake, 'TESTS_WITH_PROGRAM');
  const withoutProgram = cmakeList(cmake, 'TESTS_WITHOUT_PROGRAM');
  const sources = new Map<string, string>();
  const tests: TestSpec[] = [];
  const skipped: SkippedTest[] = [];

  // mq, fanotify and robust_futex are added under a header or symbol check: the caller checks.
  const basicAll = [...basic.items, ...basic.appended.filter(conditionalOk)].filter(forThisArch);
  for (const t of [...basicAll, ...cpp.items]) {
    const name = basename(t);
    sources.set(name, t);
    tests.push({ name, exe: name, args: [], token: 'EXIT-SUCCESS' });
  }
  for (const t of withProgram.items.filter(forThisArch)) sources.set(basename(t), t);
  const testDir = join(rr, 'src', 'test');
  for (const t of [...withProgram.items, ...withoutProgram.items].filter(forThisArch)) {
    const name = basename(t);
    const script = join(testDir, `${t}.run`);
    if (!existsSync(script)) {
      skipped.push({ name, reason: 'no .run script in the checkout' });
      continue;
    }
    const parsed = parseRunScript(readFileSync(script, 'utf8'), name, testDir);
    if ('reason' in parsed) skipped.push({ name, reason: parsed.reason });
    else tests.push({ name, ...parsed });
  }
  return { tests, skipped, sources, cppTests: new Set(cpp.items.map((t) => basename(t))) };
}

/** Splits one shell line into words, with quotes and $VAR / ${VAR} expanded from vars. */
function words(line: string, vars: Map<string, string>): string[] | null {
  const out: string[] = [];
  let cur: string | null = null;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] ?? '';
    if (quote === "'") {
      if (c === "'") quote = null;
      else cur = (cur ?? '') + c;
    } else if (c === '$') {
      const m = /^\$(?:\{(\w+)\}|(\w+))/.exec(line.slice(i));
      if (!m) return null;
      const v = vars.get(m[1] ?? m[2] ?? '');
      if (v === undefined) return null;
      cur = (cur ?? '') + v;
      i += m[0].length - 1;
    } else if (quote === '"') {
      if (c === '"') quote = null;
      else cur = (cur ?? '') + c;
    } else if (c === '"' || c === "'") {
      quote = c;
      cur = cur ?? '';
    } else if (c === ' ' || c === '\t') {
      if (cur !== null) out.push(cur);
      cur = null;
    } else {
      cur = (cur ?? '') + c;
    }
  }
  if (quote) return null;
  if (cur !== null) out.push(cur);
  return out;
}

const NONCE = '@NONCE@';

// Helpers of rr's util.sh that change nothing for a 64-bit build run without rr's syscall buffer.
const NO_OPS = new Set([
  'skip_if_no_syscall_buf',
  'skip_if_syscall_buf',
  'skip_if_test_32_bit',
  'skip_if_rr_32_bit',
  'skip_if_rr_32_bit_with_shell_64_bit',
  // Skips on a systemd too old for the test; running it natively decides that here.
  'skip_if_old_systemd',
  'passed',
]);

type Parsed = Omit<TestSpec, 'name'> | { reason: string };

/**
 * Reduces a .run script to "record EXE ARGS, replay, check TOKEN" when that is all it does.
 * RECORD_ARGS (rr's scheduler and buffer options), rr's RR_* variables and TIMEOUT raises are
 * ignored: they mean nothing to rewind, and the timeout is the runner's. Anything else (gdb
 * scripts, signals sent by the harness, rr pack/rerun/checkpoints, shell pipelines) makes the
 * test skipped, with the first command that needs rr's harness as the reason.
 */
export function parseRunScript(text: string, name: string, testDir: string): Parsed {
  const vars = new Map([
    ['TESTNAME', name],
    ['bitness', ''],
    ['nonce', NONCE],
    ['TESTDIR', testDir],
  ]);
  let run: { exe: string; args: string[] } | null = null;
  let replayed = false;
  let token: string | null = null;
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || /^source .*util\.sh$/.test(line)) continue;
    // rr's record options and its own environment variables mean nothing to rewind.
    if (/^RECORD_ARGS=/.test(line) || /^(unset RR_\w+|export RR_\w+=\S*)$/.test(line)) continue;
    if (/^if \[ \$TIMEOUT -lt \d+ \]; then TIMEOUT=\d+; fi$/.test(line)) continue;
    if (/[;|&<>`()]/.test(line)) return { reason: 'shell steps beyond record/replay/check' };
    const assign = /^(\w+)=(.*)$/.exec(line);
    if (assign?.[1] === 'GLOBAL_OPTIONS' || assign?.[1] === 'RR_EXE') return { reason: `sets ${assign[1]}` };
    if (assign?.[1]) {
      const value = words(assign[2] ?? '', vars);
      if (!value || value.length > 1) return { reason: 'shell steps beyond record/replay/check' };
      vars.set(assign[1], value[0] ?? '');
      continue;
    }
    const w = words(line, vars);
    const cmd = w?.[0];
    if (!w || !cmd) return { reason: 'shell steps beyond record/replay/check' };
    if (NO_OPS.has(cmd) || cmd === 'save_exe') continue;
    if (cmd === 'compare_test' && !run) {
      // compare_test TOKEN [REPLAY_FLAGS [TEST]]: rr's replay flags do not apply to rewind.
      run = { exe: w[3] ?? name, args: [] };
      replayed = true;
      token = w[1] ?? '';
    } else if ((cmd === 'record' || cmd === 'just_record') && !run && w[1]) {
      // record's arguments are word-split again by util.sh ("$2 $3 $4 $5" unquoted).
      run = { exe: w[1], args: w.slice(2).flatMap((a) => a.split(/\s+/).filter(Boolean)) };
    } else if (cmd === 'replay' && run && !replayed && w.length === 1) {
      replayed = true;
    } else if (cmd === 'check' && replayed && token === null && w.length <= 2) {
      token = w[1] ?? '';
    } else {
      return { reason: `uses ${cmd}` };
    }
  }
  if (!run || !replayed || token === null) return { reason: 'does not record, replay and check' };
  // NAME-$nonce is rr's copy of the NAME binary (save_exe): the binary itself here.
  const unNonce = (s: string): string => (s.endsWith(`-${NONCE}`) ? s.slice(0, -NONCE.length - 1) : s);
  if ([run.exe, ...run.args].some((s) => s.includes(NONCE) && !s.endsWith(`-${NONCE}`))) {
    return { reason: 'uses the trace directory rr names' };
  }
  const exe = unNonce(run.exe).replace(/^\.\//, '');
  return { exe, args: run.args.map((a) => (a.endsWith(`-${NONCE}`) ? `@BIN@${unNonce(a)}` : a)), token };
}
