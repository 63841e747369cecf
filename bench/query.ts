// Queries over a whole recording (issue 16, "Performance"): the time of each kind of query
// against a forward replay of the same recording, measured in the same run, twice: in this
// process (the engine's replay against answerQuery: the replay passes alone), and through the
// CLI (what a user waits for, process start-up included on both sides). The goal is at most
// 1.5x the replay.
//
// Usage: node dist/bench/query.js [ROUNDS [INNER]]   (default 1000 rounds of 500000 iterations)
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadEngine, stubPath } from '../native/index.js';
import { eventsPath, readManifest } from '../trace/manifest.js';
import { answerQuery, parseQuery } from '../trace/query.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, '..', '..');
const cli = join(repo, 'dist', 'cli', 'main.js');

/** Seconds `rewind ARGS` takes, its output discarded. */
function timed(args: string[]): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`rewind ${args.join(' ')} failed: ${r.stderr.toString()}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

async function seconds(f: () => Promise<unknown>): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t) / 1e9;
}

/** Prints each query's best time against the replay's; returns the worst ratio. */
function report(what: string, replay: number, best: number[]): number {
  process.stdout.write(`${what}: forward replay of the whole recording ${replay.toFixed(2)} s\n`);
  let worst = 0;
  QUERIES.forEach((words, i) => {
    const t = best[i]!;
    worst = Math.max(worst, t / replay);
    process.stdout.write(`  query ${words.join(' ').padEnd(16)} ${t.toFixed(2)} s  ${(t / replay).toFixed(2)}x the replay\n`);
  });
  return worst;
}

const QUERIES = [['calls', 'step'], ['writes', 'total'], ['syscalls', 'write'], ['syscalls']];

export async function runQueryBench(rounds: number, inner: number): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), 'rewind-bench-query-'));
  try {
    const exe = join(work, 'query_work');
    execFileSync('gcc', ['-O1', '-g', '-o', exe, join(repo, 'bench', 'query_work.c')]);
    const trace = join(work, 'trace');
    const rec = spawnSync(process.execPath, [cli, 'record', '-o', trace, '--', exe, String(rounds), String(inner)], { stdio: 'ignore' });
    if (rec.status !== 0) throw new Error('recording the workload failed');
    process.stdout.write(`workload: ${rounds} rounds of ${inner} iterations, one call of step() and one write of total a round\n`);
    // Best of three, the replay and the queries taken in turns: the machine is shared, and its
    // load drifts more over a minute than between two runs in a row.
    const manifest = readManifest(trace);
    const engine = loadEngine();
    const options = { traceDir: trace, eventsPath: eventsPath(manifest, trace), stubPath: stubPath(), stdoutFd: -1, stderrFd: -1 };
    let replay = Infinity;
    let best = QUERIES.map(() => Infinity);
    for (let round = 0; round < 3; round++) {
      replay = Math.min(replay, await seconds(() => engine.replay(options)));
      for (const [i, words] of QUERIES.entries()) best[i] = Math.min(best[i]!, await seconds(() => answerQuery(trace, parseQuery(words))));
    }
    let worst = report('in process', replay, best);
    replay = Infinity;
    best = QUERIES.map(() => Infinity);
    for (let round = 0; round < 3; round++) {
      replay = Math.min(replay, timed(['replay', trace]));
      QUERIES.forEach((words, i) => (best[i] = Math.min(best[i]!, timed(['query', trace, ...words, '--json']))));
    }
    worst = Math.max(worst, report('through the CLI', replay, best));
    process.stdout.write(`worst: ${worst.toFixed(2)}x (goal: at most 1.5x)\n`);
    return worst <= 1.5 ? 0 : 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await runQueryBench(Number(process.argv[2] ?? 1000), Number(process.argv[3] ?? 500000));
}
