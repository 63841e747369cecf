// Where the suites find the repository, the fixtures and the built CLI.
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(REPO, 'test', 'fixtures');
export const CLI = join(REPO, 'dist', 'cli', 'main.js');
