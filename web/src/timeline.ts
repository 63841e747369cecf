// The timeline picture: one lane per task over the run's events (the trace has no clock per
// event, so the axis is the order replay follows). Syscalls are a density strip; signals, forks,
// execs and exits are marks, each with a tooltip.
import type { MarkKind, Timeline } from './api.js';
import { el, svg } from './dom.js';

const WIDTH = 1000;
const LABEL = 90;
const LANE = 26;
const TOP = 20;

const MARK: Record<Exclude<MarkKind, 'syscall'>, { label: string; shape: (x: number, y: number) => SVGElement }> = {
  fork: { label: 'fork', shape: (x, y) => svg('rect', { x: x - 1.5, y: y - 9, width: 3, height: 18, class: 'm-fork' }) },
  exec: { label: 'exec', shape: (x, y) => svg('polygon', { points: `${x},${y - 8} ${x + 6},${y} ${x},${y + 8} ${x - 6},${y}`, class: 'm-exec' }) },
  signal: { label: 'signal', shape: (x, y) => svg('polygon', { points: `${x - 5},${y - 8} ${x + 5},${y - 8} ${x},${y}`, class: 'm-signal' }) },
  exit: { label: 'exit', shape: (x, y) => svg('rect', { x: x - 4, y: y - 6, width: 8, height: 12, class: 'm-exit' }) },
};

export function timelineView(t: Timeline): HTMLElement {
  const plot = WIDTH - LABEL - 10;
  const x = (bucket: number): number => LABEL + ((bucket + 0.5) / Math.max(1, t.buckets)) * plot;
  const span = t.buckets * t.bucketEvents;
  const height = TOP + t.lanes.length * LANE + 10;
  const max = Math.max(1, ...t.lanes.flatMap((l) => l.marks.syscall.map(([, n]) => n)));
  const lanes = t.lanes.map((lane, i) => {
    const y = TOP + i * LANE + LANE / 2;
    const from = LABEL + (lane.first / Math.max(1, span)) * plot;
    const to = LABEL + ((lane.last + 1) / Math.max(1, span)) * plot;
    const g = svg('g', { class: 'lane' }, svg('text', { x: 4, y: y + 4, class: 'lane-label' }, `task ${lane.task}`), svg('line', { x1: from, x2: Math.max(from + 1, to), y1: y, y2: y, class: 'lane-line' }));
    const w = plot / Math.max(1, t.buckets);
    for (const [b, n] of lane.marks.syscall) {
      const h = 4 + 10 * (Math.log1p(n) / Math.log1p(max));
      g.append(svg('rect', { x: x(b) - w / 2, y: y - h / 2, width: Math.max(1, w - 0.5), height: h, class: 'm-syscall' }, svg('title', {}, `${n} syscall${n === 1 ? '' : 's'} in events ${b * t.bucketEvents}–${(b + 1) * t.bucketEvents - 1}`)));
    }
    for (const kind of ['fork', 'exec', 'signal', 'exit'] as const) {
      for (const [b, n] of lane.marks[kind]) {
        const shape = MARK[kind].shape(x(b), y);
        shape.append(svg('title', {}, `${n} ${MARK[kind].label}${n === 1 ? '' : 's'} near event ${b * t.bucketEvents}`));
        g.append(shape);
      }
    }
    return g;
  });
  const axis = svg('g', { class: 'axis' }, svg('text', { x: LABEL, y: 12 }, 'event 0'), svg('text', { x: WIDTH - 10, y: 12, 'text-anchor': 'end' }, `event ${Math.max(0, t.events - 1)}`));
  const picture = svg(
    'svg',
    { viewBox: `0 0 ${WIDTH} ${height}`, width: '100%', role: 'img', 'aria-label': `Timeline of ${t.lanes.length} task${t.lanes.length === 1 ? '' : 's'} over ${t.events} events` },
    axis,
    ...lanes,
  );
  const legend = el(
    'p',
    { class: 'legend' },
    el('span', { class: 'key k-syscall' }, 'syscalls'),
    el('span', { class: 'key k-fork' }, 'fork'),
    el('span', { class: 'key k-exec' }, 'exec'),
    el('span', { class: 'key k-signal' }, 'signal'),
    el('span', { class: 'key k-exit' }, 'exit'),
    t.truncated ? ` · the first ${t.events} events only` : '',
    t.moreTasks ? ` · ${t.moreTasks} more tasks not drawn` : '',
  );
  return el('figure', { class: 'timeline-figure' }, picture, legend);
}
