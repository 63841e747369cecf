// Issue 13, IDEs: the VS Code launch.json of docs/ide.md, read from the document itself, driven
// the way cppdbg drives gdb's MI for it (setup commands, the custom launch that connects, target
// features, breakpoints, stepping both ways, frames, variables, threads, the crash, going back).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cleanupTemps, compile, expectRecorded, record, requireCli, tempDir } from '../engine/harness.js';
import { REPO } from '../support/paths.js';
import { lineOf, startServer } from './gdb_harness.js';
import { expectSessionEnded, gdbMi, miField } from './mi_harness.js';

interface CppdbgConfig {
  type: string;
  request: string;
  program: string;
  cwd: string;
  MIMode: string;
  setupCommands: { text: string }[];
  customLaunchSetupCommands: { text: string }[];
  launchCompleteCommand: string;
}

/** The launch.json block of docs/ide.md, parsed. */
function documentedConfig(): CppdbgConfig {
  const doc = readFileSync(join(REPO, 'docs', 'ide.md'), 'utf8');
  const block = /```json\n([^]*?)```/.exec(doc)?.[1];
  if (!block) throw new Error('docs/ide.md has no ```json launch.json block');
  const launch = JSON.parse(block) as { configurations: CppdbgConfig[] };
  return launch.configurations[0]!;
}

/** MI for a command of launch.json: MI commands as they are, CLI ones through the console. */
function mi(text: string): string {
  return text.startsWith('-') ? text : `-interpreter-exec console ${JSON.stringify(text)}`;
}

afterAll(cleanupTemps);

let traceDir: string;

beforeAll(async () => {
  requireCli();
  const rec = await record(compile('use_after_free', { extra: ['-O0'] }));
  expectRecorded(rec, 139);
  traceDir = rec.traceDir;
});

it("docs/ide.md's cppdbg configuration: connect, break, step both ways, the crash, and back", async () => {
  const config = documentedConfig();
  expect([config.type, config.request, config.MIMode, config.launchCompleteCommand]).toEqual(['cppdbg', 'launch', 'gdb', 'None']);
  const connect = config.customLaunchSetupCommands.map((c) => c.text);
  expect(connect).toEqual(['target extended-remote 127.0.0.1:50505']);

  const server = await startServer(traceDir);
  const children = server.descendants();
  // The workspace cppdbg would have: the program file exists (cppdbg checks), cwd is the folder.
  const workspace = tempDir('rewind-ide-');
  mkdirSync(join(workspace, 'build'));
  const expand = (s: string): string => s.replace('${workspaceFolder}', workspace).replace('127.0.0.1:50505', `127.0.0.1:${server.port}`);
  writeFileSync(expand(config.program), '');
  const setup = config.setupCommands.map((c) => mi(expand(c.text)));
  const commands = [
    ...setup,
    `-environment-cd ${expand(config.cwd)}`,
    ...connect.map((c) => mi(expand(c))),
    '-list-target-features',
    '-break-insert -f main',
    '-exec-continue',
    '-stack-list-frames 0 1000',
    '-exec-next',
    '-exec-next',
    '-stack-list-variables --simple-values',
    '-exec-next --reverse',
    '-thread-info',
    '-exec-continue',
    '-stack-list-frames 0 1000',
    '-exec-continue --reverse',
  ];
  const run = await gdbMi(null, commands);
  const ctx = await expectSessionEnded(server, children, run.transcript);
  const r = (command: string, from = 0): NonNullable<(typeof run.replies)[number]> => {
    const i = commands.indexOf(command, from);
    const reply = run.replies[i];
    expect(reply, `no reply to ${command}\n${ctx}`).toBeDefined();
    return reply!;
  };
  expect(run.replies.length, ctx).toBe(commands.length);
  for (const reply of run.replies.slice(0, setup.length + 2)) expect(reply.result, ctx).toMatch(/^\^(done|connected)/);
  // cppdbg offers Step Back and Reverse Continue when the target says it can go back.
  expect(r('-list-target-features').result, ctx).toMatch(/features=\[[^\]]*"reverse"/);
  expect(r('-break-insert -f main').result, ctx).toMatch(/^\^done,bkpt=\{number="1"/);
  const atMain = r('-exec-continue').stopped;
  expect(miField(atMain, 'reason'), ctx).toBe('breakpoint-hit');
  expect(miField(atMain, 'func'), ctx).toBe('main');
  const mainLine = Number(miField(atMain, 'line'));
  expect(r('-stack-list-frames 0 1000').result, ctx).toMatch(/^\^done,stack=\[frame=\{level="0",addr="0x[0-9a-f]+",func="main"/);
  const nexts = [commands.indexOf('-exec-next'), commands.indexOf('-exec-next') + 1].map((i) => run.replies[i]!.stopped);
  for (const s of nexts) expect(miField(s, 'reason'), ctx).toBe('end-stepping-range');
  const lines = nexts.map((s) => Number(miField(s, 'line')));
  expect(lines[0]! > mainLine && lines[1]! > lines[0]!, ctx).toBe(true);
  expect(r('-stack-list-variables --simple-values').result, ctx).toMatch(/^\^done,variables=\[\{name="s",type="struct session \*",value="0x[0-9a-f]+"\}/);
  const back = r('-exec-next --reverse').stopped;
  expect(miField(back, 'reason'), ctx).toBe('end-stepping-range');
  expect(Number(miField(back, 'line')), ctx).toBe(lines[0]);
  expect(r('-thread-info').result, ctx).toMatch(/^\^done,threads=\[\{id="1",target-id="Thread [0-9a-f]+\.[0-9a-f]+"/);
  const crash = r('-exec-continue', commands.indexOf('-thread-info')).stopped;
  expect(miField(crash, 'reason'), ctx).toBe('signal-received');
  expect(miField(crash, 'signal-name'), ctx).toBe('SIGSEGV');
  expect(miField(crash, 'line'), ctx).toBe(String(lineOf('use_after_free.c', 'crash')));
  expect(r('-stack-list-frames 0 1000', commands.indexOf('-thread-info')).result, ctx).toMatch(/func="close_session"[^]*func="main"/);
  // Reverse Continue from the crash: back to the breakpoint at main.
  const again = r('-exec-continue --reverse').stopped;
  expect(miField(again, 'reason'), ctx).toBe('breakpoint-hit');
  expect(Number(miField(again, 'line')), ctx).toBe(mainLine);
});
