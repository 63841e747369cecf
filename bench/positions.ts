// `node dist/bench/main.js positions [N]`: positions that cannot be mistaken (issue 10,
// acceptance 6; docs/positions.md). Each corpus program keeps a loop's changing state only in
// memory while timer signals or preemptions land in the loop; it is recorded N times (100 by
// default) and each recording replayed, and the bench prints how many replayed byte for byte,
// with the median native, record and replay times measured in the same run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

interface Program {
  name: string;
  cmd: string;
  args: string[];
}

function run(cmd: string, args: string[]): { ms: number; status: number | null; stdout: string } {
  const start = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'latin1', stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000, killSignal: 'SIGKILL' });
  return { ms: Number(process.hrtime.bigint() - start) / 1e6, status: r.status, stdout: r.stdout ?? '' };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

function build(work: string, fixtures: string, name: string, extra: string[] = []): string {
  const out = join(work, name);
  const r = spawnSync('gcc', ['-O1', ...extra, '-o', out, join(fixtures, `${name}.c`)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`gcc ${name}.c failed:\n${r.stderr}`);
  return out;
}

/** Prints one row per program; returns non-zero if any recording did not replay identically. */
export function positionsBench(repo: string, cli: string, runs: number, print: (line: string) => void): number {
  const fixtures = join(repo, 'test', 'fixtures');
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-positions-'));
  try {
    const programs: Program[] = [
      { name: 'C loop, interval timer', cmd: build(work, fixtures, 'mem_loop'), args: [] },
      { name: 'C threads, preempted', cmd: build(work, fixtures, 'mem_loop_threads', ['-pthread']), args: [] },
      { name: 'perl loop, interval timer', cmd: 'perl', args: [join(fixtures, 'perl_count.pl')] },
    ];
    print(`| program | identical replays | native | record | replay |`);
    print(`|---|---:|---:|---:|---:|`);
    let failed = 0;
    for (const p of programs) {
      const native: number[] = [];
      const rec: number[] = [];
      const rep: number[] = [];
      let identical = 0;
      for (let i = 0; i < runs; i++) {
        native.push(run(p.cmd, p.args).ms);
        const dir = join(work, `trace-${i}`);
        const r = run(process.execPath, [cli, 'record', '-o', dir, '--', p.cmd, ...p.args]);
        const b = run(process.execPath, [cli, 'replay', dir]);
        rec.push(r.ms);
        rep.push(b.ms);
        if (r.status === 0 && b.status === 0 && b.stdout === r.stdout) identical++;
        rmSync(dir, { recursive: true, force: true });
      }
      failed += runs - identical;
      const n = median(native);
      const ratio = (x: number): string => `${(x / 1000).toFixed(2)} s (${(x / n).toFixed(1)}×)`;
      print(`| ${p.name} | ${identical}/${runs} | ${(n / 1000).toFixed(3)} s | ${ratio(median(rec))} | ${ratio(median(rep))} |`);
    }
    return failed === 0 ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
