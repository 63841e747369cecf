// Issue 3, acceptance 2: threads take turns, switch at syscalls, are preempted when they run
// too long without one, and replay follows the recorded schedule.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_TYPES, FIXTURES, cleanupTemps, compile, eventsBlob, parseEventStream, readManifest, realPython, recordReplay, requireCli, run, tempDir } from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

describe('threads', () => {
  it('exec_threads: an exec from the main thread ends the thread sleeping in a syscall, in recording and replay, each of 5 recordings', async () => {
    const exe = compile('exec_threads', { extra: ['-pthread'] });
    for (let i = 0; i < 5; i++) {
      const { rec } = await recordReplay(exe, ['main'], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe("about to exec\nthe exec'd image runs: tid is pid 1, threads 1\n");
    }
  });

  it("exec_threads: an exec from a second thread ends the main thread and another, and takes the main thread's tid (5 recordings); so after the main thread ended; 20 children in turn", async () => {
    const exe = compile('exec_threads', { extra: ['-pthread'] });
    const image = "the exec'd image runs: tid is pid 1, threads 1\n";
    for (let i = 0; i < 5; i++) {
      const { rec } = await recordReplay(exe, ['other'], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(image);
      // The exec event names the thread that called execve; the stream names it by its
      // process's pid after it, to its end.
      const { records } = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
      const tid = (r: { body: Buffer }): number => r.body.readUInt32LE(1);
      const execs = records.filter((r) => r.type === EVENT_TYPES.exec);
      expect(execs).toHaveLength(2);
      const pid = tid(execs[0]!);
      expect(tid(execs[1]!)).not.toBe(pid);
      const last = records[records.length - 1]!;
      expect([last.type, tid(last)]).toEqual([EVENT_TYPES.exit, pid]);
    }
    const { rec: gone } = await recordReplay(exe, ['leader_gone'], { expectStatus: 0 });
    expect(gone.stdout.toString()).toBe(image);
    const { rec: rounds } = await recordReplay(exe, ['rounds'], { expectStatus: 0 });
    expect(rounds.stdout.toString()).toBe("20 children exec'd from a second thread\n");
  });

  it('clone_vm_exec: a child process sharing its parent\'s memory (CLONE_VM, no CLONE_THREAD) signals it and execs, each of 3 recordings', async () => {
    const exe = compile('clone_vm_exec');
    for (let i = 0; i < 3; i++) {
      const { rec } = await recordReplay(exe, [], { expectStatus: 0 });
      expect(rec.stdout.toString()).toBe(
        "the exec'd child runs: its pid is its tid 1\nsignalled; the child saw itself as clone's result 1; it exited with 5\n",
      );
    }
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
