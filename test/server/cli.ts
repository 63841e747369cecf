// Runs the real CLI (dist/cli/main.js) and real server processes for the service tests.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO } from './helpers.js';

let built = false;

/** Generates the proto code and compiles TypeScript into dist/ once per test run. */
function newestSource(): number {
  let newest = 0;
  const walk = (d: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== 'node_modules' && e.name !== 'build') walk(p);
      } else if (/\.(ts|proto)$/.test(e.name) && !e.name.endsWith('.d.ts')) {
        newest = Math.max(newest, fs.statSync(p).mtimeMs);
      }
    }
  };
  for (const d of ['cli', 'server', 'agent', 'proto']) walk(path.join(REPO, d));
  newest = Math.max(newest, fs.statSync(path.join(REPO, 'native/index.ts')).mtimeMs);
  return newest;
}

export function ensureBuilt(): void {
  if (built) return;
  const stamp = path.join(REPO, 'dist/server/server.js');
  if (fs.existsSync(stamp) && fs.existsSync(path.join(REPO, 'gen/rewind/upload/v1/upload.ts')) && fs.statSync(stamp).mtimeMs > newestSource()) {
    built = true;
    return;
  }
  const gen = spawnSync('npx', ['buf', 'generate'], { cwd: REPO, encoding: 'utf8' });
  if (gen.status !== 0) throw new Error(`buf generate failed: ${gen.stderr}`);
  // tsc may report errors in files other sessions are still writing; what matters is the emit.
  spawnSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, encoding: 'utf8' });
  for (const f of ['dist/server/server.js', 'dist/cli/commands/push.js']) {
    if (!fs.existsSync(path.join(REPO, f))) throw new Error(`build did not produce ${f}`);
  }
  built = true;
}

/**
 * The CLI entry: dist/cli/main.js when every command it registers is built; otherwise a small
 * entry that registers only the server-side commands (same error handling as main.ts).
 */
export function cliEntry(): string {
  const main = path.join(REPO, 'dist/cli/main.js');
  const idx = path.join(REPO, 'dist/cli/commands/index.js');
  const text = fs.existsSync(idx) ? fs.readFileSync(idx, 'utf8') : '';
  const deps = [...text.matchAll(/from '\.\/(\w+)\.js'/g)].map((m) => m[1]!);
  if (fs.existsSync(main) && deps.every((d) => fs.existsSync(path.join(REPO, 'dist/cli/commands', `${d}.js`)))) return main;
  const file = path.join(os.tmpdir(), `rewind-cli-entry-${process.pid}.mjs`);
  const cmd = (n: string): string => new URL(`file://${path.join(REPO, 'dist/cli/commands', `${n}.js`)}`).href;
  const names = ['push', 'ls', 'show', 'rm', 'server', 'token', 'hosts', 'agent'].filter((n) =>
    fs.existsSync(path.join(REPO, 'dist/cli/commands', `${n}.js`)),
  );
  const src = `
import { Command, CommanderError } from ${JSON.stringify(new URL(`file://${path.join(REPO, 'node_modules/commander/esm.mjs')}`).href)};
import { UserError } from ${JSON.stringify(new URL(`file://${path.join(REPO, 'dist/cli/user_error.js')}`).href)};
${names.map((n) => `import { register${n[0]!.toUpperCase()}${n.slice(1)} } from ${JSON.stringify(cmd(n))};`).join('\n')}
const program = new Command('rewind').exitOverride();
${names.map((n) => `register${n[0]!.toUpperCase()}${n.slice(1)}(program);`).join('\n')}
try { await program.parseAsync(process.argv); } catch (err) {
  if (err instanceof CommanderError) process.exitCode = err.exitCode;
  else if (err instanceof UserError) { process.stderr.write('rewind: ' + err.message + '\\n'); process.exitCode = err.exitCode; }
  else { process.stderr.write('rewind: internal error: ' + err.message + '\\n'); process.exitCode = 70; }
}
`;
  fs.writeFileSync(file, src);
  process.once('exit', () => fs.rmSync(file, { force: true }));
  return file;
}

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `rewind ARGS` to completion. */
export function rewind(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliEntry(), ...args], {
      cwd: REPO,
      env: { ...cleanEnv(), ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(input ?? '');
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

/** The environment without REWIND_* settings of the developer running the tests. */
export function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('REWIND_')) env[k] = v;
  env.REWIND_CONFIG = '/nonexistent/rewind-config.json';
  return env;
}

export interface ServerProcess {
  child: ChildProcess;
  address: string;
  adminToken: string;
  logs: string[];
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `rewind server` as a child process; resolves once it listens. */
export function spawnServer(dataDir: string, listen = '127.0.0.1:0', extraArgs: string[] = [], env: Record<string, string> = {}): Promise<ServerProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cliEntry(), 'server', '--data', dataDir, '--listen', listen, ...extraArgs], {
      cwd: REPO,
      env: { ...cleanEnv(), ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const logs: string[] = [];
    let buf = '';
    let stderr = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${stderr}\n${logs.join('\n')}`)), 20_000);
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        logs.push(line);
        try {
          const j = JSON.parse(line) as { msg?: string; address?: string };
          if (j.msg === 'rewind server listening' && j.address) {
            clearTimeout(timer);
            resolve({
              child,
              address: j.address,
              adminToken: fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim(),
              logs,
              stop: (signal = 'SIGTERM') =>
                new Promise((res) => {
                  if (child.exitCode !== null || child.signalCode !== null) return res();
                  child.once('exit', () => res());
                  child.kill(signal);
                }),
            });
          }
        } catch {
          // not JSON
        }
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${stderr}`));
    });
  });
}
