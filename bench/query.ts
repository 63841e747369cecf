// Queries over a whole recording (issue 16, "Performance"): the time of each kind of query
// against a forward replay of the same recording, measured in the same run, through the CLI
// (the same process start-up on both sides). The goal is at most 1.5x the replay.
//
// Usage: node dist/bench/query.js [ROUNDS [INNER]]   (default 1000 rounds of 500000 iterations)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const cli = join(repo, 'dist', 'cli', 'main.js');

/** Seconds `rewind ARGS` takes (best of `runs`: the machine is shared), its output discarded. */
function timed(args: string[], runs = 3): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const t = process.hrtime.bigint();
    const r = spawnSync(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.status !== 0) throw new Error(`rewind ${args.join(' ')} failed: ${r.stderr.toString()}`);
    best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
  }
  return best;
}

export function runQueryBench(rounds: number, inner: number): number {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-query-'));
  try {
    const exe = join(work, 'query_work');
    execFileSync('gcc', ['-O1', '-g', '-o', exe, join(repo, 'bench', 'query_work.c')]);
    const trace = join(work, 'trace');
    const rec = spawnSync(process.execPath, [cli, 'record', '-o', trace, '--', exe, String(rounds), String(inner)], { stdio: 'ignore' });
    if (rec.status !== 0) throw new Error('recording the workload failed');
    const replay = timed(['replay', trace]);
    process.stdout.write(`workload: ${rounds} rounds of ${inner} iterations, one call of step() and one write of total a round\n`);
    process.stdout.write(`forward replay of the whole recording: ${replay.toFixed(2)} s\n`);
    let worst = 0;
    for (const words of [
      ['calls', 'step'],
      ['writes', 'total'],
      ['syscalls', 'write'],
      ['syscalls'],
    ]) {
      const t = timed(['query', trace, ...words, '--json']);
      worst = Math.max(worst, t / replay);
      process.stdout.write(`query ${words.join(' ').padEnd(16)} ${t.toFixed(2)} s  ${(t / replay).toFixed(2)}x the replay\n`);
    }
    process.stdout.write(`worst: ${worst.toFixed(2)}x (goal: at most 1.5x)\n`);
    return worst <= 1.5 ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = runQueryBench(Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 500000));
}
