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

let session: Session | null = null;

function showSignIn(message?: string): void {
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
    void start();
  });
  main.replaceChildren(form);
  input.focus();
}

async function start(): Promise<void> {
  if (!token.get()) return showSignIn();
  try {
    const me = await api.whoAmI();
    session = { name: me.token?.name ?? '', role: me.token?.role ?? 'ROLE_READER' };
  } catch (err) {
    token.clear();
    return showSignIn(err instanceof ApiError ? err.message : String(err));
  }
  who.textContent = `${session.name || 'token'} · ${session.role.replace('ROLE_', '').toLowerCase()}`;
  signout.hidden = false;
  await route();
}

/** Shows the view the hash names: #/?filters or #/trace/ID. */
async function route(): Promise<void> {
  if (!session) return;
  const hash = location.hash.replace(/^#/, '') || '/';
  const trace = /^\/trace\/([0-9a-fA-F-]{36})$/.exec(hash);
  try {
    if (trace) await showTrace(main, trace[1]!, session);
    else await showCatalog(main, new URLSearchParams(hash.split('?')[1] ?? ''));
  } catch (err) {
    if (err instanceof ApiError && err.httpStatus === 401) {
      token.clear();
      session = null;
      return showSignIn(err.message);
    }
    main.replaceChildren(el('p', { class: 'error', role: 'alert' }, err instanceof Error ? err.message : String(err)));
  }
}

signout.addEventListener('click', () => {
  token.clear();
  session = null;
  showSignIn();
});
window.addEventListener('hashchange', () => void route());
void start();
