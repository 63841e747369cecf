// A trace's page: what the catalogue and the manifest say of the run, its process tree, its
// timeline, and the actions: copy the debug command, replay here, delete (admins).
import { api, ApiError, decodeBytes, type Manifest, type TraceSummary } from './api.js';
import { el, failed, formatBytes, formatDuration, formatExit, formatTime } from './dom.js';
import type { Session } from './main.js';
import { timelineView } from './timeline.js';

function facts(t: TraceSummary, m: Manifest): HTMLElement {
  const cpu = m.host?.cpu;
  const items: [string, Node | string][] = [
    ['Command', el('code', {}, (t.argv ?? []).join(' '))],
    ['Executable', t.exe ?? ''],
    ['Host', `${t.host ?? ''}${m.host?.kernel ? ` (Linux ${m.host.kernel}, ${m.host.arch ?? ''})` : ''}`],
    ['CPU', cpu ? `${cpu.model ?? ''} (${cpu.vendor ?? ''}, ${cpu.flags?.length ?? 0} flags)` : '—'],
    ['User', t.user ?? ''],
    ['Directory', m.cwd ?? ''],
    ['Started', formatTime(t.startTime)],
    ['Ended', formatTime(m.endTime)],
    ['Duration', formatDuration(t.durationMs)],
    ['Exit', el('span', { class: failed(t) ? 'exit bad' : 'exit' }, formatExit(t))],
    ['Labels', el('span', {}, ...Object.entries(t.labels ?? {}).map(([k, v]) => el('span', { class: 'label' }, `${k}=${v}`)))],
    ['Events', `${m.counts?.events ?? '?'} events, ${m.counts?.syscalls ?? '?'} syscalls, ${m.counts?.tasks ?? '?'} tasks`],
    ['Size', formatBytes(t.sizeBytes)],
    ['Trace', el('code', {}, t.id)],
  ];
  return el('dl', { class: 'facts' }, ...items.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)]));
}

/** The processes as a tree: each under its parent, with every program it ran. */
function processTree(m: Manifest): HTMLElement {
  const procs = Array.isArray(m.processes) ? m.processes : [];
  const pids = new Set(procs.map((p) => p.pid));
  const children = new Map<number, typeof procs>();
  for (const p of procs) {
    const parent = p.parent !== undefined && pids.has(p.parent) && p.parent !== p.pid ? p.parent : 0;
    children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  const seen = new Set<number>();
  const list = (parent: number): HTMLElement | null => {
    const kids = (children.get(parent) ?? []).filter((p) => !seen.has(p.pid));
    if (kids.length === 0) return null;
    return el(
      'ul',
      {},
      ...kids.map((p) => {
        seen.add(p.pid);
        const execs = (p.execs ?? []).map((e) => el('li', { class: 'exec' }, 'exec ', el('code', {}, (e.argv ?? []).join(' ') || e.exe || '')));
        const threads = p.threads?.length ? el('span', { class: 'threads' }, ` · ${p.threads.length} more thread${p.threads.length === 1 ? '' : 's'}`) : null;
        return el('li', { class: 'proc' }, el('span', { class: 'pid' }, `pid ${p.pid}`), el('span', { class: 'parent' }, ` parent ${p.parent || '—'}`), threads, execs.length ? el('ul', { class: 'execs' }, ...execs) : null, list(p.pid));
      }),
    );
  };
  return list(0) ?? el('p', {}, 'The trace names no processes.');
}

function section(title: string, id: string, ...body: (Node | null)[]): HTMLElement {
  return el('section', { 'aria-labelledby': id }, el('h2', { id }, title), ...body);
}

export async function showTrace(main: HTMLElement, id: string, session: Session): Promise<void> {
  main.replaceChildren(el('p', { class: 'status', role: 'status' }, 'Loading…'));
  const detail = await api.getTrace(id);
  const t = detail.summary ?? { id };
  const m: Manifest = detail.manifest ?? {};
  const command = `rewind debug ${t.id}`;

  const note = el('span', { class: 'note', role: 'status', 'aria-live': 'polite', id: 'action-status' });
  const copy = el('button', { type: 'button', id: 'copy-debug' }, 'Copy ', el('code', {}, command));
  copy.addEventListener('click', () => {
    navigator.clipboard.writeText(command).then(
      () => (note.textContent = `Copied “${command}”`),
      () => (note.textContent = `Copy failed: select the command and copy it by hand`),
    );
  });

  const out = el('pre', { class: 'output', id: 'output', tabindex: 0, 'aria-label': 'Replay output' });
  const exit = el('p', { class: 'status', id: 'replay-status', role: 'status', 'aria-live': 'polite' }, 'The recorded output appears here when the trace is replayed on the server.');
  const replayButton = el('button', { type: 'button', id: 'replay' }, 'Replay here');
  let running: AbortController | undefined;
  replayButton.addEventListener('click', () => {
    if (running) {
      running.abort();
      return;
    }
    running = new AbortController();
    out.replaceChildren();
    exit.textContent = 'Replaying…';
    replayButton.textContent = 'Stop';
    const dec = { stdout: new TextDecoder(), stderr: new TextDecoder() };
    api
      .runReplay(
        t.id,
        (msg) => {
          if (msg.stdout) out.append(el('span', { class: 'stdout' }, decodeBytes(msg.stdout, dec.stdout)));
          if (msg.stderr) out.append(el('span', { class: 'stderr' }, decodeBytes(msg.stderr, dec.stderr)));
          if (msg.exit) exit.textContent = msg.exit.error ? `Replay failed: ${msg.exit.error}` : `Replay ended with exit status ${msg.exit.status ?? 0}`;
          if (msg.error) exit.textContent = `Replay failed: ${msg.error.message}`;
        },
        running.signal,
      )
      .catch((err: unknown) => {
        exit.textContent = running?.signal.aborted ? 'Replay stopped.' : `Replay failed: ${err instanceof Error ? err.message : String(err)}`;
      })
      .finally(() => {
        running = undefined;
        replayButton.textContent = 'Replay here';
      });
  });

  const actions = el('div', { class: 'actions' }, copy, replayButton);
  if (session.role === 'ROLE_ADMIN') {
    const del = el('button', { type: 'button', id: 'delete', class: 'danger' }, 'Delete trace');
    del.addEventListener('click', () => {
      if (!confirm(`Delete trace ${t.id} (${t.program ?? ''}) for everyone?`)) return;
      api.deleteTrace(t.id).then(
        () => (location.hash = '#/'),
        (err: unknown) => (note.textContent = `Delete failed: ${err instanceof Error ? err.message : String(err)}`),
      );
    });
    actions.append(del);
  }
  actions.append(note);

  const timeline = el('div', { id: 'timeline', class: 'timeline' }, el('p', { class: 'status', role: 'status' }, 'Reading the trace’s events…'));
  main.replaceChildren(
    el('nav', { 'aria-label': 'Breadcrumb' }, el('a', { href: '#/' }, '← Traces')),
    el('h1', {}, t.program || t.exe || t.id),
    actions,
    section('Run', 'h-run', facts(t, m)),
    section('Processes', 'h-procs', el('div', { id: 'proctree', class: 'proctree' }, processTree(m))),
    section('Timeline', 'h-timeline', timeline),
    section('Output', 'h-output', exit, out),
  );
  main.focus();
  api.timeline(t.id).then(
    (tl) => timeline.replaceChildren(timelineView(tl)),
    (err: unknown) => timeline.replaceChildren(el('p', { class: 'error', role: 'alert' }, `No timeline: ${err instanceof ApiError || err instanceof Error ? err.message : String(err)}`)),
  );
}
