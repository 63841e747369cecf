// The native engine as TypeScript sees it. Loaded lazily: commands that only talk to a
// server must work on machines where the addon was never built.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export type BlobRole = 'events' | 'file' | 'snapshot';

export interface BlobInfo {
  sha256: string;
  size: number;
  role: BlobRole;
  path?: string;
}

export interface RecordRequest {
  exe: string;
  argv: string[];
  env: string[];
  traceDir: string;
}

/** A process of the recorded tree: its pid and parent when recorded, and each program it exec'd. */
export interface ProcessInfo {
  pid: number;
  /** 0 for the recorded program itself. */
  parent: number;
  execs: { exe: string; argv: string[] }[];
  /** Its other threads' tids, in the order they started. */
  threads: number[];
}

export interface RecordOutcome {
  /** The raw wait status of the recorded process. */
  waitStatus: number;
  events: number;
  syscalls: number;
  tasks: number;
  processes: ProcessInfo[];
  blobs: BlobInfo[];
}

export interface ReplayRequest {
  traceDir: string;
  /** The event stream file: blobs/<sha256>, or events.partial of a recording cut short. */
  eventsPath: string;
  stubPath: string;
  stdoutFd?: number;
  stderrFd?: number;
}

export interface ReplayOutcome {
  waitStatus: number;
  events: number;
}

/** Codes on the errors the engine rejects with. */
export type EngineErrorCode = 'EUNSUPPORTED' | 'EDIVERGED' | 'EBADTRACE' | 'EEXEC' | 'ESYSTEM';

export interface Engine {
  record(request: RecordRequest): Promise<RecordOutcome>;
  replay(request: ReplayRequest): Promise<ReplayOutcome>;
}

export class EngineUnavailableError extends Error {}

function buildDir(): string {
  // native/index.ts runs from the source tree (tests) or from dist/native (the CLI).
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, 'native', 'build', 'Release');
    if (existsSync(join(candidate, 'rewind.node'))) return candidate;
    dir = dirname(dir);
  }
  const sibling = join(dirname(fileURLToPath(import.meta.url)), 'build', 'Release');
  return sibling;
}

let engine: Engine | undefined;

export function loadEngine(): Engine {
  if (engine) return engine;
  const addon = join(buildDir(), 'rewind.node');
  if (!existsSync(addon)) {
    throw new EngineUnavailableError(
      'the native engine is not built on this machine (recording and local replay need Linux x86-64; run `npm run build:native`)',
    );
  }
  const require = createRequire(import.meta.url);
  engine = require(addon) as Engine;
  return engine;
}

export function stubPath(): string {
  return join(buildDir(), 'rewind-stub');
}

export function engineErrorCode(err: unknown): EngineErrorCode | undefined {
  if (err instanceof Error && 'code' in err && typeof err.code === 'string') {
    return err.code as EngineErrorCode;
  }
  return undefined;
}
