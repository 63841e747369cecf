// Issue 11: replay and debug workers are a sandbox that holds even when the replayer has a bug
// (docs/security.md, "Replay workers are a sandbox"). A real server replays real recordings in
// sandboxed workers; the tests look at each worker's world from inside (a probe worker that
// does what `rewind replay` does and reports what it sees) and from outside (/proc/PID/root of
// the real workers while they run).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, type Clients } from '../../remote/client.js';
import { openRemoteDebugBridge } from '../../remote/debug_bridge.js';
import { remoteReplay } from '../../remote/replay.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import { rewind } from './cli.js';
import { descendants, REPO, startTestServer, tmpDir, until, type TestServer } from './helpers.js';

const RELEASE = path.join(REPO, 'native/build/Release');
const engineBuilt = fs.existsSync(path.join(RELEASE, 'rewind.node'));
const LAUNCHER = path.join(RELEASE, 'rewind-sandbox');
const STUB = path.join(RELEASE, 'rewind-stub');
const PROBE = path.join(REPO, 'test/server/fixtures/sandbox_probe.mjs');
const MiB = 2 ** 20;

/** What the probe worker saw (test/server/fixtures/sandbox_probe.mjs). */
interface ProbeReport {
  netBefore: string;
  netAfter: string;
  bigWrite: string;
  view: string[];
  rootView: string[];
  cwdView: string[];
  canaries: Record<string, string>;
  processes: { pid: number; cmdline: string[] }[];
  alloc: string;
  replay: string;
}

class Sink extends Writable {
  chunks: Buffer[] = [];
  /** While set, the next write waits for it: the worker blocks on its full pipe meanwhile. */
  private held: Promise<void> | undefined;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.chunks.push(Buffer.from(chunk));
    if (this.held) void this.held.then(() => cb());
    else cb();
  }
  hold(released: Promise<void>): void {
    this.held = released;
  }
  get bytes(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

interface Replayed {
  status: number | Error;
  out: Sink;
  err: Sink;
}

function replay(ts: TestServer, token: string, id: string, out = new Sink()): Promise<Replayed> {
  const err = new Sink();
  return remoteReplay(id, { server: ts.address, token, stdout: out, stderr: err }).then(
    (status) => ({ status, out, err }),
    (e: Error) => ({ status: e, out, err }),
  );
}

/** Every path under `root` (links not followed), relative to it; /proc, not what it holds. */
function walk(root: string): string[] {
  const out: string[] = [];
  const visit = (rel: string): void => {
    out.push(rel);
    if (!fs.lstatSync(root + rel).isDirectory()) return;
    for (const e of fs.readdirSync(root + rel)) {
      const child = path.posix.join(rel, e);
      if (child === '/proc') out.push(child);
      else visit(child);
    }
  };
  visit('/');
  return out.sort();
}

/**
 * The exact view a confined worker must have: "/", /proc, the trace directory with its manifest
 * and blobs, the stub, and the directories that lead to them; nothing else.
 */
function expectedView(traceDir: string, blobs: string[]): string[] {
  const paths = new Set<string>(['/', '/proc']);
  for (const p of [traceDir, STUB]) {
    for (let d = path.dirname(p); d !== '/'; d = path.dirname(d)) paths.add(d);
    paths.add(p);
  }
  paths.add(path.join(traceDir, 'manifest.json'));
  paths.add(path.join(traceDir, 'blobs'));
  for (const b of blobs) paths.add(path.join(traceDir, 'blobs', b));
  return [...paths].sort();
}

/** The session's trace directory in a view: the one holding manifest.json. */
function traceDirIn(view: string[]): string {
  const manifests = view.filter((p) => p.endsWith('/manifest.json'));
  expect(manifests).toHaveLength(1);
  return path.dirname(manifests[0]!);
}

function blobsOf(traceDir: string): string[] {
  const m = JSON.parse(fs.readFileSync(path.join(traceDir, 'manifest.json'), 'utf8')) as { blobs: { sha256: string }[] };
  return [...new Set(m.blobs.map((b) => b.sha256))];
}

interface SeenProcess {
  pid: number;
  ppid: number;
  /** The kernel's name for it: the program it exec'd. */
  name: string;
  cmdline: string[];
}

/** The sandbox's processes as the worker `pid` sees them (its /proc). */
function processesSeenBy(pid: number): SeenProcess[] {
  const proc = `/proc/${pid}/root/proc`;
  return fs
    .readdirSync(proc)
    .filter((e) => /^\d+$/.test(e))
    .map((p) => {
      const status = fs.readFileSync(`${proc}/${p}/status`, 'utf8');
      const field = (f: string): string => new RegExp(`^${f}:\\s*(.*)$`, 'm').exec(status)![1]!;
      const cmdline = fs.readFileSync(`${proc}/${p}/cmdline`, 'utf8').split('\0').filter(Boolean);
      return { pid: Number(p), ppid: Number(field('PPid')), name: field('Name'), cmdline };
    })
    .sort((a, b) => a.pid - b.pid);
}

/** init (the launcher), the worker, and the replayed program's processes: children of the worker, never pid 1. */
function expectSandboxProcesses(procs: SeenProcess[], worker: string): void {
  expect(procs.slice(0, 2).map((p) => [p.pid, p.ppid])).toEqual([
    [1, 0],
    [2, 1],
  ]);
  expect(procs[0]!.cmdline[0]).toBe(LAUNCHER);
  expect(procs[1]!.cmdline.join(' ')).toContain(worker);
  expect(procs.length).toBeGreaterThan(2);
  for (const t of procs.slice(2)) expect([t.name, t.ppid]).toEqual(['rewind-stub', 2]);
}

describe.skipIf(!engineBuilt)('replay and debug workers are a sandbox', () => {
  const work = tmpDir('rewind-sandbox-');
  const traces: Record<'hello' | 'big' | 'bigShared' | 'head' | 'debuggee', string> = { hello: '', big: '', bigShared: '', head: '', debuggee: '' };
  const ids: Record<string, string> = {};
  let canaries: string[];
  let listener: net.Server;
  let port: number;
  let connections = 0;
  let probeServer: TestServer;
  let realServer: TestServer;
  let probeReader: string;
  let realReader: string;

  const record = (name: keyof typeof traces, argv: string[]): void => {
    const dir = path.join(work, 'traces', name);
    const r = spawnSync(process.execPath, [path.join(REPO, 'dist/cli/main.js'), 'record', '-o', dir, '--', ...argv], {
      encoding: 'utf8',
      maxBuffer: 64 * MiB,
    });
    expect(fs.existsSync(path.join(dir, 'manifest.json')), r.stderr).toBe(true);
    traces[name] = dir;
  };
  const compile = (name: string, flags: string[] = ['-O1']): string => {
    const exe = path.join(work, name);
    const cc = spawnSync('gcc', [...flags, '-o', exe, path.join(REPO, `test/fixtures/${name}.c`)], { encoding: 'utf8' });
    expect(cc.status, cc.stderr).toBe(0);
    return exe;
  };
  const push = async (ts: TestServer, name: keyof typeof traces): Promise<string> => {
    const agent: Clients = ts.client(await ts.token('agent'));
    return (await pushTrace(agent, traces[name])).traceId;
  };

  beforeAll(async () => {
    record('hello', [compile('hello')]);
    const bigAlloc = compile('big_alloc');
    record('big', [bigAlloc, '600']);
    record('bigShared', [bigAlloc, '600', 'shared']);
    record('head', ['/usr/bin/head', '-c', String(4 * MiB), '/dev/zero']);
    record('debuggee', [compile('debuggee', ['-g', '-O0'])]);

    listener = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((r) => listener.listen(0, '127.0.0.1', r));
    port = (listener.address() as net.AddressInfo).port;

    const probeData = tmpDir('rewind-sandbox-server-');
    const realData = tmpDir('rewind-sandbox-server-');
    canaries = [path.join(os.tmpdir(), `rewind-canary-${process.pid}`), path.join(probeData, 'canary'), path.join(realData, 'canary')];
    for (const c of canaries) fs.writeFileSync(c, 'the worker must not read this\n');
    const params = { canaries, port, fileSizeBytes: MiB, allocBytes: 1.5 * 2 ** 30 };
    probeServer = await startTestServer({
      dataDir: probeData,
      replayCommand: [process.execPath, PROBE, JSON.stringify(params)],
      sandbox: { memoryBytes: 2 ** 30, fileSizeBytes: MiB },
    });
    realServer = await startTestServer({ dataDir: realData, sandbox: { memoryBytes: 512 * MiB } });
    probeReader = await probeServer.token('reader');
    realReader = await realServer.token('reader');
    ids.probeHello = await push(probeServer, 'hello');
    for (const name of ['hello', 'big', 'bigShared', 'head', 'debuggee'] as const) ids[name] = await push(realServer, name);
  }, 120_000);
  afterAll(async () => {
    for (const c of canaries ?? []) fs.rmSync(c, { force: true });
    listener?.close();
    await probeServer?.close();
    await realServer?.close();
  });

  it('from inside: no network, no file but the trace and the stub, no process but its own, bounded memory and files', async () => {
    const local = await rewind(['replay', traces.hello]);
    const r = await replay(probeServer, probeReader, ids.probeHello!);
    const stderr = r.err.bytes.toString();
    const line = stderr.split('\n').find((l) => l.startsWith('probe: '));
    expect(line, stderr).toBeDefined();
    const p = JSON.parse(line!.slice('probe: '.length)) as ProbeReport;

    // It still replays, byte for byte.
    expect(p.replay).toBe('ok');
    expect(r.status).toBe(local.status);
    expect(r.out.bytes.toString()).toBe(local.stdout);

    // Network: the namespace has no interface up; after confine() no socket can even be made.
    expect(p.netBefore).toBe('ENETUNREACH');
    expect(p.netAfter).toBe('EPERM');
    expect(connections).toBe(0);

    // Files: the whole view, exactly.
    const traceDir = traceDirIn(p.view);
    expect(traceDir.startsWith(path.join(probeServer.dataDir, 'tmp', 'replay-'))).toBe(true);
    expect(p.view.sort()).toEqual(expectedView(traceDir, blobsOf(traces.hello)));
    expect(p.rootView).toEqual(p.cwdView); // init's working directory leads nowhere else
    for (const [where, result] of Object.entries(p.canaries)) expect(result, where).toBe('ENOENT');
    expect(Object.keys(p.canaries).length).toBe(canaries.length * 6);

    // Processes: the sandbox's init and the worker; nothing of the server's.
    expect(p.processes.map((x) => x.pid)).toEqual([1, 2]);
    expect(p.processes[0]!.cmdline[0]).toBe(LAUNCHER);
    expect(p.processes[1]!.cmdline.slice(0, 2)).toEqual([process.execPath, PROBE]);

    // Resources: memory past RLIMIT_DATA cannot be had; a file cannot grow past RLIMIT_FSIZE.
    expect(p.alloc).toBe('RangeError');
    expect(p.bigWrite).toBe('EFBIG');
  });

  it('the real replay worker is confined while it replays, and replays byte for byte', async () => {
    for (const name of ['hello', 'head'] as const) {
      const local = await rewind(['replay', traces[name]]);
      let release!: () => void;
      const out = new Sink();
      // Holding the client's first write fills the worker's pipe: it waits, mid-replay, to be looked at.
      if (name === 'head') out.hold(new Promise<void>((r) => (release = r)));
      const running = replay(realServer, realReader, ids[name]!, out);
      if (name === 'head') {
        await until('the worker to block on its output', () => out.chunks.length > 0 && descendants('replay', 'replay-').length === 1, 30_000);
        const [pid] = descendants('replay', 'replay-');
        const root = `/proc/${pid}/root`;
        const view = walk(root);
        const traceDir = traceDirIn(view);
        expect(view).toEqual(expectedView(traceDir, blobsOf(traces.head)));
        for (const c of canaries) expect(fs.existsSync(root + c), c).toBe(false);
        // Never pid 1: a program there would ignore signals that kill it when recorded.
        expectSandboxProcesses(processesSeenBy(pid!), 'replay_worker.js');
        release();
      }
      const r = await running;
      expect(r.status, r.err.bytes.toString()).toBe(local.status);
      expect(r.out.bytes.toString()).toBe(local.stdout);
      expect(r.err.bytes.toString()).toBe(local.stderr);
    }
  }, 60_000);

  it('the real debug worker is confined too, with its replayed program never pid 1', async () => {
    const bridge = await openRemoteDebugBridge(ids.debuggee!, { server: realServer.address, token: realReader }, 0);
    try {
      const sock = net.connect(bridge.port, '127.0.0.1');
      sock.on('error', () => {});
      let got = '';
      sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
      const body = 'qSupported:multiprocess+;swbreak+;hwbreak+';
      const sum = [...Buffer.from(body)].reduce((a, b) => (a + b) & 0xff, 0);
      sock.write(`$${body}#${sum.toString(16).padStart(2, '0')}`);
      await until('the qSupported reply', () => /\$[^#]*ReverseContinue\+[^#]*#/.test(got), 30_000);
      const [pid] = descendants('debug', '--stdio');
      const root = `/proc/${pid}/root`;
      const view = walk(root);
      expect(view).toEqual(expectedView(traceDirIn(view), blobsOf(traces.debuggee)));
      for (const c of canaries) expect(fs.existsSync(root + c), c).toBe(false);
      expectSandboxProcesses(processesSeenBy(pid!), '--stdio');
      sock.destroy();
    } finally {
      await bridge.close();
    }
  }, 60_000);

  it('a replayed program that allocates past the bound is stopped with a clear error; the server keeps answering', async () => {
    // Private memory (which the worker's RLIMIT_DATA counts too) and shared memory (which only
    // the replayed program's own RLIMIT_AS counts).
    for (const [name, said] of [
      ['big', 'touched 600 MiB\n'],
      ['bigShared', 'touched 600 MiB of shared memory\n'],
    ] as const) {
      const local = await rewind(['replay', traces[name]]);
      expect(local.stdout).toBe(said);
      const r = await replay(realServer, realReader, ids[name]!);
      expect(r.status).toBe(125);
      expect(r.out.bytes.length).toBe(0);
      const text = r.err.bytes.toString();
      // The hint names the trace as its user knows it, and following it shows the event.
      const hint = /^rewind: replay diverged at event (\d+) \(task \d+\): mmap\(.*\) returned -12, recorded \d+; the events around it: rewind dump (\S+) --from (\d+) --to (\d+)\n$/.exec(text);
      expect(hint, text).not.toBeNull();
      const [, at, traceName, from, to] = hint!;
      expect(traceName).toBe(ids[name]);
      const dumped = await rewind(['dump', traceName!, '--from', from!, '--to', to!, '--server', realServer.address, '--token', realReader]);
      expect(dumped.status, dumped.stderr).toBe(0);
      const lines = dumped.stdout.trimEnd().split('\n');
      expect(lines.map((l) => Number(/^\s*(\d+) /.exec(l)?.[1])).slice(0, 1)).toEqual([Number(from)]);
      expect(lines.find((l) => l.trimStart().startsWith(`${at}  `)), dumped.stdout).toMatch(/ task \d+ {2}mmap\(.*\) = 0x[0-9a-f]+$/);
    }

    const admin = realServer.client(realServer.adminToken);
    const list = await call(admin, admin.catalog.listTraces.bind(admin.catalog), ListTracesRequest.fromPartial({}));
    expect(list.traces.length).toBe(Object.keys(traces).length);
    const again = await replay(realServer, realReader, ids.hello!);
    expect(again.status).toBe(3);
    expect(again.out.bytes.toString()).toBe('hello from rewind\n');
  }, 120_000);

  it('a worker past its CPU time is stopped, and says so', async () => {
    const ts = await startTestServer({
      replayCommand: [process.execPath, '-e', 'for (;;);'],
      sandbox: { cpuSeconds: 1 },
    });
    try {
      const id = await push(ts, 'hello');
      const r = await replay(ts, await ts.token('reader'), id);
      expect(r.status).toBeInstanceOf(Error);
      expect((r.status as Error).message).toBe('remote replay failed: replay worker crashed (killed by SIGXCPU); only this session was affected');
      expect(r.err.bytes.toString()).toBe('rewind-sandbox: the worker used up its CPU time (1 s) and was stopped\n');
    } finally {
      await ts.close();
    }
  }, 30_000);

  it.skipIf(process.getuid?.() !== 0)('works unprivileged: the same sandbox for a user with no capabilities', async () => {
    // A copy of the trace that user can read; the probe as that user, under the launcher.
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-sandbox-nobody-'));
    try {
      fs.chmodSync(home, 0o755);
      const dir = path.join(home, 'trace');
      fs.cpSync(traces.hello, dir, { recursive: true });
      for (const p of [dir, ...walk(dir).map((p) => dir + p)]) fs.chownSync(p, 65534, 65534);
      const params = { canaries: [canaries[0]], port, fileSizeBytes: MiB, allocBytes: 1.5 * 2 ** 30 };
      const argv = ['--reuid=65534', '--regid=65534', '--clear-groups', LAUNCHER, '--trace', dir, '--memory', String(2 ** 30)];
      const child = spawn('setpriv', [...argv, '--file-size', String(MiB), '--', process.execPath, PROBE, JSON.stringify(params), dir], { cwd: dir });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const status = await new Promise<number | null>((r) => child.on('close', r));
      const line = stderr.split('\n').find((l) => l.startsWith('probe: '));
      expect(line, stderr).toBeDefined();
      const p = JSON.parse(line!.slice('probe: '.length)) as ProbeReport;
      expect(status).toBe(3);
      expect(stdout).toBe('hello from rewind\n');
      expect(p.replay).toBe('ok');
      expect([p.netBefore, p.netAfter]).toEqual(['ENETUNREACH', 'EPERM']);
      expect(p.view.sort()).toEqual(expectedView(dir, blobsOf(traces.hello)));
      for (const [where, result] of Object.entries(p.canaries)) expect(result, where).toBe('ENOENT');
      expect(p.processes.map((x) => x.pid)).toEqual([1, 2]);
      expect([p.alloc, p.bigWrite]).toEqual(['RangeError', 'EFBIG']);
    } finally {
      fs.rmSync(home, { recursive: true, force: true });
    }
  }, 30_000);
});
