// The one environment every child process of the suites gets: the developer's REWIND_* settings
// and config file never leak in, rewind's data directory ($XDG_DATA_HOME/rewind: the `latest`
// link, spools) is a temp directory of this test process, and the locale and time zone are fixed.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let dataHome: string | undefined;

function testDataHome(): string {
  if (!dataHome) {
    const d = mkdtempSync(join(tmpdir(), 'rewind-xdg-'));
    process.on('exit', () => rmSync(d, { recursive: true, force: true }));
    dataHome = d;
  }
  return dataHome;
}

export function testEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith('REWIND_')) env[k] = v;
  Object.assign(env, {
    LC_ALL: 'C',
    LANG: 'C',
    TZ: 'UTC',
    NO_COLOR: '1',
    REWIND_CONFIG: '/nonexistent/rewind-config.json',
    XDG_DATA_HOME: testDataHome(),
  });
  return { ...env, ...extra };
}
