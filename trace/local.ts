// A local trace directory as an upload sees it: the manifest to send and the file behind each
// blob. The manifest is checked with the validator the server applies again on its side, so a
// bad one is explained here, before anything travels.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { SHA256_HEX } from './ids.js';
import { ManifestError, manifestPath, parseJson, readManifestText, validateManifest, type Manifest } from './manifest.js';
import { UserError } from './user_error.js';

export interface LocalTrace {
  /** The manifest to upload (for a trace cut short: the local one, completed with its blobs). */
  manifest: Manifest;
  /** The file holding each blob's bytes: DIR/blobs/<sha256>, or DIR/events.partial. */
  files: Map<string, string>;
  /** The recording was cut short (or is still running): `complete: false`. */
  incomplete: boolean;
}

async function sha256File(file: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of fs.createReadStream(file, { highWaterMark: 1 << 20 })) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), size };
}

/**
 * Reads DIR/manifest.json and checks that every blob it lists is present with the right size.
 * A trace whose recording was cut short (`complete: false`) is refused unless allowIncomplete:
 * then its manifest names no blobs yet, and the upload carries every blob in DIR/blobs plus the
 * event stream the recorder was writing (DIR/events.partial, as the `events` blob).
 */
export async function readLocalTrace(dir: string, opts: { allowIncomplete?: boolean } = {}): Promise<LocalTrace> {
  let manifest: Manifest;
  try {
    manifest = validateManifest(parseJson(readManifestText(dir)));
  } catch (err) {
    if (err instanceof ManifestError) throw new ManifestError(`${manifestPath(dir)}: ${err.message}`);
    throw err;
  }
  const files = new Map<string, string>();
  for (const b of manifest.blobs) {
    const blobFile = path.join(dir, 'blobs', b.sha256);
    let st: fs.Stats;
    try {
      st = await fsp.stat(blobFile);
    } catch {
      throw new UserError(`trace ${dir} is incomplete: blob ${b.sha256} is missing`);
    }
    if (st.size !== b.size) throw new UserError(`trace ${dir}: blob ${b.sha256} is ${st.size} bytes, the manifest says ${b.size}`);
    files.set(b.sha256, blobFile);
  }
  if (manifest.complete) return { manifest, files, incomplete: false };

  if (!opts.allowIncomplete) {
    throw new UserError(`trace ${dir} is incomplete (its recording is still running or was cut short); only finished traces can be pushed`);
  }
  const partial = path.join(dir, 'events.partial');
  if (!fs.existsSync(partial)) throw new UserError(`trace ${dir} was cut short before it recorded any event; there is nothing to push`);
  const blobs = manifest.blobs.filter((b) => b.role !== 'events');
  const known = new Set(blobs.map((b) => b.sha256));
  let names: string[] = [];
  try {
    names = await fsp.readdir(path.join(dir, 'blobs'));
  } catch {
    // no blobs written yet
  }
  // Blobs are written whole (to a temporary name, then renamed): every hash-named file is one.
  for (const name of names.sort()) {
    if (!SHA256_HEX.test(name) || known.has(name)) continue;
    const st = await fsp.stat(path.join(dir, 'blobs', name));
    if (!st.isFile()) continue;
    blobs.push({ sha256: name, size: st.size, role: 'recorded' });
    files.set(name, path.join(dir, 'blobs', name));
  }
  const events = await sha256File(partial);
  blobs.push({ sha256: events.sha256, size: events.size, role: 'events' });
  files.set(events.sha256, partial);
  return { manifest: { ...manifest, blobs }, files, incomplete: true };
}
