// Service benchmarks of issue 4 ("Performance"), measured in one run:
//   - upload throughput of a 500 MB trace over loopback, against a plain file copy of the same bytes
//   - bytes sent for a first and a second trace of the same program (dedup), from the server's counters
//   - `rewind ls` filtered query latency (p50/p99) over gRPC with 100,000 traces in the catalogue
// The server runs as its own process (`rewind server`), as in production.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { call, connect, type Clients } from '../../remote/client.js';
import { pushTrace } from '../../remote/upload.js';
import { ListTracesRequest } from '../../gen/rewind/catalog/v1/catalog.js';
import { openCatalog, type Catalog, type NewTrace } from '../catalog/catalog.js';
import { parseManifest } from '../../trace/manifest.js';

export interface ServiceBenchOptions {
  /** Size of the upload trace in MiB (default 500). */
  uploadMiB?: number;
  /** Traces in the catalogue for the ls benchmark (default 100,000). */
  catalogTraces?: number;
  print?: (line: string) => void;
}

const here = path.dirname(fileURLToPath(import.meta.url));
// dist/server/bench -> repo root; server/bench -> repo root.
const REPO = fs.existsSync(path.join(here, '../../package.json')) ? path.resolve(here, '../..') : path.resolve(here, '../../..');
const CLI = path.join(REPO, 'dist/cli/main.js');

interface Srv {
  child: ChildProcess;
  address: string;
  token: string;
}

function startServer(dataDir: string, extra: string[] = []): Promise<Srv> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'server', '--data', dataDir, '--listen', '127.0.0.1:0', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    const timer = setTimeout(() => reject(new Error('server did not start')), 30_000);
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      for (const line of buf.split('\n')) {
        try {
          const j = JSON.parse(line) as { msg?: string; address?: string };
          if (j.msg === 'rewind server listening' && j.address) {
            clearTimeout(timer);
            resolve({ child, address: j.address, token: fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim() });
          }
        } catch {
          // partial line
        }
      }
    });
    child.on('exit', (code) => reject(new Error(`server exited with ${code}`)));
  });
}

function stop(s: Srv): Promise<void> {
  return new Promise((resolve) => {
    if (s.child.exitCode !== null) return resolve();
    s.child.once('exit', () => resolve());
    s.child.kill('SIGTERM');
  });
}

function mbps(bytes: number, ms: number): string {
  return `${(bytes / (1 << 20) / (ms / 1000)).toFixed(0)} MB/s`;
}

function writeTrace(dir: string, blobs: Buffer[], argv: string[]): void {
  fs.mkdirSync(path.join(dir, 'blobs'), { recursive: true });
  const list = blobs.map((b, i) => {
    const sha = createHash('sha256').update(b).digest('hex');
    fs.writeFileSync(path.join(dir, 'blobs', sha), b);
    return { sha256: sha, size: b.length, role: i === 0 ? 'events' : 'file', path: i === 0 ? undefined : `/lib/blob${i}` };
  });
  const now = new Date().toISOString();
  fs.writeFileSync(
    path.join(dir, 'manifest.json'),
    JSON.stringify({
      format: 'rewind-trace', version: 1, id: randomUUID(), argv, exe: `/usr/bin/${argv[0]}`, cwd: '/', env: [], user: 'bench',
      host: { hostname: os.hostname(), kernel: os.release(), arch: 'x86_64', cpu: { model: '', vendor: '', flags: [] } },
      startTime: now, endTime: now, durationMs: 1, exit: { status: 0, code: 0, signal: null }, complete: true,
      counts: { events: 1, tasks: 1, syscalls: 1, bytes: 1 }, blobs: list,
    }),
  );
}

async function uploadBench(work: string, mib: number, print: (l: string) => void): Promise<void> {
  const trace = path.join(work, 'upload-trace');
  // Incompressible bytes in 16 blobs of up to 64 MiB, like captured files.
  const blobs: Buffer[] = [];
  let left = mib << 20;
  while (left > 0) {
    const n = Math.min(left, 64 << 20);
    blobs.push(randomBytes(n));
    left -= n;
  }
  writeTrace(trace, blobs, ['bench-upload']);
  const total = blobs.reduce((a, b) => a + b.length, 0);
  blobs.length = 0;

  // Plain copy of the same bytes, fsynced like the blob store does.
  const copyDir = path.join(work, 'copy');
  fs.mkdirSync(copyDir);
  let t = process.hrtime.bigint();
  for (const name of fs.readdirSync(path.join(trace, 'blobs'))) {
    const dest = path.join(copyDir, name);
    fs.copyFileSync(path.join(trace, 'blobs', name), dest);
    const fd = fs.openSync(dest, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  const copyMs = Number(process.hrtime.bigint() - t) / 1e6;
  fs.rmSync(copyDir, { recursive: true });

  // Median of three uploads, each to a fresh server (so nothing is deduplicated).
  const runs: { ms: number; sent: number; clientCpuMs: number; serverCpuMs: number }[] = [];
  for (let i = 0; i < 3; i++) {
    const dataDir = path.join(work, `upload-server-${i}`);
    const srv = await startServer(dataDir);
    const c = connect({ server: srv.address, token: srv.token, tls: false });
    try {
      const s0 = processCpuMs(srv.child.pid);
      const c0 = process.cpuUsage();
      t = process.hrtime.bigint();
      const res = await pushTrace(c, trace, { retries: 0 });
      const ms = Number(process.hrtime.bigint() - t) / 1e6;
      const cu = process.cpuUsage(c0);
      runs.push({ ms, sent: res.bytesSent, clientCpuMs: (cu.user + cu.system) / 1000, serverCpuMs: processCpuMs(srv.child.pid) - s0 });
    } finally {
      c.close();
      await stop(srv);
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }
  const med = [...runs].sort((a, b) => a.ms - b.ms)[1]!;
  const each = runs.map((r) => mbps(total, r.ms)).join(', ');
  print(`upload ${(total / (1 << 20)).toFixed(0)} MiB over loopback: ${med.ms.toFixed(0)} ms, ${mbps(total, med.ms)} (median of 3: ${each}; sent ${med.sent} B)`);
  print(`  CPU per upload (median run): client ${(med.clientCpuMs / 1000).toFixed(2)} s, server ${(med.serverCpuMs / 1000).toFixed(2)} s on ${os.cpus().length} cores`);
  print(`plain file copy of the same bytes (fsynced): ${copyMs.toFixed(0)} ms, ${mbps(total, copyMs)}`);
  print(`upload / copy throughput ratio: ${(copyMs / med.ms).toFixed(2)}`);
}

/** CPU time (user + system) a process has used so far, from /proc (0 where there is none). */
function processCpuMs(pid: number | undefined): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return 0;
  }
}

async function stats(c: Clients): Promise<{ wire: number; decoded: number }> {
  const s = await call(c, c.catalog.getStats.bind(c.catalog), {});
  return { wire: Number(s.bytesReceived), decoded: Number(s.blobBytesReceived) };
}

async function dedupBench(work: string, print: (l: string) => void): Promise<void> {
  if (!fs.existsSync(path.join(REPO, 'native/build/Release/rewind.node'))) {
    print('dedup: skipped (native engine not built)');
    return;
  }
  const program = ['python3', '-c', 'pass'];
  const dirs = [path.join(work, 'dedup-1'), path.join(work, 'dedup-2')];
  for (const d of dirs) {
    const r = spawnSync(process.execPath, [CLI, 'record', '-o', d, '--', ...program], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (!fs.existsSync(path.join(d, 'manifest.json'))) {
      print(`dedup: skipped (recording failed: ${r.stderr.toString().trim().split('\n').pop() ?? ''})`);
      return;
    }
  }
  const srv = await startServer(path.join(work, 'dedup-server'));
  const c = connect({ server: srv.address, token: srv.token, tls: false });
  try {
    const s0 = await stats(c);
    const r1 = await pushTrace(c, dirs[0]!);
    const s1 = await stats(c);
    await pushTrace(c, dirs[1]!);
    const s2 = await stats(c);
    const first = s1.wire - s0.wire;
    const second = s2.wire - s1.wire;
    const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)} %`;
    print(`dedup (${program.join(' ')}): trace ${r1.totalBytes} B; sent first ${first} B, second ${second} B (${pct(second, first)})`);
    const firstRaw = s1.decoded - s0.decoded;
    const secondRaw = s2.decoded - s1.decoded;
    print(`dedup before compression: first ${firstRaw} B, second ${secondRaw} B (${pct(secondRaw, firstRaw)})`);
  } finally {
    c.close();
    await stop(srv);
  }
}

/** Commits `n` synthetic traces (ten programs, fifty hosts, some failed or labelled) in batches. */
export async function loadSynthetic(cat: Catalog, n: number, print: (l: string) => void): Promise<void> {
  const programs = ['ls', 'make', 'gcc', 'python3', 'node', 'bash', 'curl', 'git', 'ssh', 'rg'];
  const signals = [null, null, null, null, null, null, null, null, 'SIGSEGV', 'SIGABRT'];
  const blob = 'a'.repeat(64);
  await cat.blobs.add(blob, 4096);
  const t = process.hrtime.bigint();
  for (let start = 0; start < n; start += 5000) {
    const batch: NewTrace[] = [];
    for (let i = start; i < Math.min(n, start + 5000); i++) {
      const p = programs[i % programs.length]!;
      const sig = signals[i % signals.length] ?? null;
      const status = sig === 'SIGSEGV' ? 139 : sig === 'SIGABRT' ? 134 : i % 7 === 0 ? 1 : 0;
      const json = JSON.stringify({
        format: 'rewind-trace', version: 1, id: randomUUID(), argv: [p, `arg${i}`, `file${i % 977}.c`], exe: `/usr/bin/${p}`,
        cwd: '/home/u', user: 'u', host: { hostname: `host${i % 50}` }, startTime: new Date(Date.now() - i * 60_000).toISOString(),
        durationMs: i % 1000, exit: { status, code: sig ? null : status, signal: sig }, complete: true,
        blobs: [{ sha256: blob, size: 4096, role: 'events' }],
      });
      batch.push({ manifest: parseManifest(json), manifestJson: json, labels: i % 3 === 0 ? { team: `t${i % 5}` } : {}, tokenId: 'bench' });
    }
    await cat.traces.commitMany(batch);
    if ((start + 5000) % 100_000 === 0) print(`  ${start + 5000} traces loaded in ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`);
  }
  print(`catalogue (${cat.kind}): ${n} traces inserted in ${(Number(process.hrtime.bigint() - t) / 1e6).toFixed(0)} ms`);
}

/**
 * `ls` latency over gRPC with `n` synthetic traces in the catalogue `catalog` (default: SQLite in
 * the server's data directory; a PostgreSQL URL must name an empty database), loaded in batches.
 */
export async function lsBench(work: string, n: number, print: (l: string) => void, catalog?: string): Promise<void> {
  const dataDir = fs.mkdtempSync(path.join(work, 'ls-server-'));
  const cat = await openCatalog(dataDir, catalog);
  await loadSynthetic(cat, n, print);
  await cat.close();

  const srv = await startServer(dataDir, catalog ? ['--catalog', catalog] : []);
  const c = connect({ server: srv.address, token: srv.token, tls: false });
  try {
    const queries: Partial<ListTracesRequest>[] = [
      { host: 'host7' }, { program: 'gcc' }, { failed: true }, { signal: 'SIGSEGV' }, { exitStatus: 1 },
      { labels: { team: 't2' } }, { search: 'file42' }, { host: 'host3', failed: true }, { since: new Date(Date.now() - 86_400_000) },
      { program: 'make', labels: { team: 't1' } },
    ];
    // A call that reads no trace, between the queries: what the machine and gRPC cost alone.
    const times: number[] = [];
    const base: number[] = [];
    const timed = async (into: number[], fn: () => Promise<unknown>): Promise<void> => {
      const t = process.hrtime.bigint();
      await fn();
      into.push(Number(process.hrtime.bigint() - t) / 1e6);
    };
    for (let round = 0; round < 30; round++) {
      for (const q of queries) {
        await timed(times, () => call(c, c.catalog.listTraces.bind(c.catalog), ListTracesRequest.fromPartial({ ...q, limit: 50 })));
        await timed(base, () => call(c, c.tokens.whoAmI.bind(c.tokens), {}));
      }
    }
    const pct = (xs: number[], p: number): string => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!.toFixed(2);
    print(
      `ls filtered query over gRPC (${catalog ? 'postgres' : 'sqlite'}), ${n} traces, ${times.length} queries: p50 ${pct(times, 0.5)} ms, p99 ${pct(times, 0.99)} ms` +
        ` (WhoAmI between them: p50 ${pct(base, 0.5)} ms, p99 ${pct(base, 0.99)} ms)`,
    );
  } finally {
    c.close();
    await stop(srv);
  }
}

export async function runServiceBench(opts: ServiceBenchOptions = {}): Promise<void> {
  const print = opts.print ?? ((l: string) => process.stdout.write(`${l}\n`));
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-service-bench-'));
  try {
    await uploadBench(work, opts.uploadMiB ?? 500, print);
    await dedupBench(work, print);
    await lsBench(work, opts.catalogTraces ?? 100_000, print);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
