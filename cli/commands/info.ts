import type { Command } from 'commander';
import { print } from '../output.js';
import { formatBytes } from '../../trace/format.js';
import { readManifest, type Manifest } from '../../trace/manifest.js';
import { resolveTraceDir } from '../../trace/trace_dir.js';

function shellWords(argv: string[]): string {
  return argv.map((a) => (/^[\w./=:-]+$/.test(a) ? a : JSON.stringify(a))).join(' ');
}

function describeExit(m: Manifest): string {
  if (!m.exit) return 'unknown: the recording was cut short';
  return m.exit.signal ? `killed by ${m.exit.signal} (status ${m.exit.status})` : `exited with ${m.exit.status}`;
}

function printInfo(dir: string, m: Manifest): void {
  const rows: [string, string][] = [
    ['trace', dir],
    ['id', m.id],
    ['command', shellWords(m.argv)],
    ['executable', m.exe],
    ['cwd', m.cwd],
    ['host', `${m.host.hostname} (${m.host.arch}, Linux ${m.host.kernel})`],
    ['cpu', `${m.host.cpu.model} [${m.host.cpu.vendor}]`],
    ['started', m.startTime],
    ['duration', `${m.durationMs.toFixed(1)} ms`],
    ['exit', describeExit(m)],
    ['events', String(m.counts.events)],
    ['syscalls', String(m.counts.syscalls)],
    ['syscall buffer', m.syscallBuffer ? 'yes' : 'no'],
    ['tasks', String(m.counts.tasks)],
    ['size', `${formatBytes(m.counts.bytes)} in ${m.blobs.length} blobs`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) print(`${k.padEnd(width)}  ${v}\n`);
  const processes = m.processes;
  if (processes.length > 0) {
    print(`processes (${processes.length}):\n`);
    for (const p of processes) {
      const progs = p.execs.map((e) => shellWords(e.argv)).join(' -> ') || '(no exec)';
      const threads = p.threads.length ? `  (+${p.threads.length} threads: ${p.threads.join(' ')})` : '';
      print(`  ${String(p.pid).padStart(7)}  parent ${String(p.parent).padStart(7)}  ${progs}${threads}\n`);
    }
  }
}

function info(trace: string | undefined, flags: { json?: boolean }): void {
  const dir = resolveTraceDir(trace);
  const manifest = readManifest(dir);
  if (flags.json) {
    print(`${JSON.stringify(manifest, null, 2)}\n`);
  } else {
    printInfo(dir, manifest);
  }
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('describe a trace: command, host, CPU, times, exit status, counts, size')
    .argument('[trace]', 'trace directory (default: the latest recording)')
    .option('--json', 'print the whole manifest as JSON')
    .action(info);
}
