// Building the page from data: elements with their text set as text, never parsed as HTML
// (every string here came from a trace, and traces are untrusted).
type Child = Node | string | null | undefined | false;
type Attrs = Record<string, string | number | boolean | undefined | ((ev: Event) => void)>;

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: Child[]): SVGElementTagNameMap[K] {
  const e = document.createElementNS(SVG_NS, tag);
  setAttrs(e, attrs);
  append(e, children);
  return e;
}

function setAttrs(e: Element, attrs: Attrs): void {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (typeof v === 'function') e.addEventListener(k.replace(/^on/, ''), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
}

function append(e: Element, children: Child[]): void {
  for (const c of children) if (c !== null && c !== undefined && c !== false) e.append(c);
}

// One formatter for every time shown: toLocaleString with options builds a new one per call,
// which cost a page of 50 rows tens of milliseconds.
const TIME_FORMAT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'medium' });

export function formatTime(iso: string | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '—' : TIME_FORMAT.format(d);
}

export function formatDuration(ms: number | undefined): string {
  const v = ms ?? 0;
  if (v < 1000) return `${v.toFixed(v < 10 ? 1 : 0)} ms`;
  if (v < 60_000) return `${(v / 1000).toFixed(2)} s`;
  return `${Math.floor(v / 60_000)} min ${Math.round((v % 60_000) / 1000)} s`;
}

export function formatBytes(text: string | undefined): string {
  const n = Number(text ?? 0);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/** Exit as `rewind ls` shows it: the status, and the signal that ended the run if one did. */
export function formatExit(t: { exitStatus?: number; signal?: string }): string {
  if (t.signal) return `${t.signal} (${t.exitStatus ?? -1})`;
  const s = t.exitStatus ?? 0;
  return s < 0 ? 'unknown' : String(s);
}

export function failed(t: { exitStatus?: number; signal?: string }): boolean {
  return Boolean(t.signal) || (t.exitStatus ?? 0) > 0;
}
