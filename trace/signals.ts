// Signal names and numbers, from Node's table of this platform's signals (Linux x86-64 is the
// only one rewind records on, so a trace's names mean the same everywhere).
import { constants } from 'node:os';

const SIGNALS = constants.signals as Readonly<Record<string, number>>;

/** "SIGSEGV" for 11; the first name of a number wins over its aliases (SIGABRT, not SIGIOT). */
export function signalName(n: number): string {
  return Object.keys(SIGNALS).find((k) => SIGNALS[k] === n) ?? `signal ${n}`;
}

/** 11 for "SIGSEGV" or "segv"; undefined when unknown. */
export function signalNumber(name: string): number | undefined {
  const up = name.toUpperCase();
  return SIGNALS[up.startsWith('SIG') ? up : `SIG${up}`];
}

/** Normalises "segv", "SIGSEGV" or "11" to "SIGSEGV"; undefined when unknown. */
export function normaliseSignal(s: string): string | undefined {
  if (/^\d+$/.test(s)) {
    const name = signalName(Number(s));
    return name in SIGNALS ? name : undefined;
  }
  const n = signalNumber(s);
  return n === undefined ? undefined : signalName(n);
}
