import type { DumpedEvent } from '../../native/index.js';

const KINDS: ReadonlySet<string> = new Set(['exec', 'syscall', 'signal', 'rdtsc', 'exit', 'run', 'preempt', 'ptrace-set', 'patch', 'tsc']);
/** A dump worker's line is one event; anything longer is not one of ours. */
const MAX_LINE = 64 * 1024;

/**
 * Splits a dump worker's stdout into events. The worker read an untrusted trace, so each line is
 * checked to be an event before it goes further.
 */
export class EventLines {
  private partial = '';

  /** The complete events in this chunk; throws on a line that is not an event. */
  push(chunk: Buffer): DumpedEvent[] {
    const lines = (this.partial + chunk.toString('utf8')).split('\n');
    this.partial = lines.pop()!;
    if (this.partial.length > MAX_LINE) throw new Error('the dump worker wrote an overlong line');
    return lines.filter((l) => l.length > 0).map(parseEvent);
  }

  /** Throws if the worker's output ended inside a line. */
  end(): void {
    if (this.partial) throw new Error('the dump worker stopped inside a line');
  }
}

function parseEvent(line: string): DumpedEvent {
  const v: unknown = JSON.parse(line);
  if (typeof v === 'object' && v !== null) {
    const { index, task, kind, text } = v as Record<string, unknown>;
    if (Number.isSafeInteger(index) && Number.isSafeInteger(task) && typeof kind === 'string' && KINDS.has(kind) && typeof text === 'string') {
      return { index: index as number, task: task as number, kind: kind as DumpedEvent['kind'], text };
    }
  }
  throw new Error('the dump worker wrote something that is not an event');
}
