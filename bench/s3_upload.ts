// `node dist/bench/s3_upload.js`: upload throughput to an S3 store through `rewind server
// --blobs s3://…` against a plain multipart upload of the same bytes with the SDK (same part
// size, same parts in flight), side by side in one run (goal ≥ 80%); then the server's peak RSS
// (VmHWM) while that trace was uploaded and replayed (goal < 300 MB).
//
// The store: REWIND_BENCH_BLOBS=s3://BUCKET/PREFIX, with the usual AWS_* variables (endpoint,
// region, keys). Size of the blob: REWIND_BENCH_S3_MB (default 2048). A real recording is made
// of a program that maps a file of that size (test/fixtures/mmap_sum.c), so the trace's big blob
// is that file.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CompleteMultipartUploadCommand, CreateMultipartUploadCommand, DeleteObjectCommand, UploadPartCommand, type CompletedPart } from '@aws-sdk/client-s3';
import { DEFAULT_PART_SIZE, parseS3Url, s3Client } from '../server/blobstore/s3.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = fs.existsSync(path.join(here, '..', 'package.json')) ? path.resolve(here, '..') : path.resolve(here, '..', '..');
const CLI = path.join(REPO, 'dist', 'cli', 'main.js');
const PARTS_IN_FLIGHT = 4; // the store's default

function run(args: string[], env: NodeJS.ProcessEnv = process.env): { ms: number; stdout: string; stderr: string } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [CLI, ...args], { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`rewind ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return { ms: performance.now() - t, stdout: r.stdout, stderr: r.stderr };
}

/** The plain SDK: one multipart upload of the file, read part by part from disk. */
async function plainUpload(file: string, bucket: string, key: string): Promise<number> {
  const client = s3Client();
  const size = fs.statSync(file).size;
  const fd = fs.openSync(file, 'r');
  const t = performance.now();
  try {
    const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }));
    const parts: CompletedPart[] = [];
    let next = 0;
    const count = Math.ceil(size / DEFAULT_PART_SIZE);
    const worker = async (): Promise<void> => {
      while (next < count) {
        const n = next++;
        const len = Math.min(DEFAULT_PART_SIZE, size - n * DEFAULT_PART_SIZE);
        const buf = Buffer.allocUnsafe(len);
        fs.readSync(fd, buf, 0, len, n * DEFAULT_PART_SIZE);
        const r = await client.send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: n + 1, Body: buf, ContentLength: len }));
        parts[n] = { PartNumber: n + 1, ETag: r.ETag };
      }
    };
    await Promise.all(Array.from({ length: PARTS_IN_FLIGHT }, worker));
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }));
    return performance.now() - t;
  } finally {
    fs.closeSync(fd);
    await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })).catch(() => undefined);
    client.destroy();
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

async function main(): Promise<void> {
  const blobs = process.env.REWIND_BENCH_BLOBS;
  if (!blobs) throw new Error('set REWIND_BENCH_BLOBS=s3://BUCKET/PREFIX (and AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)');
  const loc = parseS3Url(blobs);
  const mb = Number(process.env.REWIND_BENCH_S3_MB ?? 2048);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rewind-bench-s3-'));
  try {
    const data = path.join(work, 'data.bin');
    const fd = fs.openSync(data, 'w');
    const chunk = randomBytes(16 << 20);
    for (let i = 0; i < mb / 16; i++) {
      chunk.writeUInt32LE(i, 0); // no two chunks alike
      fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
    const bytes = fs.statSync(data).size;
    const exe = path.join(work, 'mmap_sum');
    const cc = spawnSync('gcc', ['-O1', '-o', exe, path.join(REPO, 'test', 'fixtures', 'mmap_sum.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`gcc: ${cc.stderr}`);
    const trace = path.join(work, 'trace');
    const rec = run(['record', '-o', trace, '--', exe, data]);

    const plainMs = await plainUpload(data, loc.bucket, `${loc.prefix}bench-plain-${process.pid}`);

    const dataDir = path.join(work, 'server');
    const srv = spawn(process.execPath, [CLI, 'server', '--data', dataDir, '--listen', '127.0.0.1:0', '--blobs', blobs], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const address = await new Promise<string>((resolve, reject) => {
        let out = '';
        let line = '';
        srv.stdout.on('data', (d: Buffer) => {
          out += d.toString();
          // What went wrong on the way (a part refused, a stream broken) explains a slow figure:
          // the server's warnings and errors, by whole lines (a chunk may end in the middle of one).
          const lines = (line + d.toString()).split('\n');
          line = lines.pop()!;
          for (const l of lines) if (/"level":[456]0/.test(l)) console.error(`server: ${l}`);
          const m = /"address":"([^"]+)"[^\n]*"msg":"rewind server listening"|"msg":"rewind server listening"[^\n]*"address":"([^"]+)"/.exec(out);
          if (m) resolve((m[1] ?? m[2])!);
        });
        srv.once('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
      });
      const env = { ...process.env, REWIND_SERVER: address, REWIND_TOKEN: fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim() };
      const cpu0 = cpuSeconds(srv.pid!);
      const push = run(['push', trace], env);
      const serverCpu = cpuSeconds(srv.pid!) - cpu0;
      for (const l of push.stderr.split('\n')) if (/interrupted/.test(l)) console.error(`push: ${l}`);
      const id = push.stdout.trim();
      const afterUpload = peakRss(srv.pid!);
      const replay = run(['replay', id], env);
      if (replay.stdout !== rec.stdout) throw new Error(`remote replay printed ${JSON.stringify(replay.stdout)}, the recording ${JSON.stringify(rec.stdout)}`);
      const afterReplay = peakRss(srv.pid!);
      const rate = (ms: number): string => `${((bytes / (1 << 20)) / (ms / 1000)).toFixed(1)} MiB/s`;
      console.log(`S3 upload of a ${(bytes / (1 << 20)).toFixed(0)} MiB blob (${loc.bucket}, parts of ${DEFAULT_PART_SIZE >> 20} MiB, ${PARTS_IN_FLIGHT} in flight)`);
      console.log(`  plain SDK multipart upload     ${(plainMs / 1000).toFixed(2)} s  ${rate(plainMs)}`);
      console.log(`  rewind push through the server ${(push.ms / 1000).toFixed(2)} s  ${rate(push.ms)}  (whole trace, CLI start-up included; server CPU ${serverCpu.toFixed(1)} s)`);
      console.log(`  ratio server / plain           ${((plainMs / push.ms) * 100).toFixed(0)}%   (goal >= 80%)`);
      console.log(`  remote replay                  ${(replay.ms / 1000).toFixed(2)} s  (blob fetched into the cache, verified)`);
      console.log(`  server peak RSS                ${(afterUpload / (1 << 20)).toFixed(0)} MiB after the upload, ${(afterReplay / (1 << 20)).toFixed(0)} MiB after the replay   (goal < 300 MB)`);
    } finally {
      srv.kill('SIGTERM');
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(1);
});
