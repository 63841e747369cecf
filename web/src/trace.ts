// A trace's page: what the catalogue and the manifest say of the run, its process tree, its
// timeline, and the actions: copy the debug command, replay here, delete (admins).
import { api, decodeBytes, type Manifest, type RecordedOutput, type TraceSummary } from './api.js';
import { el, failed, formatBytes, formatDuration, formatExit, formatTime } from './dom.js';
import type { Session } from './main.js';
import { timelineView } from './timeline.js';
import { queryView } from './query.js';

/** Replay's output as it streams in: spans, stderr's marked (red), each stream decoded as one text. */
function outputSpan(fd: 1 | 2, data: string, dec: Record<1 | 2, TextDecoder>): HTMLElement {
  return el('span', { class: fd === 2 ? 'stderr' : 'stdout' }, decodeBytes(data, dec[fd]));
}

const sizeOf = (n: number): string => `${n.toLocaleString()} byte${n === 1 ? '' : 's'}`;

/**
 * The recorded stdout and stderr, each in a block of its own: the server got them through two
 * pipes, so how the two interleaved is not known (server/http/output.ts).
 */
function recordedOutput(id: string, o: RecordedOutput, note: HTMLElement): HTMLElement[] {
  const blocks: HTMLElement[] = [];
  for (const [name, s] of [['stdout', o.stdout], ['stderr', o.stderr]] as const) {
    if (s.bytes === 0 && !s.truncated) continue;
    const pre = el('pre', { class: `output ${name}`, id: `output-${name}`, tabindex: 0, 'aria-label': `Recorded ${name}` }, decodeBytes(s.data, new TextDecoder()));
    if (s.truncated) pre.append(el('span', { class: 'truncated' }, `\n… truncated after ${sizeOf(s.bytes)}`));
    blocks.push(el('h3', {}, name, el('span', { class: 'status' }, ` · ${sizeOf(s.bytes)}${s.truncated ? ', truncated' : ''}`)), pre);
  }
  const cut = [o.stdout.truncated && 'stdout', o.stderr.truncated && 'stderr'].filter(Boolean).join(' and ');
  if (o.failed) note.textContent = `Replay could not follow the recording (${o.failed}): the output ends with replay's own message.`;
  else if (cut) note.textContent = `Truncated: only the first ${sizeOf(Math.max(o.stdout.bytes, o.stderr.bytes))} of ${cut} are shown (rewind replay ${id} prints all of it).`;
  else if (blocks.length === 0) note.textContent = 'The program wrote nothing to its stdout or stderr.';
  else note.textContent = 'What the program wrote to its stdout and stderr.';
  return blocks;
}

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

  const recorded = el('div', { id: 'output' });
  const recordedNote = el('p', { class: 'status', id: 'output-status', role: 'status', 'aria-live': 'polite' }, 'Reading the recorded output…');
  const out = el('pre', { class: 'output', id: 'replay-output', tabindex: 0, 'aria-label': 'Replay output', hidden: true });
  const exit = el('p', { class: 'status', id: 'replay-status', role: 'status', 'aria-live': 'polite' }, 'Replay here runs the recording again on the server and streams its output below.');
  const replayButton = el('button', { type: 'button', id: 'replay' }, 'Replay here');
  let running: AbortController | undefined;
  replayButton.addEventListener('click', () => {
    if (running) {
      running.abort();
      return;
    }
    running = new AbortController();
    out.replaceChildren();
    out.hidden = false;
    exit.textContent = 'Replaying…';
    replayButton.textContent = 'Stop';
    const dec = { 1: new TextDecoder(), 2: new TextDecoder() };
    api
      .runReplay(
        t.id,
        (msg) => {
          if (msg.stdout) out.append(outputSpan(1, msg.stdout, dec));
          if (msg.stderr) out.append(outputSpan(2, msg.stderr, dec));
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
    section('Output', 'h-output', recordedNote, recorded),
    section('Replay', 'h-replay', exit, out),
    section('Query', 'h-query', queryView(t.id)),
  );
  main.focus();
  // One after the other: each takes one of the token's replay sessions on the server (two at
  // most), and the other is left for the user's replay or query.
  const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));
  void api
    .timeline(t.id)
    .then(
      (tl) => timeline.replaceChildren(timelineView(tl)),
      (err: unknown) => timeline.replaceChildren(el('p', { class: 'error', role: 'alert' }, `No timeline: ${message(err)}`)),
    )
    .then(() => api.output(t.id))
    .then(
      (o) => recorded.replaceChildren(...recordedOutput(t.id, o, recordedNote)),
      (err: unknown) => (recordedNote.textContent = `No recorded output: ${message(err)}`),
    );
}
