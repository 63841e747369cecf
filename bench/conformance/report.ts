// The conformance table, the record and replay times against native, and the failures grouped
// by their exact reason (most tests blocked first).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Result, Verdict } from './run.js';
import type { SkippedTest } from './suite.js';

export interface Report {
  rr: string;
  timeoutS: number;
  skipped: SkippedTest[];
  notBuilt: { name: string; error: string }[];
  results: Result[];
}

/** The classes of natively passing tests, worst last. */
export const CLASSES: { verdict: Verdict; label: string }[] = [
  { verdict: 'identical', label: 'record + replay identical' },
  { verdict: 'refused', label: 'refused at record time' },
  { verdict: 'recorder failed', label: 'recorder failed' },
  { verdict: 'recording differs from native', label: 'recorded run differs from native' },
  { verdict: 'replay diverged', label: 'replay diverged (loud)' },
  { verdict: 'timeout', label: 'timeout' },
  { verdict: 'silent mismatch', label: 'replay printed something else (SILENT)' },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = s.length >> 1;
  return s.length % 2 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

const fmtMs = (ms: number): string => (Number.isNaN(ms) ? '-' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);

/** Run-specific numbers and paths out of a message, so one cause is one group. */
export function reasonKey(reason: string): string {
  return reason
    .replace(/\bevent \d+/g, 'event N')
    .replace(/\(task \d+\)/g, '(task N)')
    .replace(/(?<!request )0x[0-9a-f]+/gi, '0x…') // an ioctl's request names the ioctl: kept
    .replace(/\/tmp\/\S+/g, '<path>')
    .replace(/\b(pid|tid) \d+/g, '$1 N');
}

/**
 * Names for syscall numbers in refusals: the kernel's x86-64 table from this machine's headers,
 * and rr's own rrcalls (1000 + k, which rr's tests call and which return ENOSYS natively).
 */
function syscallNames(rr: string): Map<number, string> {
  const names = new Map<number, string>();
  const unistd = '/usr/include/x86_64-linux-gnu/asm/unistd_64.h';
  if (existsSync(unistd)) {
    for (const m of readFileSync(unistd, 'utf8').matchAll(/^#define __NR_(\w+) (\d+)$/gm)) names.set(Number(m[2]), m[1] ?? '');
  }
  const rrcalls = join(rr, 'src', 'preload', 'rrcalls.h');
  if (existsSync(rrcalls)) {
    for (const m of readFileSync(rrcalls, 'utf8').matchAll(/^#define SYS_(rrcall_\w+) \(?RR_CALL_BASE(?: \+ (\d+))?\)?/gm)) {
      names.set(1000 + Number(m[2] ?? 0), `rr's ${m[1] ?? ''}, ENOSYS natively`);
    }
  }
  return names;
}

function nameSyscall(reason: string, names: Map<number, string>): string {
  return reason.replace(/\bsyscall (-?\d+)\b/, (all, n: string) => `${all} [${names.get(Number(n)) ?? 'no such syscall'}]`);
}

function groupBy<T>(xs: T[], key: (x: T) => string): [string, T[]][] {
  const m = new Map<string, T[]>();
  for (const x of xs) {
    const k = key(x);
    m.set(k, [...(m.get(k) ?? []), x]);
  }
  return [...m.entries()].sort((a, b) => b[1].length - a[1].length || a[0].localeCompare(b[0]));
}

function table(rows: string[][]): string[] {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join(' | ')} |`;
  const [head, ...body] = rows;
  return [line(head ?? []), `|${widths.map((w, i) => (i === 0 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...body.map(line)];
}

export function formatReport(r: Report): string {
  const out: string[] = [];
  const natively = r.results.filter((x) => x.verdict !== 'fails natively');
  const failsNatively = r.results.filter((x) => x.verdict === 'fails natively');
  const n = natively.length;
  const pct = (k: number): string => (n ? `${((100 * k) / n).toFixed(1)}%` : '-');
  out.push(`rr test suite at ${r.rr}, timeout ${r.timeoutS} s per run`);
  const listed = r.results.length + r.notBuilt.length + r.skipped.length;
  out.push(
    `${listed} tests: ${r.skipped.length} skipped (their .run script needs rr's harness), ` +
      `${r.notBuilt.length} do not build here, ${r.results.length} run, of which ${failsNatively.length} fail natively`,
  );
  out.push('');
  const rows = [['class', 'tests', 'of passing natively']];
  rows.push(['passes natively (the denominator)', String(n), '100%']);
  for (const c of CLASSES) {
    const k = natively.filter((x) => x.verdict === c.verdict).length;
    rows.push([c.label, String(k), pct(k)]);
  }
  out.push(...table(rows));

  const passing = natively.filter((x) => x.verdict === 'identical');
  const nat = median(passing.map((x) => x.nativeMs ?? NaN));
  const rec = median(passing.map((x) => x.recordMs ?? NaN));
  const rep = median(passing.map((x) => x.replayMs ?? NaN));
  const ratio = (f: (x: Result) => number | undefined): string =>
    `${median(passing.map((x) => (f(x) ?? NaN) / (x.nativeMs ?? NaN))).toFixed(1)}x`;
  out.push('');
  out.push(`time of the ${passing.length} identical tests, median, wall clock, this run (CLI start-up included):`);
  out.push(...table([
    ['run', 'median', 'median ratio to native'],
    ['native', fmtMs(nat), '1.0x'],
    ['record', fmtMs(rec), ratio((x) => x.recordMs)],
    ['replay', fmtMs(rep), ratio((x) => x.replayMs)],
  ]));

  const silent = natively.filter((x) => x.verdict === 'silent mismatch');
  out.push('');
  out.push(`silent mismatches (replay exited without a divergence message but printed or exited otherwise): ${silent.length}`);
  for (const s of silent) out.push(`  ${s.name}: ${s.reason ?? ''}`);

  const names = syscallNames(r.rr);
  for (const c of CLASSES.slice(1)) {
    const failed = natively.filter((x) => x.verdict === c.verdict);
    if (failed.length === 0) continue;
    out.push('');
    out.push(`${c.label}: ${failed.length}, by reason`);
    for (const [key, tests] of groupBy(failed, (x) => nameSyscall(reasonKey(x.reason ?? ''), names))) {
      out.push(`  ${tests.length}  ${key}`);
      out.push(`      ${tests.map((t) => t.name).join(' ')}`);
    }
  }

  out.push('');
  out.push(`not counted: fail natively here (${failsNatively.length})`);
  for (const [key, tests] of groupBy(failsNatively, (x) => x.reason ?? '')) out.push(`  ${tests.length}  ${key}: ${tests.map((t) => t.name).join(' ')}`);
  out.push(`not counted: do not build here (${r.notBuilt.length})`);
  for (const b of r.notBuilt) out.push(`  ${b.name}: ${b.error.split('\n').find((l) => l.includes('error')) ?? b.error.split('\n')[0]}`);
  out.push(`not counted: skipped, their .run script needs rr's harness (${r.skipped.length})`);
  for (const [key, tests] of groupBy(r.skipped, (x) => x.reason)) out.push(`  ${tests.length}  ${key}: ${tests.map((t) => t.name).join(' ')}`);
  return `${out.join('\n')}\n`;
}
