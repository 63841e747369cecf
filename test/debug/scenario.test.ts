// Issue 5, acceptance 1: a user debugs a recorded C program and a recorded Rust program with
// real gdb over `rewind debug DIR --no-launch`, forwards and backwards, and sees the recorded
// values at the recorded lines.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cleanupTemps, describeRun, expectRecorded, FIXTURES, gcc, record, requireCli, tempDir } from '../engine/harness.js';
import { expectNoStray, gdbBatch, lineOf, rustGdbArgs, sourceLines, startServer, type DebugServer, type GdbRun } from './gdb_harness.js';

const INPUT = 'Smaug\n171\n\n2.5\n';

afterAll(cleanupTemps);

/** The frame line gdb prints on stopping: "NN\t<source>" as the section's last line number. */
function stoppedAt(section: string): number | undefined {
  return sourceLines(section).pop();
}

async function debugSession(traceDir: string, commands: string[], pre: string[] = []): Promise<{ gdb: GdbRun; server: DebugServer }> {
  const server = await startServer(traceDir);
  const children = server.descendants();
  const gdb = await gdbBatch(server.port, commands, { pre });
  // gdb -batch detaches or kills on exit: either ends the session and its replayed processes.
  const status = await Promise.race([server.exited, new Promise<number>((r) => setTimeout(() => r(-1), 20_000))]);
  const ctx = `${gdb.transcript}\n--- rewind debug stderr ---\n${server.stderr()}`;
  if (status === -1) server.kill();
  expect(status, `rewind debug did not end with the gdb session\n${ctx}`).toBe(0);
  expectNoStray(children, ctx);
  expect(gdb.timedOut, ctx).toBe(false);
  expect(gdb.transcript, ctx).not.toMatch(/internal-error|Remote connection closed|Remote failure reply/);
  return { gdb, server };
}

describe('debugging a recorded C program', () => {
  let traceDir: string;
  let built: string;
  let moved: string;

  beforeAll(async () => {
    requireCli();
    // Built in one directory and debugged after it moved: set substitute-path finds the source.
    const root = tempDir('rewind-debug-c-');
    built = join(root, 'build');
    moved = join(root, 'moved');
    mkdirSync(built);
    copyFileSync(join(FIXTURES, 'creatures.c'), join(built, 'creatures.c'));
    const exe = gcc(['-g', '-O0', '-o', join(built, 'creatures'), join(built, 'creatures.c')], join(built, 'creatures'));
    const rec = await record(exe, [], { input: INPUT });
    expectRecorded(rec, 0);
    expect(rec.stdout.toString()).toBe('Smaug is 271 years old\nhorns 2.5 m\n');
    traceDir = rec.traceDir;
    renameSync(built, moved);
  });

  it('breaks, steps, goes back over a read, reverse-continues to a breakpoint and to the last write of a watched variable', async () => {
    const L = (mark: string): number => lineOf('creatures.c', mark);
    const commands = [
      'break main',
      'continue',
      'next',
      'next',
      'next',
      'print buf',
      'print name',
      'reverse-next',
      'print buf',
      'break describe',
      'continue',
      'break creature_new',
      'reverse-continue',
      'print age',
      'print name',
      'reverse-finish',
      'watch age',
      'reverse-continue',
      'print age',
      'reverse-continue',
      'info breakpoints',
      'monitor when',
    ];
    const { gdb } = await debugSession(traceDir, commands, ['-iex', `set substitute-path ${built} ${moved}`]);
    const s = gdb.sections;
    const ctx = gdb.transcript;
    expect(s[0], ctx).toMatch(new RegExp(`Breakpoint 1 at 0x[0-9a-f]+: file .*creatures\\.c, line ${L('main-first')}\\.`));
    expect(s[1], ctx).toMatch(/Breakpoint 1, main \(\) at .*creatures\.c/);
    expect(stoppedAt(s[1]!), ctx).toBe(L('main-first'));
    // The source was found after the move (the frame line shows the text).
    expect(s[1], ctx).toContain('mark:read-name');
    expect([s[2], s[3], s[4]].map((x) => stoppedAt(x!)), ctx).toEqual([L('main-first') + 1, L('read-age'), L('parse-age')]);
    expect(s[5], ctx).toMatch(/^\$1 = "171", '\\000' <repeats 60 times>/m);
    expect(s[6], ctx).toMatch(/^\$2 = "Smaug", '\\000' <repeats 58 times>/m);
    // Back over the read of the age: the buffer holds the name again.
    expect(stoppedAt(s[7]!), ctx).toBe(L('read-age'));
    expect(s[8], ctx).toMatch(/^\$3 = "Smaug", '\\000' <repeats 58 times>/m);
    expect(s[10], ctx).toMatch(/Breakpoint 2, describe \(c=0x[0-9a-f]+\) at .*creatures\.c/);
    expect(stoppedAt(s[10]!), ctx).toBe(L('describe'));
    // Backwards to the constructor's breakpoint, hit in the past.
    expect(s[12], ctx).toMatch(/Breakpoint 3, creature_new \(name=0x[0-9a-f]+ "Smaug", age=271, has_wingspan=0, wingspan=0, has_horns=1, horn_length=2\.5\)/);
    expect(stoppedAt(s[12]!), ctx).toBe(L('construct'));
    expect(s[13], ctx).toMatch(/^\$4 = 271$/m);
    expect(s[14], ctx).toMatch(/^\$5 = 0x[0-9a-f]+ "Smaug"$/m);
    // reverse-finish: back to the call in main (gdb -batch does not print "Run back to call of").
    expect(s[15], ctx).toMatch(/main \(\) at .*creatures\.c/);
    expect(stoppedAt(s[15]!), ctx).toBe(L('call-new'));
    // The watchpoint, backwards: the line that last wrote age, then the one before.
    expect(s[16], ctx).toMatch(/Hardware watchpoint 4: age/);
    expect(s[17], ctx).toMatch(/Old value = 271\s+New value = 171/);
    expect(stoppedAt(s[17]!), ctx).toBe(L('age-horns'));
    expect(s[18], ctx).toMatch(/^\$6 = 171$/m);
    expect(s[19], ctx).toMatch(/Old value = 171\s+New value = -?\d+/);
    expect(stoppedAt(s[19]!), ctx).toBe(L('parse-age'));
    expect(s[21], ctx).toMatch(/^event \d+ of \d+$/m);
  });

  it('shows the same values going back and forth, and reports both ends of the recording', async () => {
    const L = (mark: string): number => lineOf('creatures.c', mark);
    const commands = [
      'break creature_new',
      'continue',
      'print age',
      'reverse-continue',
      'reverse-continue',
      'continue',
      'print age',
      'print $rip == creature_new',
      'delete',
      'continue',
      'info registers rip',
      'reverse-continue',
      'info registers rip',
      'continue',
      'bt 1',
    ];
    const { gdb } = await debugSession(traceDir, commands, ['-iex', `set substitute-path ${built} ${moved}`]);
    const s = gdb.sections;
    const ctx = gdb.transcript;
    expect(stoppedAt(s[1]!), ctx).toBe(L('construct'));
    expect(s[2], ctx).toMatch(/^\$1 = 271$/m);
    // Backwards from the only hit: the beginning of the recording, twice.
    expect(s[3], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[4], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[5], ctx).toMatch(/Breakpoint 1, creature_new/);
    expect(s[6], ctx).toMatch(/^\$2 = 271$/m);
    // Forwards to the end, back to the start, forwards again: the same last instruction.
    expect(s[9], ctx).toMatch(/No more reverse-execution history\./);
    const end = /rip\s+(0x[0-9a-f]+)/.exec(s[10]!)?.[1];
    expect(end, ctx).toBeDefined();
    expect(s[11], ctx).toMatch(/No more reverse-execution history\./);
    const start = /rip\s+(0x[0-9a-f]+)/.exec(s[12]!)?.[1];
    expect(start, ctx).toBeDefined();
    expect(start, ctx).not.toBe(end);
    expect(s[13], ctx).toMatch(/No more reverse-execution history\./);
    expect(s[14], ctx).toMatch(new RegExp(`#0 +${end}|#0 .*(_exit|exit)`));
  });

  it('forwards: conditional and hardware breakpoints, finish, stepi, registers, read watchpoints, refused writes, monitor seek', async () => {
    const L = (mark: string): number => lineOf('creatures.c', mark);
    const commands = [
      'break creature_new if age > 200',
      'continue',
      'finish',
      'stepi',
      'info registers rip',
      'hbreak describe',
      'continue',
      'bt',
      'rwatch c->age',
      'continue',
      'x/s c->name',
      'print $fs_base != 0',
      'print $orig_rax',
      'print describe(c)',
      'set var c->age = 5',
      'print c->age',
      'monitor seek 3',
      'maint flush register-cache',
      'monitor when',
    ];
    const { gdb } = await debugSession(traceDir, commands, ['-iex', `set substitute-path ${built} ${moved}`]);
    const s = gdb.sections;
    const ctx = gdb.transcript;
    expect(s[1], ctx).toMatch(/Breakpoint 1, creature_new \(name=0x[0-9a-f]+ "Smaug", age=271,/);
    expect(s[2], ctx).toMatch(/Value returned is \$1 = \{name = "Smaug", '\\000' <repeats 58 times>, age = 271, has_wingspan = 0, has_horns = 1, wingspan = 0, horn_length = 2\.5\}/);
    expect(stoppedAt(s[2]!), ctx).toBe(L('call-new') + 1);
    const rip = /rip +0x([0-9a-f]+) +0x[0-9a-f]+ <main\+(\d+)>/.exec(s[4]!);
    expect(rip, ctx).not.toBeNull();
    expect(s[3], ctx).toContain(`0x${rip![1]!.padStart(16, '0')}`);
    expect(s[5], ctx).toMatch(/Hardware assisted breakpoint 2 at/);
    expect(s[6], ctx).toMatch(/Breakpoint 2, describe \(c=0x[0-9a-f]+\)/);
    expect(s[7], ctx).toMatch(new RegExp(`#0 +describe \\(c=0x[0-9a-f]+\\) at .*creatures\\.c:${L('describe')}\\n#1 +0x[0-9a-f]+ in main \\(\\) at .*creatures\\.c:${L('call-new') + 1}`));
    // printf reads c->age: the read watchpoint fires on that line, after the reading instruction.
    expect(s[9], ctx).toMatch(/Hardware read watchpoint 3: c->age\s+Value = 271/);
    expect(stoppedAt(s[9]!), ctx).toBe(L('describe'));
    expect(s[10], ctx).toMatch(/0x[0-9a-f]+:\s+"Smaug"/);
    expect(s[11], ctx).toMatch(/^\$2 = 1$/m);
    expect(s[12], ctx).toMatch(/^\$3 = -1$/m);
    // History cannot change: calling a function and assigning are refused, the value stays.
    expect(s[13], ctx).toMatch(/Cannot access memory|cannot be changed|Could not/i);
    expect(s[14], ctx).toMatch(/Cannot access memory|cannot be changed|Could not/i);
    expect(s[15], ctx).toMatch(/^\$\d+ = 271$/m);
    expect(s[16], ctx).toMatch(/^now at event 3 of (\d+)/m);
    expect(s[18], ctx).toMatch(/^event 3 of \d+$/m);
  });
});

describe('debugging a recorded Rust program', () => {
  let traceDir: string;
  let project: string;

  beforeAll(async () => {
    requireCli();
    project = tempDir('rewind-debug-rust-');
    mkdirSync(join(project, 'src'));
    copyFileSync(join(FIXTURES, 'creatures.rs'), join(project, 'src', 'main.rs'));
    writeFileSync(join(project, 'Cargo.toml'), '[package]\nname = "creatures"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n');
    const build = spawnSync('cargo', ['build', '--offline', '--quiet'], { cwd: project, encoding: 'utf8', timeout: 300_000 });
    if (build.status !== 0) throw new Error(`cargo build failed:\n${build.stderr}`);
    const rec = await record(join(project, 'target', 'debug', 'creatures'), [], { input: INPUT });
    expectRecorded(rec, 0);
    expect(rec.stdout.toString(), describeRun(rec)).toBe('Smaug is 271 years old\nhorns 2.5 m\n');
    traceDir = rec.traceDir;
  }, 300_000);

  it('breaks at main, steps over reads, goes back over one, reverse-continues to the constructor and to the last write of age', async () => {
    const L = (mark: string): number => lineOf('creatures.rs', mark);
    const commands = [
      'break creatures::main',
      'continue',
      'next',
      'next',
      'next',
      'next',
      'next',
      'next',
      'print name',
      'print buf',
      'reverse-next',
      'print buf',
      'break creatures::describe',
      'continue',
      'break creatures::Creature::new',
      'reverse-continue',
      'print age',
      'print name',
      'print horn_length',
      'reverse-finish',
      'watch -location age',
      'reverse-continue',
      'print age',
      'reverse-continue',
    ];
    const { gdb } = await debugSession(traceDir, commands, rustGdbArgs());
    const s = gdb.sections;
    const ctx = gdb.transcript;
    expect(s[0], ctx).toMatch(new RegExp(`Breakpoint 1 at 0x[0-9a-f]+: file src/main\\.rs, line ${L('main-first')}\\.`));
    expect(s[1], ctx).toMatch(/Breakpoint 1, creatures::main \(\) at src\/main\.rs/);
    expect(stoppedAt(s[1]!), ctx).toBe(L('main-first'));
    expect(s.slice(2, 8).map((x) => stoppedAt(x)), ctx).toEqual([
      L('main-first') + 1,
      L('main-first') + 2,
      L('read-name'),
      L('read-name') + 1,
      L('read-age'),
      L('parse-age'),
    ]);
    expect(s[8], ctx).toMatch(/^\$1 = "Smaug"$/m);
    expect(s[9], ctx).toMatch(/^\$2 = "171\\n"$/m);
    // Back over the read of the age: the reused buffer holds the name line again.
    expect(stoppedAt(s[10]!), ctx).toBe(L('read-age'));
    expect(s[11], ctx).toMatch(/^\$3 = "Smaug\\n"$/m);
    expect(s[13], ctx).toMatch(/Breakpoint 2, creatures::describe/);
    expect(stoppedAt(s[13]!), ctx).toBe(L('describe'));
    expect(s[15], ctx).toMatch(/Breakpoint 3, creatures::Creature::new \(name="Smaug", age=271/);
    expect(stoppedAt(s[15]!), ctx).toBe(L('construct'));
    expect(s[16], ctx).toMatch(/^\$4 = 271$/m);
    expect(s[17], ctx).toMatch(/^\$5 = "Smaug"$/m);
    expect(s[18], ctx).toMatch(/^\$6 = core::option::Option<f64>::Some\(2\.5\)$/m);
    expect(s[19], ctx).toMatch(/in creatures::main \(\) at .*main\.rs/);
    expect(stoppedAt(s[19]!), ctx).toBe(L('call-new'));
    // -location: the second write is the `let` itself, where age is not in scope yet.
    expect(s[20], ctx).toMatch(/Hardware watchpoint 4: -location age/);
    expect(s[21], ctx).toMatch(/Old value = 271\s+New value = 171/);
    expect(stoppedAt(s[21]!), ctx).toBe(L('age-horns'));
    expect(s[22], ctx).toMatch(/^\$7 = 171$/m);
    expect(s[23], ctx).toMatch(/Old value = 171\s+New value = \d+/);
    expect(stoppedAt(s[23]!), ctx).toBe(L('parse-age'));
  });
});
