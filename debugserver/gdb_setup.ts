// What rewind gives the gdb it starts (or tells the user to start): a local sysroot of the
// trace's files, so that gdb reads the recorded executable and libraries without one "Reading
// ... from remote target" line each and its warning that remote file transfers are slow, and a
// script that refuses gdb's own `record` (record-full would record the replay again, slowly,
// and answer reverse commands itself instead of the recording).
import { spawnSync } from 'node:child_process';
import { constants, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, posix, resolve } from 'node:path';
import { readManifest } from '../trace/manifest.js';

export interface GdbSetup {
  /** gdb's arguments, to come before anything that connects. */
  args: string[];
  /** lldb's commands before it connects: the recorded executable, and where its libraries are. */
  lldb: string[];
  /** Removes what was made for gdb; idempotent. */
  remove(): void;
}

export const RECORD_REFUSED =
  "rewind: this is a replay of a recording, and reverse-step, reverse-next, reverse-continue... work on it as they are; gdb's own 'record' (record-full) would record the replay again, slowly, and is refused";

// A prefix command of gdb's own name catches `record`, `record full`, `rec`... and each target
// command record-full would come in by.
const NO_RECORD_PY = `import gdb

class RewindNoRecord(gdb.Command):
    """Refused under rewind: the replay is already a recording that runs backwards."""

    def __init__(self, name):
        super().__init__(name, gdb.COMMAND_RUNNING, gdb.COMPLETE_NONE, True)

    def invoke(self, arg, from_tty):
        raise gdb.GdbError(${JSON.stringify(RECORD_REFUSED)})

for name in ("record", "target record", "target record-full", "target record-btrace"):
    RewindNoRecord(name)
`;

/** A recorded path that can be laid out under a directory: absolute, normal, nothing odd in it. */
function safePath(path: string): string | undefined {
  if (!path.startsWith('/') || path.includes('\0') || posix.normalize(path) !== path) return undefined;
  if (path.split('/').some((part) => part === '..' || part === '.')) return undefined;
  return path;
}

/**
 * The names a program may use for a library the kernel found at `name`: libfoo.so.1.2.3 is
 * also libfoo.so.1.2 and libfoo.so.1 (the versioned symlinks).
 */
function aliases(name: string): string[] {
  const out = [name];
  const m = /^(.*\.so)((?:\.\d+)+)$/.exec(name);
  if (!m) return out;
  const parts = m[2]!.split('.').filter((p) => p !== '');
  for (let n = parts.length - 1; n >= 1; n--) out.push(`${m[1]}.${parts.slice(0, n).join('.')}`);
  return out;
}

/**
 * Where else a program finds a file the kernel found at `path`, on a system with /usr merged:
 * /usr/lib/... as /lib/..., and the dynamic loader as /lib64/... (its PT_INTERP). lldb looks for
 * libraries by the names the program's link map holds.
 */
function pathAliases(path: string): string[] {
  const out = [path];
  if (path.startsWith('/usr/lib/')) out.push(path.slice('/usr'.length));
  if (/^\/(usr\/)?lib\/[^/]+\/ld-linux[^/]*\.so\.\d+$/.test(path)) out.push(`/lib64/${basename(path)}`);
  return out;
}

/**
 * A blob at `at`: a hard link where the file system allows, a copy (a clone where it can) where
 * not. Not a symlink: gdb names a file by its real path, which would be the blob's.
 */
function place(blob: string, at: string): void {
  if (existsSync(at)) return; // the same path twice (an earlier exec's file): the first one stays
  try {
    linkSync(blob, at);
  } catch {
    copyFileSync(blob, at, constants.COPYFILE_FICLONE);
  }
}

/**
 * gdb's arguments that load the Rust standard library's pretty-printers (String, Vec, Option...)
 * when `exe` is a Rust program: gdb would auto-load them only for a binary of this machine's own
 * toolchain found at its build path. Rust names them in the program's .debug_gdb_scripts; they
 * come from this machine's rustc, when there is one.
 */
function rustPrinterArgs(exe: string): string[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(exe);
  } catch {
    return [];
  }
  if (!bytes.includes('gdb_load_rust_pretty_printers.py')) return [];
  const r = spawnSync('rustc', ['--print', 'sysroot'], { encoding: 'utf8', timeout: 10_000 });
  const loader = r.status === 0 ? join(r.stdout.trim(), 'lib', 'rustlib', 'etc', 'gdb_load_rust_pretty_printers.py') : '';
  return loader && existsSync(loader) ? ['-iex', `source ${loader}`] : [];
}

/**
 * Lays out the trace's files for a gdb on this machine: DIR/sysroot/<recorded path> and
 * DIR/by-name/<file name> (gdb asks by the names the program used, /lib64/ld-linux-x86-64.so.2,
 * which are not always where the kernel found the file).
 */
export function prepareGdbSetup(traceDir: string): GdbSetup {
  const dir = mkdtempSync(join(tmpdir(), 'rewind-gdb-'));
  const sysroot = join(dir, 'sysroot');
  const byName = join(dir, 'by-name');
  mkdirSync(byName, { recursive: true });
  const blobs = resolve(traceDir, 'blobs');
  const names = new Map<string, string | null>(); // file name → sha, null when two files share it
  const manifest = readManifest(traceDir);
  for (const b of manifest.blobs) {
    const path = b.role === 'file' && b.path ? safePath(b.path) : undefined;
    if (!path || !/^[0-9a-f]{64}$/.test(b.sha256)) continue;
    for (const alias of pathAliases(path)) {
      const at = join(sysroot, alias);
      mkdirSync(join(at, '..'), { recursive: true });
      place(join(blobs, b.sha256), at);
    }
    for (const name of aliases(basename(path))) {
      const seen = names.get(name);
      names.set(name, seen === undefined || seen === b.sha256 ? b.sha256 : null);
    }
  }
  for (const [name, sha] of names) if (sha) place(join(blobs, sha), join(byName, name));
  const script = join(dir, 'rewind.py');
  writeFileSync(script, NO_RECORD_PY);
  let removed = false;
  const exe = safePath(manifest.exe) ? join(sysroot, manifest.exe) : undefined;
  return {
    args: ['-iex', `set sysroot ${sysroot}`, '-iex', `set solib-search-path ${byName}`, '-ix', script, ...(exe ? rustPrinterArgs(exe) : [])],
    lldb: safePath(manifest.exe) && existsSync(join(sysroot, manifest.exe)) ? ['target create "' + join(sysroot, manifest.exe) + '"', `target modules search-paths add / ${sysroot}/`] : [],
    remove: () => {
      if (removed) return;
      removed = true;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** For a gdb whose trace is elsewhere (on the server): only the refusal of `record`. */
export function remoteGdbSetup(): GdbSetup {
  const dir = mkdtempSync(join(tmpdir(), 'rewind-gdb-'));
  const script = join(dir, 'rewind.py');
  writeFileSync(script, NO_RECORD_PY);
  return { args: ['-ix', script], lldb: [], remove: () => rmSync(dir, { recursive: true, force: true }) };
}
