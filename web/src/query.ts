// Queries over the whole recording (docs/queries.md), as `rewind query ID ...` asks them: every
// call of a function, every write to memory, every syscall. Each answer is a moment, and the
// command that opens the debugger there is one click away.
import { api, type QueryMessage, type QueryRow } from './api.js';
import { el } from './dom.js';

/** Rows drawn at most: an answer may hold 200,000; the rest are for `rewind query --json`. */
const ROWS_SHOWN = 500;

const KINDS = [
  { kind: 'calls', label: 'calls of a function', hint: 'a function: main, step, crate::name or 0xADDR' },
  { kind: 'writes', label: 'writes to memory', hint: 'a variable or 0xADDR, with :LEN for 1 to 32 bytes' },
  { kind: 'syscalls', label: 'syscalls', hint: 'a syscall name (write), or empty for all' },
] as const;

function bytesOf(b64: string | undefined): Uint8Array {
  const bin = atob(b64 ?? '');
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}

/** Bytes in memory order as a little-endian integer (1, 2, 4 or 8 of them), otherwise as hex: as the CLI shows them. */
export function showValue(b64: string | undefined): string {
  const b = bytesOf(b64);
  if (b.length === 0) return '?';
  const v = new DataView(b.buffer);
  if (b.length === 8) return String(v.getBigInt64(0, true));
  if (b.length === 4) return String(v.getInt32(0, true));
  if (b.length === 2) return String(v.getInt16(0, true));
  if (b.length === 1) return String(v.getInt8(0));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

function cells(kind: string, r: QueryRow): string[] {
  if (kind === 'calls') return [String(r.thread ?? ''), (r.arguments ?? []).map((a) => `${a.name ?? ''}=${a.value ?? ''}`).join(', ')];
  if (kind === 'writes') return [String(r.thread ?? ''), showValue(r.oldValue), showValue(r.newValue), r.cause === 'instruction' ? r.instruction || r.pc || '' : (r.cause ?? ''), r.line ?? ''];
  return [r.event ?? '0', String(r.thread ?? ''), r.text ?? ''];
}

const HEADERS: Record<string, string[]> = {
  calls: ['Thread', 'Arguments'],
  writes: ['Thread', 'Old', 'New', 'By', 'Line'],
  syscalls: ['Event', 'Thread', 'Syscall'],
};

export function queryView(traceId: string): HTMLElement {
  const kind = el('select', { id: 'q-kind', name: 'kind' }, ...KINDS.map((k) => el('option', { value: k.kind }, k.label)));
  const subject = el('input', { id: 'q-subject', name: 'subject', type: 'text', autocomplete: 'off', spellcheck: 'false' });
  const run = el('button', { type: 'submit', id: 'q-run' }, 'Ask');
  const hint = (): void => {
    subject.placeholder = KINDS.find((k) => k.kind === kind.value)!.hint;
  };
  kind.addEventListener('change', hint);
  hint();
  const form = el(
    'form',
    { class: 'query-form', 'aria-label': 'Query the recording' },
    el('div', { class: 'field' }, el('label', { for: 'q-kind' }, 'Every'), kind),
    el('div', { class: 'field grow' }, el('label', { for: 'q-subject' }, 'Of'), subject),
    el('div', { class: 'field actions' }, run),
  );
  const status = el('p', { class: 'status', id: 'query-status', role: 'status', 'aria-live': 'polite' }, 'One replay of the recording answers a query; the server keeps the answer.');
  const copied = el('p', { class: 'status', id: 'query-copied', role: 'status', 'aria-live': 'polite' });
  const results = el('div', { id: 'query-results' });
  let running: AbortController | undefined;

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (running) return running.abort();
    const words = [kind.value, ...subject.value.trim().split(/\s+/).filter(Boolean)];
    const text = words.join(' ');
    running = new AbortController();
    run.textContent = 'Stop';
    status.textContent = `Asking “${text}”…`;
    results.replaceChildren();
    copied.textContent = '';
    let head: QueryMessage['answer'] | undefined;
    const rows: QueryRow[] = [];
    let failure: string | undefined;
    api
      .query(
        traceId,
        text,
        (m) => {
          if (m.progress) {
            const at = Number(m.progress.event ?? 0);
            const of = Math.max(1, Number(m.progress.events ?? 1));
            status.textContent = `Replaying event ${at} of ${of} (${Math.floor((100 * at) / of)}%)…`;
          }
          if (m.answer) {
            head = m.answer;
            rows.push(...(m.answer.rows ?? []));
          }
          if (m.error) failure = m.error.message;
        },
        running.signal,
      )
      .then(() => {
        if (failure || !head) throw new Error(failure ?? 'the server sent no answer');
        status.textContent = summary(head, rows.length);
        results.replaceChildren(answerTable(traceId, head.kind ?? '', rows, copied));
      })
      .catch((err: unknown) => {
        status.textContent = running?.signal.aborted ? 'Query stopped.' : `Query failed: ${err instanceof Error ? err.message : String(err)}`;
      })
      .finally(() => {
        running = undefined;
        run.textContent = 'Ask';
      });
  });
  return el('div', { class: 'query' }, form, status, copied, results);
}

function summary(a: NonNullable<QueryMessage['answer']>, n: number): string {
  const what = a.kind === 'calls' ? 'call' : a.kind === 'writes' ? 'write' : 'syscall';
  const shown = n > ROWS_SHOWN ? ` (the first ${ROWS_SHOWN} shown; all of them: rewind query --json)` : '';
  return `${n} ${what}${n === 1 ? '' : 's'} of ${a.subject ?? ''} in ${a.events ?? 0} events${shown}`;
}

function answerTable(traceId: string, kind: string, rows: QueryRow[], note: HTMLElement): HTMLElement {
  if (rows.length === 0) return el('p', {}, 'None.');
  const body = el('tbody', {});
  for (const r of rows.slice(0, ROWS_SHOWN)) {
    const command = r.moment ? `rewind debug ${traceId} --moment ${r.moment}` : '';
    const copy = command ? el('button', { type: 'button', class: 'small secondary copy-moment', 'aria-label': `Copy ${command}`, 'data-command': command }, 'Copy') : null;
    copy?.addEventListener('click', () => {
      navigator.clipboard.writeText(command).then(
        () => (note.textContent = `Copied “${command}”`),
        () => (note.textContent = 'Copy failed: select the command and copy it by hand'),
      );
    });
    // A moment names where the debugger opens; another process's syscalls have none.
    const moment = r.moment ? el('code', {}, r.moment) : el('span', { class: 'muted', title: 'another process: the debugger does not go there' }, '—');
    body.append(el('tr', {}, el('td', { class: 'moment' }, moment, ' ', copy), ...cells(kind, r).map((c) => el('td', {}, c))));
  }
  return el(
    'table',
    { class: 'traces answers' },
    el('thead', {}, el('tr', {}, ...['Moment', ...(HEADERS[kind] ?? [])].map((h) => el('th', { scope: 'col' }, h)))),
    body,
  );
}
