// Issue 13, problem 3: Ctrl-C at the terminal of `rewind debug` (gdb launched for the user). The
// terminal sends SIGINT to its whole foreground process group: rewind, gdb, and whatever else is
// in it. gdb must get the interrupt and pass it on, as in the --stdio and server modes; the
// replayed processes and the engine must not see it.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { baseEnv, CLI, cleanupTemps, compile, expectRecorded, record, requireCli } from '../engine/harness.js';

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const exe = compile('ticker', { extra: ['-O1'] });
  // About 3 s of computation in 10 ms rounds, a letter written after each.
  const rec = await record(exe, ['300']);
  expectRecorded(rec, 0);
  traceDir = rec.traceDir;
}, 60_000);

afterAll(cleanupTemps);

it('Ctrl-C to the foreground process group of `rewind debug` interrupts gdb\'s continue, and the replay goes on undisturbed', async () => {
  const commands = ['continue', 'info registers rip', 'reverse-stepi', 'stepi', 'info registers rip', 'monitor when', 'continue'];
  const gdbArgs = ['-batch', '-nx', '-iex', 'set pagination off', '-iex', 'set confirm off'];
  commands.forEach((c, i) => gdbArgs.push('-ex', `echo @@${i}@@\\n`, '-ex', c));
  gdbArgs.push('-ex', 'echo @@end@@\\n');
  // A process group of its own, as a shell gives a foreground job. The program's output (the
  // replay's letters) and gdb's share one pipe, stderr too, so that they keep their order.
  const child = spawn('sh', ['-c', 'exec "$@" 2>&1', 'sh', process.execPath, CLI, 'debug', traceDir, '--', ...gdbArgs], {
    env: baseEnv({ HOME: '/nonexistent' }),
    stdio: ['ignore', 'pipe', 'ignore'],
    detached: true,
  });
  let out = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? -1 : null))));
  const waitFor = async (test: () => boolean, what: string): Promise<void> => {
    const end = Date.now() + 60_000;
    while (!test()) {
      if (Date.now() > end) throw new Error(`no ${what} in 60 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    // The continue runs: the replay has written some of its letters.
    await waitFor(() => /@@0@@\n[^]*[a-z]{20}/.test(out), 'replayed output');
    process.kill(-child.pid!, 'SIGINT');
    const status = await exited;
    const section = (i: number): string => out.slice(out.indexOf(`@@${i}@@`), out.indexOf(i + 1 < commands.length ? `@@${i + 1}@@` : '@@end@@'));
    expect(out, out).not.toMatch(/diverged|stopped unexpectedly|Remote connection closed/);
    expect(section(0), out).toMatch(/Program received signal SIGINT, Interrupt\./);
    const rip = (t: string): string | undefined => /rip +(0x[0-9a-f]+)/.exec(t)?.[1];
    expect(rip(section(1)), out).toBeDefined();
    expect(rip(section(4)), out).toBe(rip(section(1)));
    const when = /event (\d+) of (\d+)/.exec(section(5));
    expect(when, out).not.toBeNull();
    expect(Number(when![1]), out).toBeLessThan(Number(when![2]));
    // And on to the end of the recording, all of its output written.
    expect(section(6), out).toMatch(/No more reverse-execution history\./);
    expect(out.match(/[a-z]/g)!.length, out).toBeGreaterThanOrEqual(300);
    expect(status, out).toBe(0);
  } finally {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // ended already
    }
  }
}, 120_000);
