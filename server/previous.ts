// The server that last ran on a data directory (DATA/server.json: its id in the catalogue, host
// and pid). A server restarted on the directory takes over what that one left in the catalogue
// (its blob claims, its sessions) at once instead of waiting for its lease to run out: it was
// this directory's server, so it holds no upload and runs no session any more.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const FILE = 'server.json';

export interface PreviousServer {
  id: string;
  host: string;
  pid: number;
}

/** The server recorded in dataDir, or undefined (none yet, or a file this version cannot read). */
export function readPreviousServer(dataDir: string): PreviousServer | undefined {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(path.join(dataDir, FILE), 'utf8'));
  } catch {
    return undefined;
  }
  const p = v as Partial<PreviousServer>;
  if (typeof p?.id !== 'string' || typeof p.host !== 'string' || !Number.isSafeInteger(p.pid)) return undefined;
  return { id: p.id, host: p.host, pid: p.pid! };
}

/**
 * True when the recorded server surely runs no more: it ran on this host, and its process is
 * this one (a container restarted gives the same pid) or no longer exists. A server recorded on
 * another host (a copied data directory, a container given a new hostname) may still run: its
 * claims then lapse with its lease.
 */
export function isGone(prev: PreviousServer): boolean {
  if (prev.host !== os.hostname()) return false;
  if (prev.pid === process.pid) return true;
  try {
    process.kill(prev.pid, 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** Records this server as the data directory's (written whole: a crash leaves the old or the new). */
export function recordServer(dataDir: string, id: string): void {
  const file = path.join(dataDir, FILE);
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify({ id, host: os.hostname(), pid: process.pid })}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}
