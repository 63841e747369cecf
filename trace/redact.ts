// Secrets in a recorded environment, kept out of what is uploaded: every reader of the catalogue
// sees a trace's manifest. The recorded memory still holds them (replay needs nothing else), so
// a trace stays a secret itself (docs/security.md).

/** Names that hold secrets by convention (GITHUB_TOKEN, AWS_SECRET_ACCESS_KEY, PGPASSWORD, ...). */
const SECRET_NAME = /TOKEN|KEY|SECRET|PASSW|PASSPHRASE|CREDENTIAL|PRIVATE|AUTH|COOKIE/i;

/** A rewind API token, wherever it appears. */
const REWIND_SECRET = /rwt_[A-Za-z0-9_-]{16,}/;

export const REDACTED = '[redacted]';

/**
 * The environment with secret values replaced by [redacted] (names stay, so a reader sees the
 * variable was set). REWIND_TOKEN and any value holding a rewind token always go; with
 * `keepEnv` nothing else does.
 */
export function redactEnv(env: readonly string[], keepEnv = false): string[] {
  return env.map((entry) => {
    const eq = entry.indexOf('=');
    const name = eq < 0 ? entry : entry.slice(0, eq);
    const value = eq < 0 ? '' : entry.slice(eq + 1);
    const secret = name === 'REWIND_TOKEN' || REWIND_SECRET.test(value) || (!keepEnv && SECRET_NAME.test(name));
    return secret && value !== REDACTED ? `${name}=${REDACTED}` : entry;
  });
}
