// Issue 2, acceptance 5 and 6, and the CLI contract around traces: refusals at record time,
// self-checking replay of tampered traces, versioned traces, `info --json`, default trace paths.
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { hostname, release } from 'node:os';
import { basename, join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  baseEnv,
  blobPath,
  cleanupTemps,
  compile,
  describeRun,
  encodeEventStream,
  EVENT_TYPES,
  eventsBlob,
  expectCleanFailure,
  expectRecorded,
  expectSameRun,
  parseEventStream,
  readManifest,
  record,
  replaceEventsBlob,
  replay,
  requireCli,
  rewind,
  setSyscallNr,
  sha256,
  syscallOf,
  tempDir,
  type Recording,
} from './harness.js';

afterAll(cleanupTemps);
beforeAll(requireCli);

const SYS_write = 1;
const SYS_getpid = 39;

async function recordHello(): Promise<Recording> {
  const rec = await record(compile('hello'), []);
  expectRecorded(rec, 3);
  expect(rec.stdout.toString()).toBe('hello from rewind\n');
  return rec;
}

describe('refused at record time', () => {
  it('a second thread: recorded faithfully (issue 3)', async () => {
    const rec = await record(compile('thread', { extra: ['-pthread'] }), []);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toBe('starting a thread\njoined\n');
    expect(readManifest(rec.traceDir).counts?.tasks).toBe(2);
    expectSameRun(rec, await replay(rec.traceDir));
  });

  it('a second process (fork): recorded faithfully, both processes replayed exactly', async () => {
    const rec = await record(compile('fork'), []);
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toMatch(/^forking\nchild random=[0-9a-f]{16}\nchild exited 7\n$/);
    expect(readManifest(rec.traceDir).counts?.tasks).toBe(2);
    expectSameRun(rec, await replay(rec.traceDir));
  });

  it('a program that does not exist: clean error', async () => {
    const rec = await record('/nonexistent/program', []);
    expectCleanFailure(rec, /nonexistent|not found|No such file|ENOENT/i);
  });

  it('a syscall the recorder does not know stops recording and names it', async () => {
    const rec = await record(compile('unknown_syscall'), []);
    expectCleanFailure(rec, /lookup_dcookie|syscall_212|\b212\b/);
    // Never a silent wrong trace: no complete trace that replays as if nothing happened.
    if (existsSync(join(rec.traceDir, 'manifest.json'))) {
      const rep = await replay(rec.traceDir);
      expect(rep.status, describeRun(rep)).not.toBe(0);
    }
  });
});

describe('tampered traces', () => {
  it('one syscall number changed: replay stops with "diverged at event N"', async () => {
    const rec = await recordHello();
    const { path } = eventsBlob(rec.traceDir);
    const stream = parseEventStream(readFileSync(path));
    // The fixture's only write(1, "hello from rewind\n", 18).
    const target = stream.records.find((r) => {
      if (r.type !== EVENT_TYPES.syscall) return false;
      const s = syscallOf(r);
      return s.nr === SYS_write && s.args[0] === 1n && s.args[2] === 18n;
    });
    expect(target, 'no write(1, ..., 18) syscall record in the events').toBeDefined();
    if (!target) return;
    setSyscallNr(target, SYS_getpid);
    replaceEventsBlob(rec.traceDir, encodeEventStream(stream));

    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /diverged at event \d+/);
    const n = Number(/diverged at event (\d+)/.exec(rep.stderr.toString())?.[1]);
    // 0- or 1-based numbering, but it must name the tampered event.
    expect([target.index, target.index + 1], rep.stderr.toString()).toContain(n);
    expect(rep.stderr.toString().trim().split('\n'), 'more than one line on stderr').toHaveLength(1);
    // The program's write was not performed.
    expect(rep.stdout.toString()).toBe('');
  });

  it('one syscall argument changed (write to fd 2 instead of 1): replay diverges at that event', async () => {
    const rec = await recordHello();
    const { path } = eventsBlob(rec.traceDir);
    const stream = parseEventStream(readFileSync(path));
    const target = stream.records.find((r) => {
      if (r.type !== EVENT_TYPES.syscall) return false;
      const s = syscallOf(r);
      return s.nr === SYS_write && s.args[0] === 1n && s.args[2] === 18n;
    });
    expect(target, 'no write(1, ..., 18) syscall record in the events').toBeDefined();
    if (!target) return;
    target.body.writeBigUInt64LE(2n, 9); // args[0]
    replaceEventsBlob(rec.traceDir, encodeEventStream(stream));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /diverged at event \d+/);
    const n = Number(/diverged at event (\d+)/.exec(rep.stderr.toString())?.[1]);
    expect([target.index, target.index + 1], rep.stderr.toString()).toContain(n);
    expect(rep.stdout.toString()).toBe('');
  });

  it('the untampered stream round-trips through the harness encoder and still replays', async () => {
    // Guards the test above: a re-encoded, unchanged stream must replay, so a divergence there is
    // caused by the changed syscall number and not by the harness.
    const rec = await recordHello();
    const { path } = eventsBlob(rec.traceDir);
    replaceEventsBlob(rec.traceDir, encodeEventStream(parseEventStream(readFileSync(path))));
    expectSameRun(rec, await replay(rec.traceDir));
  });

  it('events blob truncated to half: clean error, no hang', async () => {
    const rec = await recordHello();
    const { path, entry } = eventsBlob(rec.traceDir);
    truncateSync(path, Math.floor(entry.size / 2));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /trace|event|truncat|damaged|incomplete/i);
  });

  it('events blob of a long run (many chunks) truncated to half: clean error, no hang', async () => {
    const chunk = Buffer.from('0123456789abcdef'.repeat(4) + '\n');
    const input = Buffer.concat(Array.from({ length: 20000 }, () => chunk));
    const rec = await record(compile('stdin_cat'), [], { input });
    expectRecorded(rec, 0);
    const { path, entry } = eventsBlob(rec.traceDir);
    truncateSync(path, Math.floor(entry.size / 2));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /trace|event|truncat|damaged|incomplete/i);
    // Whatever was replayed before the error is a prefix of the recorded output.
    expect(rec.stdout.subarray(0, rep.stdout.length).equals(rep.stdout)).toBe(true);
    expect(rep.stdout.length).toBeLessThan(rec.stdout.length);
  });

  it('bytes flipped in the middle of the events blob: clean error, no hang', async () => {
    const rec = await recordHello();
    const { path } = eventsBlob(rec.traceDir);
    const b = readFileSync(path);
    const mid = Math.floor(b.length / 2);
    for (let i = mid; i < Math.min(mid + 8, b.length); i++) b[i] = (b[i] ?? 0) ^ 0xff;
    writeFileSync(path, b);
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /trace|event|checksum|damaged|corrupt|sha256/i);
  });

  it('manifest version 99: refused, naming the supported versions', async () => {
    const rec = await recordHello();
    const m = readManifest(rec.traceDir);
    const supported = m.version;
    expect(typeof supported).toBe('number');
    writeFileSync(join(rec.traceDir, 'manifest.json'), JSON.stringify({ ...m, version: 99 }, null, 2));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /support/i);
    const err = rep.stderr.toString();
    expect(err).toMatch(/\b99\b/);
    expect(err).toMatch(new RegExp(`\\b${supported}\\b`));
    const info = await rewind(['info', rec.traceDir]);
    expectCleanFailure(info, /support/i);
  });

  it('a file blob missing (the mapped libc): clean error naming it, no hang', async () => {
    const rec = await recordHello();
    const m = readManifest(rec.traceDir);
    const libc = m.blobs.find((b) => b.role === 'file' && /libc\.so/.test(b.path ?? ''));
    expect(libc, JSON.stringify(m.blobs)).toBeDefined();
    if (!libc) return;
    rmSync(blobPath(rec.traceDir, libc.sha256));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /blob|missing|libc|not found|No such file/i);
    expect(rep.stdout.toString()).toBe('');
  });

  it('manifest.json that is not JSON: clean error', async () => {
    const rec = await recordHello();
    writeFileSync(join(rec.traceDir, 'manifest.json'), '{"format": "rewind-trace", "version": 1, ');
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /manifest/i);
    const info = await rewind(['info', rec.traceDir]);
    expectCleanFailure(info, /manifest/i);
  });

  it("another program's event stream in the trace: replay stops cleanly, prints nothing wrong", async () => {
    const rec = await recordHello();
    const other = await record(compile('vdso_time'), []);
    expectRecorded(other, 0);
    replaceEventsBlob(rec.traceDir, readFileSync(eventsBlob(other.traceDir).path));
    const rep = await replay(rec.traceDir);
    expectCleanFailure(rep, /diverged|blob|missing|trace|event/i);
    expect(rep.stdout.toString()).not.toContain('hello from rewind');
    expect(rep.stdout.toString()).not.toMatch(/realtime=/);
  });

  it('a directory that is not a trace: clean error', async () => {
    const rep = await replay(tempDir('rewind-not-a-trace-'));
    expectCleanFailure(rep, /manifest|trace/i);
  });
});

describe('rewind info', () => {
  it('--json: every manifest field, with sane values', async () => {
    const exe = compile('hello');
    const before = Date.now();
    const rec = await record(exe, []);
    expectRecorded(rec, 3);
    const r = await rewind(['info', rec.traceDir, '--json']);
    expect(r.status, describeRun(r)).toBe(0);
    const info = JSON.parse(r.stdout.toString()) as Record<string, unknown>;
    const manifest = readManifest(rec.traceDir);

    for (const key of ['format', 'version', 'id', 'argv', 'exe', 'cwd', 'host', 'startTime', 'endTime', 'durationMs', 'exit', 'counts', 'blobs']) {
      expect(info, `info --json lacks "${key}"`).toHaveProperty(key);
      expect(info[key], `info --json "${key}" differs from manifest.json`).toEqual(manifest[key]);
    }
    expect(typeof info.format).toBe('string');
    expect(Number.isInteger(info.version)).toBe(true);
    expect(info.argv).toEqual([exe]);
    expect(realpathSync(String(info.exe))).toBe(realpathSync(exe));
    expect(info.cwd).toBe(process.cwd());

    const host = info.host as { hostname: string; kernel: string; arch: string; cpu: { model: string; vendor: string; flags: unknown } };
    expect(host.hostname).toBe(hostname());
    expect(host.kernel).toContain(release());
    expect(host.arch).toBe('x86_64');
    expect(host.cpu.model.length).toBeGreaterThan(0);
    expect(host.cpu.vendor).toMatch(/GenuineIntel|AuthenticAMD|\w+/);
    const flags = Array.isArray(host.cpu.flags) ? host.cpu.flags : String(host.cpu.flags).split(/\s+/);
    expect(flags).toContain('sse2');

    const start = Date.parse(String(info.startTime));
    const end = Date.parse(String(info.endTime));
    expect(start).toBeGreaterThanOrEqual(before - 2000);
    expect(end).toBeGreaterThanOrEqual(start);
    expect(end).toBeLessThanOrEqual(Date.now() + 2000);
    expect(info.durationMs as number).toBeGreaterThanOrEqual(0);
    expect(info.durationMs as number).toBeLessThan(60_000);

    expect(info.exit).toMatchObject({ status: 3, code: 3 });
    expect((info.exit as { signal: unknown }).signal ?? null).toBeNull();

    const counts = info.counts as { events: number; tasks: number; syscalls: number; bytes: number };
    expect(counts.syscalls).toBeGreaterThan(0);
    expect(counts.events).toBeGreaterThanOrEqual(counts.syscalls);
    expect(counts.tasks).toBe(1);
    expect(counts.bytes).toBeGreaterThan(0);

    // Content addressing: every listed blob exists, with its size and its sha256 as its name.
    const blobs = info.blobs as { sha256: string; size: number; role: string }[];
    expect(blobs.filter((b) => b.role === 'events')).toHaveLength(1);
    for (const b of blobs) {
      const data = readFileSync(blobPath(rec.traceDir, b.sha256));
      expect(data.length, `blob ${b.sha256} (${b.role})`).toBe(b.size);
      expect(sha256(data), `blob ${b.sha256} (${b.role})`).toBe(b.sha256);
    }
    expect(readdirSync(join(rec.traceDir, 'blobs')).sort()).toEqual([...new Set(blobs.map((b) => b.sha256))].sort());

    // The event stream agrees with the counts.
    const stream = parseEventStream(readFileSync(eventsBlob(rec.traceDir).path));
    expect(stream.records.length).toBe(counts.events);
    expect(stream.records.filter((e) => e.type === EVENT_TYPES.syscall).length).toBe(counts.syscalls);
  });

  it('human output names the program, host, kernel and exit status', async () => {
    const exe = compile('abort');
    const rec = await record(exe, []);
    expectRecorded(rec, 134);
    const r = await rewind(['info', rec.traceDir]);
    expect(r.status, describeRun(r)).toBe(0);
    const out = r.stdout.toString();
    expect(out).toContain(exe);
    expect(out).toContain(hostname());
    expect(out).toContain(release());
    expect(out).toMatch(/134|SIGABRT/);
    expect(out).toMatch(/syscalls/i);
  });
});

describe('default trace location', () => {
  it('$REWIND_TRACE_DIR/<program>-<n>, a latest link, and replay/info default to it', async () => {
    const dir = tempDir('rewind-traces-');
    const env = baseEnv({ REWIND_TRACE_DIR: dir });
    const exe = compile('hello');
    const first = await rewind(['record', '--', exe], { env });
    expect(first.status, describeRun(first)).toBe(3);
    const second = await rewind(['record', '--', exe], { env });
    expect(second.status, describeRun(second)).toBe(3);

    const traces = readdirSync(dir).filter((n) => n !== 'latest').sort();
    expect(traces, readdirSync(dir).join(' ')).toHaveLength(2);
    for (const t of traces) expect(t).toMatch(/^hello-\d+$/);
    expect(existsSync(join(dir, 'latest'))).toBe(true);
    const latest = resolve(dir, readlinkSync(join(dir, 'latest')));
    expect(statSync(join(latest, 'manifest.json')).isFile()).toBe(true);
    // The path is printed on stderr at the end.
    expect(second.stderr.toString()).toContain(basename(latest));
    const firstName = traces.find((t) => first.stderr.toString().includes(t));
    expect(firstName, first.stderr.toString()).toBeDefined();
    expect(basename(latest)).not.toBe(firstName);

    const rep = await rewind(['replay'], { env, input: '' });
    expect(rep.status, describeRun(rep)).toBe(3);
    expect(rep.stdout.toString()).toBe('hello from rewind\n');
    expect(rep.stderr.toString()).toBe('');

    const info = await rewind(['info', '--json'], { env });
    expect(info.status, describeRun(info)).toBe(0);
    expect((JSON.parse(info.stdout.toString()) as { id: string }).id).toBe(readManifest(latest).id);
  });
});
