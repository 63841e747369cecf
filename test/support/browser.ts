// Headless Chromium for the web page's suites: Debian's chromium driven by playwright-core (no
// browser download). Without it a suite skips with one line saying how to get it; under CI
// (.ci/run sets CI) it fails instead.
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { REPO } from './paths.js';

export const CHROMIUM = '/usr/bin/chromium';
export const HAVE_CHROMIUM = existsSync(CHROMIUM);
export const NO_CHROMIUM = `no ${CHROMIUM}: install Debian's chromium (apt-get install chromium) to run the browser tests`;

/** Screenshots the browser suites keep (gitignored): test-artifacts/web. */
export const SCREENSHOTS = join(REPO, 'test-artifacts', 'web');

/** Whether a browser suite runs; under CI a missing chromium is an error, not a skip. */
export function browserSuiteRuns(): boolean {
  if (HAVE_CHROMIUM) return true;
  if (process.env.CI) throw new Error(NO_CHROMIUM);
  console.warn(NO_CHROMIUM);
  return false;
}

export async function launchChromium(): Promise<Browser> {
  const { chromium } = await import('playwright-core');
  mkdirSync(SCREENSHOTS, { recursive: true });
  // The flags keep Chromium from reaching for the network this machine does not have;
  // playwright gives each launch a new empty profile.
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}
