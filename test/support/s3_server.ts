// A real S3-compatible server for the suites: OpenStack Swift (Debian's swift-* packages, 2.30)
// with its s3api middleware, as a single-node "SAIO" in a temp directory: one device, rings
// built by swift-ring-builder with one replica, tempauth holding one static S3 key pair.
// Started on free ports and waited for (each server answers, then a bucket is created), never slept on.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { start, type Running } from './process.js';
import { tempDir } from './tmp.js';

const BIN = '/usr/bin';
const SERVERS = ['account', 'container', 'object'] as const;
/** tempauth keeps its tokens in memcache, even for S3 requests. */
const MEMCACHED = '/usr/bin/memcached';
/** How a developer gets the server (the same packages .ci/run installs). */
export const S3_INSTALL_HINT = 'apt-get install -y swift-proxy swift-object swift-container swift-account python3-swift memcached';

/** Why Swift cannot run here, or undefined when it can. */
export function s3Unavailable(): string | undefined {
  if (!fs.existsSync(MEMCACHED)) return 'memcached is not installed';
  for (const b of ['swift-proxy-server', 'swift-object-server', 'swift-container-server', 'swift-account-server', 'swift-ring-builder']) {
    if (!fs.existsSync(path.join(BIN, b))) return `${b} is not installed`;
  }
  return undefined;
}

/**
 * Skip or fail: a developer without Swift sees the suite skipped with one line saying how to get
 * it; under CI (CI set by .ci/run, which installs it) the suite fails instead.
 */
export function s3SkipReason(): string | undefined {
  const why = s3Unavailable();
  if (!why) return undefined;
  if (process.env.CI) throw new Error(`the S3 tests need OpenStack Swift, which CI installs (${why}): ${S3_INSTALL_HINT}`);
  console.warn(`skipping the S3 tests: ${why}; to run them: ${S3_INSTALL_HINT}`);
  return why;
}

export interface S3Server {
  endpoint: string;
  bucket: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** AWS_* variables that point the SDK (and a rewind server) at this store. */
  env: Record<string, string>;
  client(): S3Client;
  /** Kills every Swift process (SIGKILL) and starts them again on the same ports and data. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? resolve(a.port) : reject(new Error('no port'))));
    });
  });
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1');
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Waits until the process listens on `port`; fails with its output if it ends first or after `ms`. */
async function listening(p: Running, port: number, ms = 180_000): Promise<void> {
  let ended = false;
  void p.done.then(() => (ended = true));
  const end = Date.now() + ms;
  while (!(await accepts(port))) {
    if (ended || Date.now() > end) {
      throw new Error(`${p.command} ${ended ? 'ended' : `did not listen on ${port} in ${ms} ms`}\n${p.stdout()}\n${p.stderr()}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

function conf(dir: string, name: string, text: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, text);
  return f;
}

export async function startS3Server(): Promise<S3Server> {
  const root = tempDir('rewind-swift-');
  const devices = path.join(root, 'srv');
  fs.mkdirSync(path.join(devices, 'd1'), { recursive: true });
  const ports = { memcached: await freePort(), proxy: await freePort(), account: await freePort(), container: await freePort(), object: await freePort() };
  const common = `[DEFAULT]\nswift_dir = ${root}\ndevices = ${devices}\nmount_check = false\nbind_ip = 127.0.0.1\nworkers = 0\nlog_level = WARNING\nlog_address = /dev/null\n`;
  conf(root, 'swift.conf', '[swift-hash]\nswift_hash_path_suffix = rewind-test\n\n[storage-policy:0]\nname = gold\ndefault = yes\n');
  for (const s of SERVERS) {
    const builder = path.join(root, `${s}.builder`);
    execFileSync(path.join(BIN, 'swift-ring-builder'), [builder, 'create', '6', '1', '0'], { stdio: 'ignore' });
    execFileSync(path.join(BIN, 'swift-ring-builder'), [builder, 'add', `r1z1-127.0.0.1:${ports[s]}/d1`, '1'], { stdio: 'ignore' });
    execFileSync(path.join(BIN, 'swift-ring-builder'), [builder, 'rebalance'], { stdio: 'ignore' });
    conf(root, `${s}-server.conf`, `${common}bind_port = ${ports[s]}\n\n[pipeline:main]\npipeline = ${s}-server\n\n[app:${s}-server]\nuse = egg:swift#${s}\n`);
  }
  const accessKeyId = 'rewind:tester';
  const secretAccessKey = 'rewind-test-secret';
  const region = 'us-east-1';
  conf(
    root,
    'proxy-server.conf',
    `${common}bind_port = ${ports.proxy}\n\n` +
      '[pipeline:main]\npipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats s3api tempauth copy slo dlo proxy-logging proxy-server\n\n' +
      '[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n' +
      `[filter:tempauth]\nuse = egg:swift#tempauth\nuser_rewind_tester = ${secretAccessKey} .admin\n\n` +
      `[filter:s3api]\nuse = egg:swift#s3api\nlocation = ${region}\n\n` +
      `[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:${ports.memcached}\n\n` +
      '[filter:catch_errors]\nuse = egg:swift#catch_errors\n\n[filter:gatekeeper]\nuse = egg:swift#gatekeeper\n\n' +
      '[filter:healthcheck]\nuse = egg:swift#healthcheck\n\n[filter:proxy-logging]\nuse = egg:swift#proxy_logging\n\n' +
      '[filter:listing_formats]\nuse = egg:swift#listing_formats\n\n[filter:copy]\nuse = egg:swift#copy\n\n' +
      '[filter:slo]\nuse = egg:swift#slo\n\n[filter:dlo]\nuse = egg:swift#dlo\n',
  );

  let procs: Running[] = [];
  const launch = async (): Promise<void> => {
    // The storage servers first: the proxy answers as soon as it listens.
    const cache = { p: start(MEMCACHED, ['-l', '127.0.0.1', '-p', String(ports.memcached), '-U', '0', '-m', '64', '-u', 'root'], { timeoutMs: 6 * 3600_000 }), port: ports.memcached };
    const started = SERVERS.map((s) => ({ p: start(path.join(BIN, `swift-${s}-server`), [path.join(root, `${s}-server.conf`)], { timeoutMs: 6 * 3600_000 }), port: ports[s] }));
    const proxy = { p: start(path.join(BIN, 'swift-proxy-server'), [path.join(root, 'proxy-server.conf')], { timeoutMs: 6 * 3600_000 }), port: ports.proxy };
    procs = [cache, ...started, proxy].map((x) => x.p);
    await Promise.all([cache, ...started, proxy].map((x) => listening(x.p, x.port)));
  };
  const kill = async (): Promise<void> => {
    const ending = procs.map((p) => p.done);
    for (const p of procs) {
      try {
        if (p.child.pid !== undefined) process.kill(-p.child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    await Promise.all(ending);
    procs = [];
  };

  // Swift runs detached (its own process groups): it must not outlive the test process.
  process.on('exit', () => {
    for (const p of procs) if (p.child.pid !== undefined) try { process.kill(-p.child.pid, 'SIGKILL'); } catch { /* gone */ }
  });
  const endpoint = `http://127.0.0.1:${ports.proxy}`;
  const bucket = 'rewind-test';
  const client = (): S3Client =>
    new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  // The first request that passes through to the account and container servers.
  const c = client();
  try {
    await launch();
    await c.send(new CreateBucketCommand({ Bucket: bucket }));
  } catch (err) {
    await kill();
    throw err;
  } finally {
    c.destroy();
  }
  return {
    endpoint,
    bucket,
    region,
    accessKeyId,
    secretAccessKey,
    env: {
      AWS_ENDPOINT_URL: endpoint,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
    },
    client,
    restart: async () => {
      await kill();
      await launch();
    },
    stop: kill,
  };
}
