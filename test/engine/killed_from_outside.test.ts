// Issue 10: a program killed with SIGKILL from outside as it writes to stdout. A kill that lands
// after a write returned in the kernel, but before the recorder saw its exit stop, took that
// stop away (the kernel does not stop a task with SIGKILL pending): the recording printed the
// line, and a replay without its record printed one line fewer, with the same status and no
// word of it. The recorder now records such a syscall at the task's PTRACE_EVENT_EXIT; where it
// cannot know what the syscall did, replay must say so by name, never print other bytes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  CLI,
  EVENT_TYPES,
  baseEnv,
  cleanupTemps,
  compile,
  encodeEventStream,
  eventsBlob,
  expectCleanFailure,
  filteredOf,
  filteredOffset,
  parseEventStream,
  replaceEventsBlob,
  replay,
  requireCli,
  syscallOf,
  tempDir,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const RUNS = 40; // per mode: the kill lands in the window in about one recording of four

/** Records `program`, and SIGKILLs it (not rewind) once it printed its pid line and `lines` more. */
function recordThenKill(
  program: string,
  lines: number,
  flags: readonly string[],
): Promise<{ traceDir: string; stdout: string; status: number | null }> {
  const traceDir = join(tempDir('rewind-trace-'), 'trace');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'record', ...flags, '-o', traceDir, '--', program], {
      env: baseEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let sent = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString('latin1');
      const pid = /^pid (\d+)\n/.exec(stdout);
      if (!sent && pid && stdout.split('\n').length - 2 >= lines) {
        sent = true;
        process.kill(Number(pid[1]), 'SIGKILL');
      }
    });
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ traceDir, stdout, status });
    });
  });
}

describe('a program SIGKILLed from outside as it writes', () => {
  for (const mode of ['with', 'without'] as const) {
    it(`${RUNS} recordings ${mode} the syscall buffer: each replay prints what the recording printed, or says why it cannot`, async () => {
      const exe = compile('write_until_killed');
      const flags = mode === 'with' ? [] : ['--no-syscall-buffer'];
      let atExitStop = 0;
      for (let i = 0; i < RUNS; i++) {
        const rec = await recordThenKill(exe, 1 + ((i * 7) % 60), flags);
        expect(rec.status, rec.stdout.slice(-200)).toBe(128 + 9);
        expect(rec.stdout).toMatch(/^pid \d+\n(line \d+\n)+/);
        const rep = await replay(rec.traceDir);
        const out = rep.stdout.toString('latin1');
        if (out !== rec.stdout || rep.status !== rec.status) {
          // Not a silent difference: a refusal that names the syscall, after a prefix of the output.
          expectCleanFailure(rep, /a SIGKILL ended the task in write\(/);
          expect(rec.stdout.startsWith(out), 'replay printed what the recording did not').toBe(true);
        }
        // A syscall recorded at the task's PTRACE_EVENT_EXIT (filtered 5: "seen as it was killed").
        const records = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path)).records;
        if (records.some((r) => r.type === EVENT_TYPES.syscall && filteredOf(r) === 5)) atExitStop++;
      }
      // The race is the point: some recordings must have had their last write taken at its end.
      expect(atExitStop, 'no kill landed between a write and its exit stop').toBeGreaterThan(0);
    }, 300_000);
  }

  // No stop told the recorder whether the write ran (the kill came in it, and took its exit stop
  // and its PTRACE_EVENT_EXIT away): its record says so (filtered 4), and replay stops there.
  it('a write whose end the recorder could not see: replay refuses by name after what came before', async () => {
    const rec = await recordThenKill(compile('write_until_killed'), 3, []);
    const stream = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
    const writes = stream.records.filter((r) => r.type === EVENT_TYPES.syscall && syscallOf(r).nr === 1);
    const last = writes[writes.length - 1]!;
    // type, tid, nr, 6 args, result, echo: then the count of writes (none).
    expect(last.body.readUInt32LE(1 + 4 + 4 + 48 + 8 + 1)).toBe(0);
    last.body.writeUInt8(4, filteredOffset(last));
    replaceEventsBlob(rec.traceDir, encodeEventStream(stream));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /replay cannot go on at event \d+ \(task \d+\): a SIGKILL ended the task in write\(0x1, /);
    const out = rep.stdout.toString('latin1');
    expect(rec.stdout.startsWith(out) && out.length < rec.stdout.length, out).toBe(true);
  });
});
