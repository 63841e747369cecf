// The names that travel in traces and through the API, checked with one pattern each.

/** A trace id as `rewind record` chooses them (a UUID). */
const TRACE_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A blob's name: the sha256 of its bytes in lower-case hex. */
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isTraceId(s: string): boolean {
  return TRACE_ID.test(s);
}
