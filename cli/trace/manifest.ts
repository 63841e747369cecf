// manifest.json: what a trace is (docs/trace-format.md). Written last, atomically, so a
// directory with a manifest always holds a finished trace.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BlobInfo, ProcessInfo } from '../../native/index.js';
import { UserError } from '../user_error.js';
import type { HostFacts } from './host_facts.js';

export const TRACE_FORMAT = 'rewind-trace';
export const SUPPORTED_VERSIONS: readonly number[] = [1];
export const CURRENT_VERSION = 1;

export interface ExitInfo {
  /** Shell-style status: the exit code, or 128 + the signal number. */
  status: number;
  code: number | null;
  signal: string | null;
}

export interface Manifest {
  format: typeof TRACE_FORMAT;
  version: number;
  id: string;
  argv: string[];
  exe: string;
  cwd: string;
  env: string[];
  user: string;
  host: HostFacts;
  startTime: string;
  endTime: string;
  durationMs: number;
  /** null while recording, and in a recording that was cut short. */
  exit: ExitInfo | null;
  /** false while recording; stays false when the recorder was killed (see partialEventsPath). */
  complete: boolean;
  counts: { events: number; tasks: number; syscalls: number; bytes: number };
  /** Every process of the recorded tree, in the order they started. */
  processes: ProcessInfo[];
  blobs: BlobInfo[];
}

const BLOB_NAME = /^[0-9a-f]{64}$/;

export function manifestPath(dir: string): string {
  return join(dir, 'manifest.json');
}

export function writeManifest(dir: string, manifest: Manifest): void {
  const tmp = join(dir, '.manifest.json.tmp');
  writeFileSync(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  renameSync(tmp, manifestPath(dir));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Reads and checks a trace's manifest; every problem is a UserError naming the trace. */
export function readManifest(dir: string): Manifest {
  let text: string;
  try {
    text = readFileSync(manifestPath(dir), 'utf8');
  } catch {
    throw new UserError(`${dir} is not a rewind trace (it has no manifest.json)`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    throw new UserError(`${dir}: manifest.json is not valid JSON`);
  }
  if (!isObject(data) || data.format !== TRACE_FORMAT) {
    throw new UserError(`${dir}: manifest.json does not describe a rewind trace`);
  }
  if (typeof data.version !== 'number' || !SUPPORTED_VERSIONS.includes(data.version)) {
    throw new UserError(
      `${dir}: trace format version ${String(data.version)} is not supported (this rewind reads version ${SUPPORTED_VERSIONS.join(', ')})`,
    );
  }
  if (!Array.isArray(data.blobs) || !Array.isArray(data.argv) || (data.complete && !isObject(data.exit))) {
    throw new UserError(`${dir}: manifest.json is incomplete`);
  }
  for (const b of data.blobs as unknown[]) {
    // Blob names become paths: anything but a sha256 could reach outside the trace.
    if (!isObject(b) || typeof b.sha256 !== 'string' || !BLOB_NAME.test(b.sha256)) {
      throw new UserError(`${dir}: manifest.json names a blob that is not a sha256 (64 hex digits)`);
    }
  }
  return data as unknown as Manifest;
}

/** The event stream of a trace; a recording cut short still has the one it was writing. */
export function eventsPath(manifest: Manifest, dir: string): string {
  if (!manifest.complete) {
    const partial = join(dir, 'events.partial');
    if (existsSync(partial)) return partial;
    throw new UserError(`${dir}: the recording was cut short before it wrote any event`);
  }
  const blob = manifest.blobs.find((b) => b.role === 'events');
  if (!blob) throw new UserError(`${dir}: the manifest names no event stream`);
  return join(dir, 'blobs', blob.sha256);
}

/** Shell-style exit information from a wait status. */
export function exitInfo(waitStatus: number, signalName: (n: number) => string): ExitInfo {
  const termSig = waitStatus & 0x7f;
  if (termSig === 0) {
    const code = (waitStatus >> 8) & 0xff;
    return { status: code, code, signal: null };
  }
  return { status: 128 + termSig, code: null, signal: signalName(termSig) };
}
