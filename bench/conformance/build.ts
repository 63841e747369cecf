// Builds rr's test programs the way rr's CMakeLists.txt does on x86-64: RR_TEST_FLAGS
// (-Wall -Wextra -DDEBUG -UNDEBUG -g3 -O0), -std=gnu11 and the SSE flags of FLAGS_COMMON, rr's
// include directories plus the generated syscall enums, and -lrt -ldl. Auxiliary programs the
// drivers use (exit_fast, libtest_lib.so for constructor and step_into_lib) get their own rules.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface BuildDirs {
  rr: string;
  /** Generated headers. */
  gen: string;
  /** Built programs (also put first in $PATH for the tests, as rr's harness does). */
  bin: string;
}

const COMMON = ['-msse2', '-D__MMX__', '-D__SSE__', '-D__SSE2__'];
const TEST_FLAGS = ['-Wall', '-Wextra', '-DDEBUG', '-UNDEBUG', '-g3', '-O0'];
const LIB_TESTS = new Set(['constructor', 'step_into_lib']);

function definitions(): string[] {
  // The add_definitions() that depend on headers found on this machine.
  const defs = ['-DRR_VERSION="conformance"'];
  if (hasHeader('proc_service.h')) defs.push('-DPROC_SERVICE_H=1');
  if (hasHeader('mqueue.h')) defs.push('-DMQUEUE_H=1');
  if (hasHeader('sys/fanotify.h')) defs.push('-DFANOTIFY_H=1');
  if (compiles('#include <termios.h>\nstruct termios2 t;')) defs.push('-DHAVE_TERMIOS2');
  return defs;
}

function compiles(source: string): boolean {
  const r = spawnSync('gcc', ['-x', 'c', '-fsyntax-only', '-D_GNU_SOURCE', '-'], { input: source });
  return r.status === 0;
}

export function hasHeader(h: string): boolean {
  return compiles(`#include <${h}>\n`);
}

/** The CMake conditions for mq, fanotify and robust_futex. */
export function conditionalTestOk(test: string): boolean {
  if (test === 'mq') return hasHeader('mqueue.h');
  if (test === 'fanotify') return hasHeader('sys/fanotify.h');
  if (test === 'robust_futex') return compiles('#include <pthread.h>\nvoid *p = (void *)pthread_mutexattr_setrobust;');
  return true;
}

export function prepare(dirs: BuildDirs): void {
  mkdirSync(dirs.gen, { recursive: true });
  mkdirSync(dirs.bin, { recursive: true });
  // rr's own generator, run from the checkout, writes the syscall enums util_syscall.h includes.
  const header = join(dirs.gen, 'SyscallEnumsForTestsX64.generated');
  if (!existsSync(header)) {
    const r = spawnSync('python3', [join(dirs.rr, 'src', 'generate_syscalls.py'), header], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`generate_syscalls.py failed: ${r.stderr}`);
  }
}

function run(cmd: string, args: string[]): Promise<string | null> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('close', (status) => resolve(status === 0 ? null : err.trim() || `${cmd} exited with ${status}`));
  });
}

function upToDate(out: string, src: string): boolean {
  return existsSync(out) && statSync(out).mtimeMs >= statSync(src).mtimeMs;
}

let defs: string[] | null = null;

function flags(dirs: BuildDirs, testFlags = true): string[] {
  defs ??= definitions();
  const inc = ['include', 'third-party/proc-service', 'src/preload', 'src/test'].map((d) => `-I${join(dirs.rr, d)}`);
  return [...COMMON, ...defs, ...inc, `-I${dirs.gen}`, ...(testFlags ? TEST_FLAGS : [])];
}

/** libtest_lib.so, which constructor and step_into_lib link against (BUILD_SHARED_LIBS is ON). */
async function buildTestLib(dirs: BuildDirs): Promise<string | null> {
  const src = join(dirs.rr, 'src', 'test', 'test_lib.c');
  const out = join(dirs.bin, 'libtest_lib.so');
  if (upToDate(out, src)) return null;
  return run('gcc', ['-std=gnu11', ...flags(dirs), '-fPIC', '-shared', '-o', out, src]);
}

/** Builds one test program; returns null, or the compiler's complaint. */
export async function buildTest(dirs: BuildDirs, name: string, rel: string, cpp: boolean): Promise<string | null> {
  const src = join(dirs.rr, 'src', 'test', `${rel}.${cpp ? 'cc' : 'c'}`);
  const out = join(dirs.bin, name);
  if (!existsSync(src)) return `${src} is missing`;
  if (upToDate(out, src)) return null;
  const libs = ['-lrt', '-ldl'];
  if (LIB_TESTS.has(name)) {
    const err = await buildTestLib(dirs);
    if (err) return `libtest_lib.so: ${err}`;
    libs.unshift(`-L${dirs.bin}`, '-ltest_lib', `-Wl,-rpath,${dirs.bin}`);
  }
  const compiler = cpp ? 'g++' : 'gcc';
  const std = cpp ? [] : ['-std=gnu11', '-Wstrict-prototypes'];
  return run(compiler, [...std, ...flags(dirs), '-fuse-ld=bfd', '-o', out, src, ...libs]);
}

/** exit_fast: its own flags instead of RR_TEST_FLAGS, linked -static -nostartfiles -nodefaultlibs. */
export async function buildExitFast(dirs: BuildDirs): Promise<string | null> {
  const src = join(dirs.rr, 'src', 'test', 'exit_fast.c');
  const out = join(dirs.bin, 'exit_fast');
  if (!existsSync(src) || upToDate(out, src)) return null;
  return run('gcc', ['-std=gnu11', ...flags(dirs, false), '-fno-stack-protector', '-static', '-nostartfiles', '-nodefaultlibs', '-fuse-ld=bfd', '-o', out, src]);
}
