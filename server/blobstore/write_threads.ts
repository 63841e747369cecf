import { Worker } from 'node:worker_threads';
import type { ChunkCheck } from './blobstore.js';

/**
 * Threads that append blob bytes to partial files and hash them (sha256), so that neither the
 * hashing nor the write system calls run on the server's event loop. Each open file belongs to
 * one thread, which handles its requests in order: the file is always a prefix of the blob.
 *
 * The threads run a small plain-JS program (below), so the same code runs from the TypeScript
 * sources under the tests and from dist/.
 */
const THREAD_SOURCE = `
'use strict';
const { parentPort } = require('node:worker_threads');
const fs = require('node:fs');
const { createHash } = require('node:crypto');
const { crc32 } = require('node:zlib');
const files = new Map();
function fail(message, code) {
  const e = new Error(message);
  e.code = code;
  throw e;
}
function handle(m) {
  switch (m.op) {
    case 'open': {
      const hash = createHash('sha256');
      if (m.held > 0) {
        const rfd = fs.openSync(m.path, 'r');
        try {
          const buf = Buffer.allocUnsafe(1 << 20);
          for (let pos = 0; pos < m.held; ) {
            const n = fs.readSync(rfd, buf, 0, Math.min(buf.length, m.held - pos), pos);
            if (n <= 0) throw new Error('the partial file is shorter than ' + m.held + ' bytes');
            hash.update(buf.subarray(0, n));
            pos += n;
          }
        } finally {
          fs.closeSync(rfd);
        }
      }
      files.set(m.file, { fd: fs.openSync(m.path, 'a', 0o600), hash });
      return {};
    }
    case 'write': {
      const f = files.get(m.file);
      // After a refused chunk or a failed write nothing more is appended: the file stays a prefix.
      if (f.failed) fail('an earlier chunk of this blob was not written', 'after-failure');
      const data = new Uint8Array(m.buf, m.off, m.len);
      if (m.crc32 !== undefined && crc32(data) !== m.crc32) {
        f.failed = true;
        fail('CRC-32', 'chunk');
      }
      if (m.sha256 !== undefined && !createHash('sha256').update(data).digest().equals(Buffer.from(m.sha256))) {
        f.failed = true;
        fail('sha256', 'chunk');
      }
      try {
        for (let done = 0; done < data.length; ) done += fs.writeSync(f.fd, data, done, data.length - done);
      } catch (err) {
        f.failed = true;
        throw err;
      }
      f.hash.update(data);
      return {};
    }
    case 'finish': {
      const f = files.get(m.file);
      fs.fsyncSync(f.fd);
      fs.closeSync(f.fd);
      files.delete(m.file);
      return { digest: f.hash.digest('hex') };
    }
    case 'close': {
      const f = files.get(m.file);
      if (f) {
        files.delete(m.file);
        fs.closeSync(f.fd);
      }
      return {};
    }
  }
  throw new Error('unknown request ' + m.op);
}
parentPort.on('message', (m) => {
  let reply;
  try {
    reply = { seq: m.seq, ...handle(m) };
  } catch (err) {
    reply = { seq: m.seq, error: err && err.message ? err.message : String(err), code: err && typeof err.code === 'string' ? err.code : undefined };
  }
  // A chunk's memory goes back with the reply: this thread's heap is small and would collect
  // the dead buffers only after tens of MB of them; the server's main heap frees them as it goes.
  if (m.op === 'write' && m.buf instanceof ArrayBuffer) parentPort.postMessage(reply, [m.buf]);
  else parentPort.postMessage(reply);
});
`;

type Request =
  | { op: 'open'; file: number; path: string; held: number }
  | { op: 'write'; file: number; buf: ArrayBufferLike; off: number; len: number; crc32?: number; sha256?: Uint8Array }
  | { op: 'finish'; file: number }
  | { op: 'close'; file: number };

interface Reply {
  seq: number;
  error?: string;
  /** 'chunk': the bytes did not match the check (error names it); 'after-failure': not written after an earlier failure. */
  code?: string;
  digest?: string;
}

/** A write the thread refused: the chunk did not match its check, or an earlier write failed. */
export class ThreadWriteError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'ThreadWriteError';
  }
}

class WriteThread {
  private readonly worker: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: (r: Reply) => void; reject: (e: Error) => void }>();
  dead: Error | undefined;
  /** Files open on this thread (to spread new ones). */
  load = 0;

  constructor() {
    this.worker = new Worker(THREAD_SOURCE, { eval: true });
    this.worker.unref();
    this.worker.on('message', (r: Reply) => {
      const p = this.pending.get(r.seq);
      if (!p) return;
      this.pending.delete(r.seq);
      if (r.error !== undefined) p.reject(new ThreadWriteError(r.error, r.code));
      else p.resolve(r);
    });
    const die = (err: Error): void => {
      this.dead ??= err;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', (err) => die(new Error(`blob write thread failed: ${err.message}`)));
    this.worker.on('exit', (code) => die(new Error(`blob write thread exited (${code})`)));
  }

  /**
   * Sends a request; the promise settles with its reply. Throws (synchronously) when postMessage
   * refuses the message, so a caller can retry it before any later request is sent.
   */
  post(req: Request, transfer: ArrayBuffer[] = []): Promise<Reply> {
    if (this.dead) return Promise.reject(this.dead);
    const seq = ++this.seq;
    let settle!: { resolve: (r: Reply) => void; reject: (e: Error) => void };
    const reply = new Promise<Reply>((resolve, reject) => (settle = { resolve, reject }));
    this.worker.postMessage({ ...req, seq }, transfer);
    this.pending.set(seq, settle);
    return reply;
  }

  request(req: Request, transfer: ArrayBuffer[] = []): Promise<Reply> {
    try {
      return this.post(req, transfer);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  terminate(): Promise<number> {
    return this.worker.terminate();
  }
}

/** A partial file open on a write thread. Requests run in the order they are made. */
export interface ThreadFile {
  /**
   * Appends `data` and adds it to the hash, if it matches `check` (else ThreadWriteError with code
   * 'chunk' and nothing is written). After any failed write the file takes no more bytes. When
   * `data` fills (nearly) all of its own ArrayBuffer, that buffer is moved to the thread, not
   * copied: the caller must not use it afterwards (it is detached).
   */
  write(data: Uint8Array, check?: ChunkCheck): Promise<void>;
  /** fsync, close; resolves the sha256 (hex) of everything the file holds. */
  finish(): Promise<string>;
  close(): Promise<void>;
}

/** Chunks at least this large that own their buffer are moved to the thread instead of copied. */
const TRANSFER_MIN = 64 << 10;

export class WriteThreads {
  private threads: WriteThread[] = [];
  private nextFile = 0;

  constructor(private readonly count = 2) {}

  /** Starts the threads now rather than at the first upload (a thread takes tens of ms to start). */
  start(): void {
    while (this.threads.length < this.count) this.threads.push(new WriteThread());
  }

  private pick(): WriteThread {
    this.threads = this.threads.filter((t) => !t.dead);
    if (this.threads.length < this.count) {
      const t = new WriteThread();
      this.threads.push(t);
      return t;
    }
    return this.threads.reduce((a, b) => (b.load < a.load ? b : a));
  }

  /** Opens `path` for appending on one of the threads, hashing its first `held` bytes first. */
  async open(path: string, held: number): Promise<ThreadFile> {
    const thread = this.pick();
    const file = ++this.nextFile;
    thread.load++;
    try {
      await thread.request({ op: 'open', file, path, held });
    } catch (err) {
      thread.load--;
      throw err;
    }
    let done = false;
    const release = (): void => {
      if (!done) {
        done = true;
        thread.load--;
      }
    };
    return {
      write: (data, check) => {
        const buf = data.buffer;
        const crc32 = check?.crc32;
        // A copy: the check's bytes may share the chunk's buffer, which may be moved.
        const sha256 = check?.sha256 && check.sha256.length > 0 ? new Uint8Array(check.sha256) : undefined;
        if (data.byteLength >= TRANSFER_MIN && buf instanceof ArrayBuffer && buf.byteLength - data.byteLength <= 4096) {
          try {
            return thread.post({ op: 'write', file, buf, off: data.byteOffset, len: data.byteLength, crc32, sha256 }, [buf]).then(() => undefined);
          } catch (err) {
            // postMessage refused to move this buffer (it is intact): copy it instead.
            if (!(err instanceof Error && err.name === 'DataCloneError')) return Promise.reject(err instanceof Error ? err : new Error(String(err)));
          }
        }
        // A copy of just these bytes (Buffer#slice would be a view).
        const copy = new Uint8Array(data);
        return thread
          .request({ op: 'write', file, buf: copy.buffer, off: 0, len: copy.byteLength, crc32, sha256 }, [copy.buffer as ArrayBuffer])
          .then(() => undefined);
      },
      finish: async () => {
        try {
          return (await thread.request({ op: 'finish', file })).digest!;
        } finally {
          release();
        }
      },
      close: async () => {
        try {
          await thread.request({ op: 'close', file });
        } finally {
          release();
        }
      },
    };
  }

  async close(): Promise<void> {
    const ts = this.threads;
    this.threads = [];
    await Promise.all(ts.map((t) => t.terminate()));
  }
}
