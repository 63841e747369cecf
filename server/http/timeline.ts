// The timeline picture of a trace, computed from its events (DumpEvents): one lane per task, the
// run cut into buckets of consecutive events, and in each bucket how many syscalls, signals,
// forks, execs and exits the task had. A trace has no clock per event, so the axis is the event
// index: the order replay follows. Bounded in events read, lanes and buckets whatever the trace.
import type { DumpedEvent } from '../../native/index.js';

export const MARK_KINDS = ['syscall', 'signal', 'fork', 'exec', 'exit'] as const;
export type MarkKind = (typeof MARK_KINDS)[number];

export interface TimelineLane {
  task: number;
  /** The first and last event index of the task. */
  first: number;
  last: number;
  /** Per kind, [bucket, count] for each bucket where the task had that kind of event. */
  marks: Record<MarkKind, [number, number][]>;
}

export interface Timeline {
  /** Events read (all of the trace's unless `truncated`). */
  events: number;
  truncated: boolean;
  buckets: number;
  /** Events in one bucket (the last may hold fewer). */
  bucketEvents: number;
  lanes: TimelineLane[];
  /** Tasks beyond the lanes shown. */
  moreTasks: number;
}

export const TIMELINE_LIMITS = { events: 200_000, lanes: 64, buckets: 240 } as const;

const KIND_CODE: Readonly<Record<string, number>> = { syscall: 0, signal: 1, exec: 3, exit: 4 };
const FORK = 2;

/** Collects events (in index order) and draws the timeline at the end. */
export class TimelineBuilder {
  private readonly tasks = new Map<number, { first: number; last: number; idx: number[]; kind: number[] }>();
  /** Tasks past the lanes' bound: counted, not drawn. */
  private readonly others = new Set<number>();
  private count = 0;

  constructor(private readonly maxEvents: number = TIMELINE_LIMITS.events) {}

  /** False once the bound is reached: read no more. */
  get wantsMore(): boolean {
    return this.count < this.maxEvents;
  }

  add(e: DumpedEvent): void {
    if (!this.wantsMore) return;
    this.count++;
    let t = this.tasks.get(e.task);
    if (!t) {
      if (this.tasks.size >= TIMELINE_LIMITS.lanes) {
        this.others.add(e.task);
        return;
      }
      t = { first: e.index, last: e.index, idx: [], kind: [] };
      this.tasks.set(e.task, t);
    }
    t.last = e.index;
    // A syscall that made a task (clone, fork, vfork) is the fork mark; other kinds (rdtsc, run,
    // preempt) are the replay's business, not the program's.
    const code = e.kind === 'syscall' && / new task \d+/.test(e.text) ? FORK : KIND_CODE[e.kind];
    if (code === undefined) return;
    t.idx.push(e.index);
    t.kind.push(code);
  }

  /** `truncated`: the trace had more events than were read. */
  build(truncated: boolean): Timeline {
    let lastIndex = 0;
    for (const t of this.tasks.values()) lastIndex = Math.max(lastIndex, t.last);
    const span = this.count === 0 ? 0 : lastIndex + 1;
    const bucketEvents = Math.max(1, Math.ceil(span / TIMELINE_LIMITS.buckets));
    const buckets = Math.max(1, Math.ceil(span / bucketEvents));
    const lanes: TimelineLane[] = [];
    for (const [task, t] of this.tasks) {
      const counts = MARK_KINDS.map(() => new Map<number, number>());
      t.idx.forEach((index, i) => {
        const m = counts[t.kind[i]!]!;
        const b = Math.floor(index / bucketEvents);
        m.set(b, (m.get(b) ?? 0) + 1);
      });
      const marks = Object.fromEntries(MARK_KINDS.map((k, i) => [k, [...counts[i]!.entries()]])) as Record<MarkKind, [number, number][]>;
      lanes.push({ task, first: t.first, last: t.last, marks });
    }
    return { events: this.count, truncated, buckets, bucketEvents, lanes, moreTasks: this.others.size };
  }
}
