// The real CLI (dist/cli/main.js) and real server processes for the service suites, over the
// one runner and environment of test/support.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { testEnv } from '../support/env.js';
import { CLI, REPO } from '../support/paths.js';
import { run } from '../support/process.js';

export interface CliResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs `rewind ARGS` to completion, with `env` over the test environment; output as text. */
export async function rewind(args: string[], env: Record<string, string | undefined> = {}, input?: string): Promise<CliResult> {
  const r = await run(process.execPath, [CLI, ...args], { cwd: REPO, env: testEnv(env), input: input ?? '' });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** The test environment, for the service suites' own child processes. */
export function cleanEnv(): Record<string, string> {
  return testEnv() as Record<string, string>;
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
    const child = spawn(process.execPath, [CLI, 'server', '--data', dataDir, '--listen', listen, ...extraArgs], {
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
