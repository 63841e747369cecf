// Parsing and layout of the command line's own arguments and tables.
import { UserError } from '../trace/user_error.js';

/** Parses "2026-11-21T22:00:00Z", "2026-11-21", or a relative age like "90s", "15m", "2h", "7d". */
export function parseTime(s: string, what: string): Date {
  const rel = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$/.exec(s.trim());
  if (rel) {
    const mult = { s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 }[rel[2] as 's' | 'm' | 'h' | 'd' | 'w'];
    return new Date(Date.now() - Number(rel[1]) * mult);
  }
  const t = Date.parse(s);
  if (Number.isNaN(t)) throw new UserError(`bad ${what} time ${JSON.stringify(s)}: use ISO 8601 (2026-11-21T22:00:00Z) or an age (30m, 2h, 7d)`);
  return new Date(t);
}

/** Collects repeated --label k=v options. */
export function collectLabel(value: string, prev: Record<string, string> = {}): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new UserError(`bad label ${JSON.stringify(value)}: expected KEY=VALUE`);
  return { ...prev, [value.slice(0, i)]: value.slice(i + 1) };
}

/** Renders rows as aligned columns (the last column is not padded). */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n') + '\n';
}
