// The catalogue: `rewind ls`'s filters as a form (the URL's hash keeps them), newest first, a
// page at a time; the next page asks for traces that started no later than this page's last.
import { api, type ListFilter, type TraceSummary } from './api.js';
import { el, failed, formatDuration, formatExit, formatTime } from './dom.js';

export const PAGE_SIZE = 50;

const FIELDS = [
  { name: 'host', label: 'Host' },
  { name: 'program', label: 'Program' },
  { name: 'status', label: 'Exit', help: 'failed, a status (0, 1, 134) or a signal (SIGSEGV)' },
  { name: 'since', label: 'Since', type: 'datetime-local' },
  { name: 'until', label: 'Until', type: 'datetime-local' },
  { name: 'labels', label: 'Labels', help: 'key=value, comma separated' },
  { name: 'q', label: 'Text' },
] as const;

/** The ListTraces request the hash's parameters ask for. */
export function filterOf(p: URLSearchParams): ListFilter {
  const f: ListFilter = { limit: PAGE_SIZE };
  const host = p.get('host')?.trim();
  const program = p.get('program')?.trim();
  const status = p.get('status')?.trim();
  if (host) f.host = host;
  if (program) f.program = program;
  if (status === 'failed') f.failed = true;
  else if (status && /^\d+$/.test(status)) f.exitStatus = Number(status);
  else if (status) f.signal = status;
  for (const k of ['since', 'until'] as const) {
    const v = p.get(k);
    const d = v ? new Date(v) : undefined;
    if (d && !Number.isNaN(d.getTime())) f[k] = d.toISOString();
  }
  const labels = (p.get('labels') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  if (labels.length) f.labels = Object.fromEntries(labels.map((l) => [l.slice(0, l.indexOf('=') < 0 ? l.length : l.indexOf('=')), l.includes('=') ? l.slice(l.indexOf('=') + 1) : '']));
  const q = p.get('q')?.trim();
  if (q) f.search = q;
  return f;
}

function row(t: TraceSummary): HTMLTableRowElement {
  const labels = Object.entries(t.labels ?? {}).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`));
  return el(
    'tr',
    {},
    el('td', {}, formatTime(t.startTime)),
    el('td', {}, el('a', { href: `#/trace/${t.id}` }, t.program || t.exe || t.id), el('div', { class: 'argv' }, (t.argv ?? []).join(' '))),
    el('td', {}, t.host ?? ''),
    el('td', { class: failed(t) ? 'exit bad' : 'exit' }, formatExit(t)),
    el('td', { class: 'num' }, formatDuration(t.durationMs)),
    el('td', {}, ...labels),
  );
}

export async function showCatalog(main: HTMLElement, params: URLSearchParams): Promise<void> {
  const form = el('form', { class: 'filters', role: 'search', 'aria-label': 'Filter traces' });
  for (const f of FIELDS) {
    const id = `f-${f.name}`;
    const input = el('input', { id, name: f.name, type: 'type' in f ? f.type : 'text', value: params.get(f.name) ?? '', placeholder: 'help' in f ? f.help : '', step: 'type' in f ? 1 : undefined });
    form.append(el('div', { class: 'field' }, el('label', { for: id }, f.label), input));
  }
  form.append(el('div', { class: 'field actions' }, el('button', { type: 'submit' }, 'Filter'), el('a', { href: '#/', class: 'button secondary' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    performance.mark('rewind:list-submit');
    const p = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (typeof v === 'string' && v.trim()) p.set(k, v.trim());
    location.hash = `#/?${p.toString()}`;
  });

  const body = el('tbody', { id: 'traces' });
  const status = el('p', { class: 'status', role: 'status', 'aria-live': 'polite' });
  const older = el('button', { type: 'button', id: 'older' }, 'Older');
  const newer = el('button', { type: 'button', id: 'newer' }, 'Newer');
  const table = el(
    'table',
    { class: 'traces', 'aria-describedby': 'catalog-status' },
    el('caption', { class: 'sr-only' }, 'Traces, newest first'),
    el('thead', {}, el('tr', {}, ...['Started', 'Program', 'Host', 'Exit', 'Duration', 'Labels'].map((h) => el('th', { scope: 'col' }, h)))),
    body,
  );
  status.id = 'catalog-status';
  main.replaceChildren(el('h1', {}, 'Traces'), form, status, table, el('nav', { class: 'pager', 'aria-label': 'Pages' }, newer, older));

  const filter = filterOf(params);
  // Each page's `until` cursor, and the ids already shown at it (rows of the same start time).
  const pages: { until?: string; skip: Set<string> }[] = [{ until: filter.until, skip: new Set() }];
  let page = 0;
  const load = async (): Promise<void> => {
    const { until, skip } = pages[page]!;
    status.textContent = 'Loading…';
    const started = performance.now();
    const res = await api.listTraces({ ...filter, until, limit: PAGE_SIZE + skip.size });
    if (!body.isConnected) return; // another view (a newer filter) replaced this one meanwhile
    const all = res.traces ?? [];
    const traces = all.filter((t) => !skip.has(t.id)).slice(0, PAGE_SIZE);
    body.replaceChildren(...traces.map(row));
    const more = all.length >= PAGE_SIZE + skip.size || Boolean(res.truncated);
    const last = traces[traces.length - 1];
    if (more && last) {
      const same = new Set(traces.filter((t) => t.startTime === last.startTime).map((t) => t.id));
      if (last.startTime === until) for (const id of skip) same.add(id);
      pages[page + 1] = { until: last.startTime, skip: same };
    }
    older.disabled = !(more && last);
    newer.disabled = page === 0;
    status.textContent = traces.length === 0 ? 'No traces match.' : `${traces.length} traces (page ${page + 1}) in ${Math.round(performance.now() - started)} ms`;
    // After the frame that painted the rows (bench/web_catalog.ts reads it).
    requestAnimationFrame(() => setTimeout(() => performance.mark('rewind:list-painted')));
  };
  const turn = (to: number): void => {
    page = to;
    load().catch((err: unknown) => (status.textContent = `Cannot list traces: ${err instanceof Error ? err.message : String(err)}`));
  };
  older.addEventListener('click', () => turn(page + 1));
  newer.addEventListener('click', () => turn(Math.max(0, page - 1)));
  await load();
}
