// vitest's global setup: builds what the suites run (the generated gRPC code and dist/) once
// per test run, when a source is newer than the build, and fails on any type error. The native
// engine is built by `npm run build:native`; the suites that need it say so when it is missing.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from './paths.js';

function newest(dir: string, pattern: RegExp): number {
  let t = 0;
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) {
      if (e.name !== 'node_modules' && e.name !== 'build') t = Math.max(t, newest(p, pattern));
    } else if (pattern.test(e.name)) {
      t = Math.max(t, statSync(p).mtimeMs);
    }
  }
  return t;
}

function mtime(file: string): number {
  return existsSync(file) ? statSync(file).mtimeMs : 0;
}

function step(what: string, cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { cwd: REPO, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${what} failed (status ${r.status}):\n${r.stdout}${r.stderr}${r.error?.message ?? ''}`);
}

export default function setup(): void {
  const bin = join(REPO, 'node_modules', '.bin');
  const gen = join(REPO, 'gen', 'rewind', 'upload', 'v1', 'upload.ts');
  if (mtime(gen) < newest(join(REPO, 'proto'), /\.proto$/)) step('buf generate', join(bin, 'buf'), ['generate']);
  const sources = Math.max(
    ...['trace', 'remote', 'debugserver', 'cli', 'server', 'agent', 'bench', 'native', 'gen'].map((d) => newest(join(REPO, d), /\.ts$/)),
    mtime(join(REPO, 'tsconfig.json')),
  );
  if (mtime(join(REPO, 'dist', 'cli', 'main.js')) < sources) step('npm run build:ts', 'npm', ['run', '--silent', 'build:ts']);
  // The web page, which `rewind server --http` serves from dist/web.
  if (mtime(join(REPO, 'dist', 'web', 'index.html')) < newest(join(REPO, 'web'), /\.(ts|html|css)$/)) step('npm run build:web', 'npm', ['run', '--silent', 'build:web']);
}
