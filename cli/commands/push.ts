import type { Command } from 'commander';
import { addClientOptions } from '../client_options.js';
import { collectLabel } from '../format.js';
import { print } from '../output.js';
import { resolveConfig, type ClientFlags } from '../../remote/config.js';
import type { PushProgress } from '../../remote/upload.js';
import { formatBytes } from '../../trace/format.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';

interface PushFlags extends ClientFlags {
  label?: Record<string, string>;
  keepEnv?: boolean;
}

function progressBar(): (p: PushProgress) => void {
  if (!process.stderr.isTTY) return () => {};
  const start = Date.now();
  let last = 0;
  return (p) => {
    const now = Date.now();
    if (now - last < 100 && p.sent < p.toSend) return;
    last = now;
    const frac = p.toSend > 0 ? Math.min(p.sent / p.toSend, 1) : 1;
    const width = 30;
    const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
    const rate = p.sent / Math.max((now - start) / 1000, 0.001);
    process.stderr.write(`\r[${bar}] ${formatBytes(p.sent)} / ${formatBytes(Math.max(p.toSend, 0))}  ${formatBytes(rate)}/s   `);
  };
}

export function registerPush(program: Command): void {
  addClientOptions(
    program
      .command('push')
      .description('upload a local trace to the server and print its id (only blobs the server lacks are sent)')
      .argument('[dir]', 'trace directory (default: the latest recording)')
      .option('--label <k=v>', 'attach a label (repeatable)', collectLabel)
      .option('--keep-env', 'upload the environment as recorded (by default variables named like secrets are redacted; REWIND_TOKEN always is)')
      .addHelpText(
        'after',
        '\nA recording cut short (its recorder was killed) is pushed too, with the events it holds: the server\n' +
          'marks it incomplete and its replay stops where they end, as a local replay does.\n\n' +
          'The recorded environment is uploaded with the values of variables named like secrets (*TOKEN*, *KEY*,\n' +
          '*SECRET*, *PASSW*, *CREDENTIAL*, *AUTH*, ...) replaced by [redacted]; --keep-env keeps them. REWIND_TOKEN and\n' +
          'any rewind token are redacted either way. The local trace keeps its environment.',
      ),
  ).action(async (dir: string | undefined, flags: PushFlags) => {
    const config = resolveConfig(flags);
    const traceDir = resolveTraceDir(dir);
    const { readLocalTrace } = await import('../../trace/local.js');
    const local = await readLocalTrace(traceDir, { allowIncomplete: true });
    if (local.incomplete) {
      process.stderr.write(
        'rewind: note: this recording was cut short (its recorder was killed, or it is still running); pushing the events it holds: ' +
          'the server marks the trace incomplete, and its replay stops where they end\n',
      );
    }
    const { withClients } = await import('../../remote/client.js');
    const { pushTrace } = await import('../../remote/upload.js');
    const res = await withClients(config, (c) =>
      pushTrace(c, traceDir, {
        allowIncomplete: true,
        labels: flags.label,
        keepEnv: flags.keepEnv,
        onProgress: progressBar(),
        onRetry: (e, n, ms) => process.stderr.write(`\nrewind: upload interrupted (${e.message}); retry ${n} in ${ms} ms\n`),
        onWait: (w) =>
          process.stderr.write(
            `\nrewind: ${w.blobs.length === 1 ? `blob ${w.blobs[0]} is` : `${w.blobs.length} blobs are`} held by another upload ` +
              `(through another server, or one whose server went away: its claim lapses with that server's lease); waited ${Math.round(w.waitedMs / 1000)} s, next try in ${w.delayMs} ms\n`,
          ),
      }),
    );
    if (process.stderr.isTTY) {
      const saved = res.totalBytes - res.bytesSent;
      process.stderr.write(`\n${res.created ? 'uploaded' : 'already on the server'}: sent ${formatBytes(res.bytesSent)}, ${formatBytes(Math.max(saved, 0))} deduplicated\n`);
    }
    print(`${res.traceId}\n`);
  });
}
