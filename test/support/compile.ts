// Test programs: C fixtures compiled at test time, and the real programs the suites run.
import { spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, readFileSync, realpathSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { testEnv } from './env.js';
import { FIXTURES } from './paths.js';
import { tempDir } from './tmp.js';

export interface CompileOptions {
  /** Link statically (-static). */
  static?: boolean;
  /** Link as a static PIE (-static-pie), so even a static binary is moved by ASLR. */
  staticPie?: boolean;
  /** Extra gcc arguments (libraries, -pthread, -Wl,...). */
  extra?: string[];
  /** Output directory; a fresh temp directory by default. */
  outDir?: string;
  /** Output file name; the fixture name (plus "-static") by default. */
  outName?: string;
  /** Source files relative to test/fixtures; `<name>.c` by default. */
  sources?: string[];
}

/** Compiles test/fixtures/<name>.c with gcc -O1 into a temp directory; returns the binary. */
export function compile(name: string, opts: CompileOptions = {}): string {
  const outDir = opts.outDir ?? tempDir(`rewind-${name}-`);
  const suffix = opts.static ? '-static' : opts.staticPie ? '-static-pie' : '';
  const out = join(outDir, opts.outName ?? `${name}${suffix}`);
  const sources = (opts.sources ?? [`${name}.c`]).map((s) => join(FIXTURES, s));
  const args = ['-O1', '-g', '-Wall', '-Wextra', '-o', out, ...sources];
  if (opts.static) args.push('-static');
  if (opts.staticPie) args.push('-static-pie');
  args.push(...(opts.extra ?? []));
  return gcc(args, out);
}

/** Runs gcc with the given arguments and fails loudly with its diagnostics. */
export function gcc(args: string[], out: string): string {
  const r = spawnSync('gcc', args, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`gcc ${args.join(' ')} failed (status ${r.status}):\n${r.stderr}${r.error?.message ?? ''}`);
  }
  return out;
}

/** Finds an executable on PATH (like `command -v`), resolving symlinks. */
export function which(name: string): string {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      if (statSync(p).isFile()) return realpathSync(p);
    } catch {
      /* not here */
    }
  }
  throw new Error(`${name} not found on PATH`);
}

/** The real python3 binary (pyenv installs a shell-script shim that forks). */
export function realPython(): string {
  const r = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`python3 not usable: ${r.stderr}`);
  return realpathSync(r.stdout.trim());
}

/**
 * Whether a command creates another thread or process, as strace sees it. Used only to decide what
 * to expect from a real program (record, or a "not supported yet" refusal); never to skip.
 */
export function spawnsTasks(cmd: string, args: string[], cwd?: string): boolean {
  const log = join(tempDir('rewind-strace-'), 'log');
  const r = spawnSync('strace', ['-f', '-qq', '-e', 'trace=clone,clone3,fork,vfork', '-o', log, cmd, ...args], {
    cwd,
    env: testEnv(),
    stdio: 'ignore',
    timeout: 30_000,
  });
  if (r.error) throw new Error(`strace not usable: ${r.error.message}`);
  const text = readFileSync(log, 'utf8');
  return /\b(clone3?|v?fork)\(/.test(text);
}
