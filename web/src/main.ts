// The page's shell: sign-in with a token (kept in sessionStorage), and the two views, chosen by
// the URL's hash so each catalogue filter and trace has an address to share.
import './style.css';
import { api, ApiError, token, type Role } from './api.js';
import { el } from './dom.js';
import { showCatalog } from './catalog.js';
import { showTrace } from './trace.js';

const main = document.getElementById('main')!;
const who = document.getElementById('who')!;
const signout = document.getElementById('signout') as HTMLButtonElement;

export interface Session {
  name: string;
  role: Role;
}

/** Who the token is: asked once at sign-in, beside the first view's own call (one round trip). */
let session: Promise<Session> | null = null;

function showSignIn(message?: string): void {
  session = null;
  who.textContent = '';
  signout.hidden = true;
  const input = el('input', { id: 'token', type: 'password', name: 'token', autocomplete: 'off', required: true, 'aria-describedby': 'token-help' });
  const error = el('p', { class: 'error', role: 'alert' }, message ?? '');
  const form = el(
    'form',
    { class: 'signin', 'aria-labelledby': 'signin-title' },
    el('h1', { id: 'signin-title' }, 'Sign in'),
    el('label', { for: 'token' }, 'Token'),
    input,
    el('p', { id: 'token-help', class: 'help' }, 'A reader or admin token: ', el('code', {}, 'rewind token create --role reader'), '. It is kept in this tab only.'),
    el('button', { type: 'submit' }, 'Sign in'),
    error,
  );
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    token.set(input.value.trim());
    start();
  });
  main.replaceChildren(form);
  input.focus();
}

function refused(err: unknown): void {
  token.clear();
  showSignIn(err instanceof ApiError ? err.message : String(err));
}

function start(): void {
  if (!token.get()) return showSignIn();
  const me = api.whoAmI().then((r): Session => ({ name: r.token?.name ?? '', role: r.token?.role ?? 'ROLE_READER' }));
  session = me;
  me.then((s) => {
    who.textContent = `${s.name || 'token'} · ${s.role.replace('ROLE_', '').toLowerCase()}`;
    signout.hidden = false;
  }, refused);
  void route();
}

/** Shows the view the hash names: #/?filters or #/trace/ID. */
async function route(): Promise<void> {
  const current = session;
  if (!current) return;
  const hash = location.hash.replace(/^#/, '') || '/';
  const trace = /^\/trace\/([0-9a-fA-F-]{36})$/.exec(hash);
  // A view is drawn anew; the control that had the focus (a filter field) gets it back.
  const focused = document.activeElement?.id;
  try {
    if (trace) await showTrace(main, trace[1]!, await current);
    else await showCatalog(main, new URLSearchParams(hash.split('?')[1] ?? ''));
    if (focused) document.getElementById(focused)?.focus();
  } catch (err) {
    if (session !== current) return; // signed out (or refused) meanwhile
    if (err instanceof ApiError && err.httpStatus === 401) return refused(err);
    main.replaceChildren(el('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err)));
  }
}

signout.addEventListener('click', () => {
  token.clear();
  showSignIn();
});
window.addEventListener('hashchange', () => void route());
start();
