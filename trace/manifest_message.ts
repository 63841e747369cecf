// The manifest as the API carries it (rewind.trace.v1.Manifest) and back. Whatever arrives is
// checked by the one validator of trace/manifest.ts, exactly as a manifest.json on disk is.
import type { Manifest as ManifestMessage } from '../gen/rewind/trace/v1/manifest.js';
import { validateManifest, type Manifest } from './manifest.js';

export type { ManifestMessage };

export function manifestMessage(m: Manifest): ManifestMessage {
  return {
    ...m,
    exit: m.exit ? { status: m.exit.status, code: m.exit.code ?? undefined, signal: m.exit.signal ?? undefined } : undefined,
    counts: {
      events: BigInt(m.counts.events),
      tasks: BigInt(m.counts.tasks),
      syscalls: BigInt(m.counts.syscalls),
      bytes: BigInt(m.counts.bytes),
    },
    blobs: m.blobs.map((b) => ({ ...b, size: BigInt(b.size) })),
    syscallBuffer: m.syscallBuffer ?? false,
  };
}

/**
 * The manifest a message holds, checked (a ManifestError names the field). 64-bit fields become
 * numbers first, so a value past what the validator allows is refused rather than rounded.
 */
export function manifestFromMessage(msg: ManifestMessage, reader?: string): Manifest {
  const { exit, counts, blobs, ...rest } = msg;
  return validateManifest(
    {
      ...rest,
      exit: exit ? { status: exit.status, code: exit.code ?? null, signal: exit.signal ?? null } : null,
      counts: counts && {
        events: Number(counts.events),
        tasks: Number(counts.tasks),
        syscalls: Number(counts.syscalls),
        bytes: Number(counts.bytes),
      },
      blobs: blobs.map((b) => ({ ...b, size: Number(b.size) })),
    },
    reader,
  );
}
