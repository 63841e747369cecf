import type { Command } from 'commander';
import { UserError } from '../../trace/user_error.js';

interface ServerFlags {
  data?: string;
  catalog?: string;
  listen?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxSessions?: string;
  maxSessionsPerToken?: string;
  idleTimeout?: string;
  debugIdleTimeout?: string;
  uploadQuota?: string;
  maxBlob?: string;
  blobs?: string;
  s3Endpoint?: string;
  blobCache?: string;
  logLevel?: string;
  http?: string;
  lease?: string;
}

/** A size in GiB (fractions allowed); 0 only where `zeroOk`. */
function gib(v: string | undefined, what: string, zeroOk: boolean): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || (n === 0 && !zeroOk)) throw new UserError(`${what} must be a ${zeroOk ? 'non-negative' : 'positive'} number of GiB`);
  return Math.round(n * 2 ** 30);
}

function positiveInt(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new UserError(`${what} must be a positive integer`);
  return n;
}

interface MigrateFlags {
  from: string;
  catalog?: string;
  blobs?: string;
  s3Endpoint?: string;
  json?: boolean;
}

function registerMigrate(server: Command): void {
  server
    .command('migrate')
    .description("move a single-machine server's catalogue and blobs to the shared stores several servers use")
    .requiredOption('--from <dir>', 'data directory of the server to move (stop that server first)')
    .option('--catalog <url|file>', 'the target catalogue: postgres://USER:PASSWORD@HOST:PORT/DB (default: keep the SQLite one)')
    .option('--blobs <where>', 'the target blob store: s3://BUCKET/PREFIX (default: keep the blobs in DIR)')
    .option('--s3-endpoint <url>', 'endpoint of an S3-compatible store, addressed path-style (default AWS_ENDPOINT_URL, else AWS S3)')
    .option('--json', 'print what was moved as JSON')
    .addHelpText(
      'after',
      `
Blobs are copied first (each verified by its sha256), then tokens (by their secrets' hashes: every
token keeps working, DIR/admin.token too) and traces, with their labels and upload times. What the
target holds already is skipped, so an interrupted migration is resumed by running it again.
Hosts, jobs and the session log stay behind: agents register again on their next heartbeat.
Afterwards run each server with --catalog and --blobs as given here (docs/deploy.md).`,
    )
    .action(async (flags: MigrateFlags) => {
      if (flags.blobs !== undefined && !flags.blobs.startsWith('s3://')) throw new UserError('--blobs takes s3://BUCKET/PREFIX');
      if (flags.blobs === undefined && flags.s3Endpoint) throw new UserError('--s3-endpoint goes with --blobs s3://…');
      const { migrate } = await import('../../server/migrate.js');
      const { formatBytes } = await import('../../trace/format.js');
      const { print } = await import('../output.js');
      const tty = process.stderr.isTTY && !flags.json;
      let summary;
      try {
        summary = await migrate({
          from: flags.from,
          catalog: flags.catalog,
          blobs: flags.blobs,
          s3Endpoint: flags.s3Endpoint,
          progress: (p) => {
            if (!tty) return;
            const bytes = p.bytes === undefined ? '' : `, ${formatBytes(p.bytes)} sent`;
            process.stderr.write(`\r${p.step}: ${p.done} of ${p.total}${bytes}   ${p.done === p.total ? '\n' : ''}`);
          },
        });
      } catch (err) {
        if (err instanceof UserError) throw err;
        throw new UserError(`migration stopped: ${(err as Error).message} (run it again to resume)`);
      }
      if (flags.json) return print(`${JSON.stringify(summary)}\n`);
      const { blobs, tokens, traces } = summary;
      const kept = `stay in ${flags.from}`;
      print(
        `blobs:  ${flags.blobs ? `${blobs.copied} of ${blobs.total} copied (${formatBytes(blobs.bytesCopied)}), the others were there` : kept}\n` +
          `tokens: ${flags.catalog ? `${tokens.added} of ${tokens.total} added` : kept}\n` +
          `traces: ${flags.catalog ? `${traces.added} of ${traces.total} added` : kept}\n`,
      );
    });
}

export function registerServer(program: Command): void {
  const server = program
    .command('server')
    .description('run the rewind server: catalogue, blob store, uploads and remote replay')
    .option('--data <dir>', 'data directory (default ~/.local/share/rewind/server)')
    .option('--catalog <url|file>', 'the catalogue: postgres://USER:PASSWORD@HOST:PORT/DB, or a SQLite file (default DATA/catalog.sqlite)')
    .option('--listen <host:port>', 'address to listen on (default 127.0.0.1:7777)')
    .option('--tls-cert <file>', 'PEM certificate chain; with --tls-key switches on TLS')
    .option('--tls-key <file>', 'PEM private key')
    .option('--max-sessions <n>', 'concurrent replay and debug sessions (default 4)')
    .option('--max-sessions-per-token <n>', 'concurrent sessions of one token (default 2)')
    .option('--idle-timeout <seconds>', 'kill a replay session idle (no output, no CPU) this long (default 60)')
    .option('--debug-idle-timeout <seconds>', 'kill a debug session idle (no bytes, no CPU) this long (default 1800)')
    .option('--upload-quota <GiB>', 'bytes each token may store: its committed traces and uploads not committed yet (default 1024; 0: no quota)')
    .option('--max-blob <GiB>', 'the largest blob an upload may declare (default 64)')
    .option('--blobs <where>', 'where blobs are kept: s3://BUCKET/PREFIX for an S3-compatible object store (default: the data directory)')
    .option('--s3-endpoint <url>', 'endpoint of an S3-compatible store, addressed path-style (default AWS_ENDPOINT_URL, else AWS S3)')
    .option('--blob-cache <GiB>', 'bound of the local cache of blobs fetched from S3 for replay and debug sessions (default 10)')
    .option('--lease <seconds>', "how long this server's claims in the catalogue (uploads it receives, its sessions) outlive it, for failover to another server on the same catalogue (default 30; renewed every third of it)")
    .option('--http <host:port>', 'also serve the web page and its JSON API here (docs/web.md; default: off)')
    .option('--log-level <level>', 'log level: fatal, error, warn, info, debug, trace or silent (env REWIND_LOG; default info)')
    .action(async (flags: ServerFlags) => {
      if (Boolean(flags.tlsCert) !== Boolean(flags.tlsKey)) throw new UserError('--tls-cert and --tls-key go together');
      if (flags.blobs !== undefined && !flags.blobs.startsWith('s3://')) throw new UserError('--blobs takes s3://BUCKET/PREFIX (without it blobs stay in the data directory)');
      if (flags.blobs === undefined && (flags.s3Endpoint || flags.blobCache)) throw new UserError('--s3-endpoint and --blob-cache go with --blobs s3://…');
      const { startServer } = await import('../../server/server.js');
      const { jsonLogger, logLevel } = await import('../../trace/log.js');
      const logger = jsonLogger('rewind-server', logLevel(flags.logLevel));
      let replayCommand: string[] | undefined;
      if (process.env.REWIND_REPLAY_COMMAND) {
        const v = JSON.parse(process.env.REWIND_REPLAY_COMMAND) as unknown;
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new UserError('REWIND_REPLAY_COMMAND must be a JSON array of strings');
        replayCommand = v as string[];
      }
      const idle = positiveInt(flags.idleTimeout, '--idle-timeout');
      const debugIdle = positiveInt(flags.debugIdleTimeout, '--debug-idle-timeout');
      const lease = positiveInt(flags.lease, '--lease');
      let srv;
      try {
        srv = await startServer({
          dataDir: flags.data,
          catalog: flags.catalog,
          logger,
          listen: flags.listen,
          tlsCert: flags.tlsCert,
          tlsKey: flags.tlsKey,
          maxSessions: positiveInt(flags.maxSessions, '--max-sessions'),
          maxSessionsPerToken: positiveInt(flags.maxSessionsPerToken, '--max-sessions-per-token'),
          idleTimeoutMs: idle === undefined ? undefined : idle * 1000,
          debugIdleTimeoutMs: debugIdle === undefined ? undefined : debugIdle * 1000,
          serverLeaseMs: lease === undefined ? undefined : lease * 1000,
          replayCommand,
          heartbeatIntervalMs: positiveInt(process.env.REWIND_HEARTBEAT_MS, 'REWIND_HEARTBEAT_MS'),
          uploadQuotaBytes: gib(flags.uploadQuota, '--upload-quota', true),
          maxBlobBytes: gib(flags.maxBlob, '--max-blob', false),
          blobs: flags.blobs,
          s3Endpoint: flags.s3Endpoint,
          blobCacheBytes: gib(flags.blobCache, '--blob-cache', false),
          http: flags.http,
        });
      } catch (err) {
        throw new UserError((err as Error).message);
      }
      const running = srv;
      await new Promise<void>((resolve) => {
        const stop = (): void => {
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
          void running.close().then(resolve);
        };
        process.on('SIGINT', stop);
        process.on('SIGTERM', stop);
      });
    });
  registerMigrate(server);
}
