// The files gdb opens on the target (vFile): only those the recorded program mapped, served out
// of the trace's blobs by the path the manifest records, so gdb (sysroot `target:`) never reads
// the debugging machine's own copies, which may differ from the recorded ones.
import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { basename, join, posix } from 'node:path';
import type { ManifestBlob } from '../trace/manifest.js';
import { UserError } from '../trace/user_error.js';

// gdb's File-I/O errno values (the remote protocol's, not the host's).
export const FILEIO = { ENOENT: 2, EBADF: 9, EACCES: 13, EINVAL: 22, EMFILE: 24, EROFS: 30 } as const;

export class FileIoError extends Error {
  constructor(readonly errno: number, message: string) {
    super(message);
  }
}

const MAX_OPEN = 64;

/**
 * Checks that every blob of the trace is there with the bytes the manifest names, before a
 * debugger is let in: a damaged file would otherwise show as a replay that stops somewhere
 * inside the dynamic loader, or as wrong symbols. Exit status 125, as for a divergence.
 */
export function checkBlobs(traceDir: string, blobs: readonly ManifestBlob[]): void {
  const seen = new Set<string>();
  const buf = Buffer.alloc(1 << 20);
  for (const b of blobs) {
    if (seen.has(b.sha256)) continue;
    seen.add(b.sha256);
    const what = `blob ${b.sha256}${b.path ? ` (${b.path})` : ` (${b.role})`}`;
    let fd: number;
    try {
      fd = openSync(join(traceDir, 'blobs', b.sha256), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      throw new UserError(`trace ${traceDir} is damaged: ${what} is missing`, 125);
    }
    const hash = createHash('sha256');
    let size = 0;
    try {
      for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; size += n) hash.update(buf.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    const actual = hash.digest('hex');
    if (size !== b.size || actual !== b.sha256) {
      throw new UserError(`trace ${traceDir} is damaged: ${what} is ${size} bytes hashing to ${actual}; the manifest says ${b.size} bytes`, 125);
    }
  }
}

export class TraceFiles {
  /** Recorded path → blob sha256. */
  private readonly byPath = new Map<string, string>();
  /** Blob sha256 → the path it was recorded at. */
  private readonly bySha = new Map<string, string>();
  /** gdb's fds: a blob's host fd, or the bytes of a file made here (/proc/PID/maps). */
  private readonly open = new Map<number, number | Buffer>();
  private nextFd = 1;

  constructor(
    private readonly traceDir: string,
    blobs: readonly ManifestBlob[],
  ) {
    for (const b of blobs) {
      if (b.role === 'file' && b.path && !this.byPath.has(b.path)) this.byPath.set(b.path, b.sha256);
      if (b.role === 'file' && b.path && !this.bySha.has(b.sha256)) this.bySha.set(b.sha256, b.path);
    }
  }

  /**
   * The blob for a path gdb asks for. The manifest records where the kernel found each file
   * (symlinks resolved: /usr/lib/x86_64-linux-gnu/libc.so.6), while gdb asks by the names the
   * program used (PT_INTERP's /lib64/ld-linux-x86-64.so.2, link_map's /lib/.../libc.so.6); so
   * an exact match first, then the only recorded file of that name, then the only recorded file
   * the name is a versioned-symlink prefix of (libfoo.so.1 → libfoo.so.1.2.3).
   */
  resolve(path: string): string | undefined {
    const normal = posix.normalize(path);
    const exact = this.byPath.get(normal);
    if (exact) return exact;
    const name = basename(normal);
    const same = [...this.byPath].filter(([p]) => basename(p) === name);
    if (same.length === 1) return same[0]![1];
    if (same.length > 1) return undefined;
    const versioned = [...this.byPath].filter(([p]) => basename(p).startsWith(`${name}.`));
    return versioned.length === 1 ? versioned[0]![1] : undefined;
  }

  /**
   * A maps text of the replay with the recorded paths of the files that replay maps out of the
   * trace's blobs (a live map names blobs/SHA256).
   */
  recordedMaps(maps: string): string {
    return maps.replace(/\S*\/blobs\/([0-9a-f]{64})$/gm, (name, sha: string) => this.bySha.get(sha) ?? name);
  }

  /** Opens bytes made here as a read-only file. */
  openData(data: Buffer): number {
    if (this.open.size >= MAX_OPEN) throw new FileIoError(FILEIO.EMFILE, 'too many open files');
    const fd = this.nextFd++;
    this.open.set(fd, data);
    return fd;
  }

  /** Recorded paths, for messages. */
  paths(): string[] {
    return [...this.byPath.keys()];
  }

  openFile(path: string, flags: number): number {
    if ((flags & 3) !== 0) throw new FileIoError(FILEIO.EROFS, `${path}: the trace is read-only`);
    const sha = this.resolve(path);
    if (!sha) throw new FileIoError(FILEIO.ENOENT, `${path}: not in the trace`);
    if (this.open.size >= MAX_OPEN) throw new FileIoError(FILEIO.EMFILE, 'too many open files');
    let hostFd: number;
    try {
      hostFd = openSync(join(this.traceDir, 'blobs', sha), constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch {
      throw new FileIoError(FILEIO.ENOENT, `${path}: its blob is missing from the trace`);
    }
    const fd = this.nextFd++;
    this.open.set(fd, hostFd);
    return fd;
  }

  pread(fd: number, length: number, offset: number): Buffer {
    const hostFd = this.hostFd(fd);
    if (Buffer.isBuffer(hostFd)) return hostFd.subarray(offset, offset + length);
    const buf = Buffer.alloc(length);
    const n = readSync(hostFd, buf, 0, length, offset);
    return buf.subarray(0, n);
  }

  /** gdb's struct stat for vFile:fstat: 64 bytes, big-endian. */
  fstat(fd: number): Buffer {
    const file = this.hostFd(fd);
    const size = Buffer.isBuffer(file) ? file.length : fstatSync(file).size;
    const out = Buffer.alloc(64);
    out.writeUInt32BE(0, 0); // st_dev
    out.writeUInt32BE(fd, 4); // st_ino
    out.writeUInt32BE(0o100444, 8); // st_mode: a regular read-only file
    out.writeUInt32BE(1, 12); // st_nlink
    out.writeBigUInt64BE(BigInt(size), 28);
    out.writeBigUInt64BE(4096n, 36); // st_blksize
    out.writeBigUInt64BE(BigInt(Math.ceil(size / 512)), 44);
    return out;
  }

  close(fd: number): void {
    const file = this.hostFd(fd);
    if (!Buffer.isBuffer(file)) closeSync(file);
    this.open.delete(fd);
  }

  closeAll(): void {
    for (const file of this.open.values()) if (!Buffer.isBuffer(file)) closeSync(file);
    this.open.clear();
  }

  private hostFd(fd: number): number | Buffer {
    const h = this.open.get(fd);
    if (h === undefined) throw new FileIoError(FILEIO.EBADF, `fd ${fd} is not open`);
    return h;
  }
}
