// rewind's version, from package.json: the one place it is written.
import { readFileSync } from 'node:fs';

// trace/version.ts runs from the sources (tests) or as dist/trace/version.js.
const here = new URL('.', import.meta.url).pathname;
const pkg = new URL(here.includes('/dist/') ? '../../package.json' : '../package.json', import.meta.url);

function readVersion(): string {
  try {
    return (JSON.parse(readFileSync(pkg, 'utf8')) as { version?: string }).version ?? 'unknown';
  } catch {
    return 'unknown'; // dist/ copied without its package.json
  }
}

export const REWIND_VERSION = readVersion();
