// The command line's own behaviour: output into a closed pipe, where traces go and which is the
// latest, and a server that cannot be reached.
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestServer, type TestServer } from '../server/helpers.js';
import { CLI, cleanupTemps, compile, describeRun, readManifest, REPO, requireCli, rewind, run, tempDir, testEnv } from '../support/index.js';

let hello: string;

beforeAll(() => {
  requireCli();
  hello = compile('hello');
});
afterAll(cleanupTemps);

describe('rewind info | head -3', () => {
  it('stops quietly when the reader goes away: no EPIPE stack trace, status 141', async () => {
    // More output than a pipe holds, so that rewind still writes when head has gone.
    const dir = join(tempDir('rewind-info-'), 'trace');
    mkdirSync(dir);
    const processes = Array.from({ length: 5000 }, (_, i) => ({ pid: 100 + i, parent: 0, execs: [{ exe: '/bin/true', argv: ['true', String(i)] }], threads: [] }));
    const manifest = { format: 'rewind-trace', version: 1, id: randomUUID(), argv: ['sh'], host: { hostname: 'h' }, startTime: new Date().toISOString(), blobs: [], processes };
    writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest));
    const r = await run('bash', ['-c', `"$0" "$1" info "$2" | head -3; echo "rewind status \${PIPESTATUS[0]}" >&2`, process.execPath, CLI, dir]);
    expect(r.stdout.toString().split('\n'), describeRun(r)).toHaveLength(4);
    expect(r.stderr.toString(), describeRun(r)).toBe('rewind status 141\n');
  });
});

describe('where traces go', () => {
  let ts: TestServer;
  beforeAll(async () => {
    ts = await startTestServer();
  });
  afterAll(async () => {
    await ts.close();
  });

  it('record and push agree on $XDG_DATA_HOME: push with no argument uploads the latest recording', async () => {
    const xdg = tempDir('rewind-xdg-');
    const env = testEnv({ XDG_DATA_HOME: xdg });
    const rec = await rewind(['record', '--', hello], { env });
    expect(rec.status, describeRun(rec)).toBe(3);
    const latest = join(xdg, 'rewind', 'traces', 'latest');
    expect(existsSync(join(latest, 'manifest.json')), describeRun(rec)).toBe(true);
    const push = await rewind(['push'], { env: { ...env, REWIND_SERVER: ts.address, REWIND_TOKEN: (await ts.token('agent')) } });
    expect(push.status, describeRun(push)).toBe(0);
    expect(push.stdout.toString()).toBe(`${readManifest(latest).id}\n`);
  });

  it('a trace recorded with -o becomes the latest', async () => {
    const dir = join(tempDir('rewind-out-'), 'mine');
    const env = testEnv({ XDG_DATA_HOME: tempDir('rewind-xdg-') });
    const rec = await rewind(['record', '-o', dir, '--', hello], { env });
    expect(rec.status, describeRun(rec)).toBe(3);
    const info = await rewind(['info'], { env });
    expect(info.status, describeRun(info)).toBe(0);
    expect(info.stdout.toString()).toMatch(new RegExp(`^trace\\s+${dir}$`, 'm'));
  });
});

describe('a server that cannot be reached', () => {
  it('ls against a refused port fails at once with one clear line (69)', async () => {
    const r = await rewind(['ls', '--server', '127.0.0.1:1', '--token', 'x']);
    expect(r.status, describeRun(r)).toBe(69);
    expect(r.stderr.toString()).toBe('rewind: cannot reach the server at 127.0.0.1:1: connect ECONNREFUSED 127.0.0.1:1\n');
    expect(r.ms, describeRun(r)).toBeLessThan(10_000);
  });
});

describe('shell completion and the man page, from the commands as registered', () => {
  it('bash completes commands, subcommands and options', async () => {
    const cases: [string, string][] = [
      ['rewind to', 'token'],
      ['rewind token c', 'create'],
      ['rewind token create --r', '--role'],
      ['rewind ls --li', '--limit'],
      ['rewind debug --no', '--no-launch'],
    ];
    const script = cases
      .map(([line]) => `read -ra COMP_WORDS <<< '${line}'; COMP_CWORD=$((\${#COMP_WORDS[@]}-1)); COMPREPLY=(); _rewind; echo "\${COMPREPLY[*]}"`)
      .join('\n');
    const r = await run('bash', ['-c', `source <("$0" "$1" completion bash)\n${script}`, process.execPath, CLI]);
    expect(r.stdout.toString().split('\n').slice(0, -1), describeRun(r)).toEqual(cases.map(([, want]) => want));
  });

  it('zsh gets the same function through bashcompinit; another shell is a clear error', async () => {
    const zsh = await rewind(['completion', 'zsh']);
    expect(zsh.status, describeRun(zsh)).toBe(0);
    expect(zsh.stdout.toString()).toMatch(/^#compdef rewind\n[^]*bashcompinit[^]*complete -o default -F _rewind rewind\n$/);
    const fish = await rewind(['completion', 'fish']);
    expect(fish.status).toBe(1);
    expect(fish.stderr.toString()).toBe('rewind: no completion for "fish": bash or zsh\n');
  });

  it('rewind man is a man page groff reads without a warning, with every command and option', async () => {
    const r = await run('sh', ['-c', '"$0" "$1" man | groff -man -ww -Tutf8 -P-cbou', process.execPath, CLI]);
    expect(r.stderr.toString(), describeRun(r)).toBe('');
    const page = r.stdout.toString();
    for (const heading of ['NAME', 'SYNOPSIS', 'COMMANDS', 'EXIT STATUS']) expect(page).toMatch(new RegExp(`^${heading}$`, 'm'));
    for (const text of ['record [options] -- PROGRAM [ARGS...]', 'token create', '--no-launch', '--log-level <level>', '--max-sessions <n>']) {
      expect(page, text).toContain(text);
    }
  });
});

describe('rewind --version', () => {
  it('prints the version of the package, alone or as -V', async () => {
    const { version } = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await rewind([flag]);
      expect(r.status, describeRun(r)).toBe(0);
      expect(r.stdout.toString()).toBe(`${version}\n`);
    }
  });
});
