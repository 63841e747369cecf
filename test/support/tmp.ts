// Temporary directories of a test file, removed with it.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const temps: string[] = [];

/** A fresh temp directory, removed by cleanupTemps() (from afterAll) or at exit. */
export function tempDir(prefix = 'rewind-test-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
}

export function cleanupTemps(): void {
  for (const d of temps.splice(0)) rmSync(d, { recursive: true, force: true });
}
process.on('exit', cleanupTemps);
