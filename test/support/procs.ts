// Processes seen through /proc: what a session left behind.
import { readdirSync, readFileSync } from 'node:fs';

function children(pid: number): number[] {
  const out: number[] = [];
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const kids = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim();
      if (kids) out.push(...kids.split(/\s+/).map(Number));
    } catch {
      // the thread ended meanwhile
    }
  }
  return out;
}

/** Every live descendant of a process. */
export function descendantsOf(root: number): number[] {
  const out: number[] = [];
  const walk = (p: number): void => {
    for (const k of children(p)) {
      out.push(k);
      walk(k);
    }
  };
  walk(root);
  return out;
}

/**
 * Pids of this process's descendants whose command line contains every needle; not the replay
 * sandbox's launcher and init (rewind-sandbox), whose command lines hold their worker's.
 */
export function descendants(...needles: string[]): number[] {
  return descendantsOf(process.pid).filter((pid) => {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      const sandbox = cmd.slice(0, cmd.indexOf('\0')).endsWith('/rewind-sandbox');
      return !sandbox && needles.every((n) => cmd.includes(n));
    } catch {
      return false; // gone
    }
  });
}

/**
 * The most CPU time (user, ms) any replayed process below this one has used: the replayed
 * program runs as `rewind-stub` processes (one a live process or checkpoint), below a debug
 * server or a server's worker.
 */
export function replayedCpuMs(): number {
  let most = 0;
  for (const pid of descendantsOf(process.pid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      if (!stat.includes('(rewind-stub)')) continue;
      // After the command name, utime is the 12th field, in clock ticks (10 ms).
      most = Math.max(most, Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[11]) * 10);
    } catch {
      // gone meanwhile
    }
  }
  return most;
}

export function alive(pid: number): boolean {
  // A zombie has exited; only its parent's wait is missing.
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}
