// Issue 3, acceptance 2: threads take turns, switch at syscalls, are preempted when they run
// too long without one, and replay follows the recorded schedule.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES, FIXTURES, cleanupTemps, compile, eventsBlob, expectCleanFailure, parseEventStream, readManifest, realPython, record, recordReplay, requireCli, run, tempDir } from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

describe('threads', () => {
  it('exec_threads: an exec from the main thread ends the thread sleeping in a syscall, in recording and replay, each of 5 recordings; an exec from another thread is refused by name', async () => {
    const exe = compile('exec_threads', { extra: ['-pthread'] });
    for (let i = 0; i < 5; i++) {
      const { rec } = await recordReplay(exe, ['main'], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe("about to exec\nthe exec'd image runs\n");
    }
    const other = await record(exe, ['other']);
    expectCleanFailure(other, /the program called execve in a thread other than its main one, which rewind cannot record yet/);
  });

  it('8 threads racing on an unsynchronised counter: native runs differ, replay follows the recording', async () => {
    const exe = compile('racing_threads', { extra: ['-pthread'] });
    const outputs = new Set<string>();
    for (let i = 0; i < 5 && outputs.size < 2; i++) outputs.add((await run(exe, [])).stdout.toString());
    expect(outputs.size, 'five native runs all printed the same').toBeGreaterThan(1);
    const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^(thread \d saw \d+\n){8}total \d+\n$/);
    const m = readManifest(rec.traceDir) as unknown as { processes: { threads: number[] }[] };
    expect(m.processes).toHaveLength(1);
    expect(m.processes[0]!.threads).toHaveLength(8);
  });

  it('a thread spinning on a flag another thread sets: record does not hang, replay does not diverge', async () => {
    const { rec } = await recordReplay(compile('spin_flag', { extra: ['-pthread'] }), [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^flag seen at \d+\.\d{9}\n$/);
  });

  it('4 threads computing in tight loops around a mutex: preempted inside the loops, replayed at those points', async () => {
    const exe = compile('compute_threads', { extra: ['-pthread'] });
    for (let i = 0; i < 2; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toMatch(/^[a-d]{40} \d+\n$/);
      const events = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
      expect(events.records.filter((r) => r.type === EVENT_TYPES.preempt).length, 'no thread was preempted').toBeGreaterThan(0);
    }
  });

  it('Rust: std::thread workers and an mpsc channel', async () => {
    const out = join(tempDir(), 'channels');
    const r = spawnSync('rustc', ['-O', '-o', out, join(FIXTURES, 'channels.rs')], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const { rec } = await recordReplay(out, [], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^(worker \d sent \d+\n){4}$/);
  });

  it('python3 with threading', async () => {
    const script =
      'import threading, random, time\n' +
      'out = []\n' +
      'def work(i):\n' +
      '    time.sleep(random.random() / 100)\n' +
      '    out.append((i, random.randint(0, 10**6)))\n' +
      'ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]\n' +
      '[t.start() for t in ts]\n' +
      '[t.join() for t in ts]\n' +
      'print(out, time.time())\n';
    const { rec } = await recordReplay(realPython(), ['-c', script], { expectStatus: 0 });
    expect(rec.stdout.toString()).toMatch(/^\[\(\d, \d+\)(, \(\d, \d+\)){3}\] \d+\.\d+\n$/);
  });

  it('node -e with a timer', async () => {
    const { rec } = await recordReplay(process.execPath, ['-e', 'setTimeout(()=>console.log(Math.random(), Date.now()), 10)'], {
      expectStatus: 0,
    });
    expect(rec.stdout.toString()).toMatch(/^0\.\d+ \d+\n$/);
  });
});
