import type { QueryAnswer } from '../../trace/query.js';

/**
 * Answers to queries, by trace and query: a stored trace never changes, so an answer holds for
 * as long as the trace exists. Bounded by answers and by rows, the least recently used first out.
 */
export class QueryCache {
  private readonly answers = new Map<string, QueryAnswer>();
  private rows = 0;

  constructor(
    private readonly maxAnswers = 64,
    private readonly maxRows = 1_000_000,
  ) {}

  private static key(traceId: string, query: string): string {
    return `${traceId}\n${query}`;
  }

  get(traceId: string, query: string): QueryAnswer | undefined {
    const key = QueryCache.key(traceId, query);
    const a = this.answers.get(key);
    if (a) {
      // Most recently used last.
      this.answers.delete(key);
      this.answers.set(key, a);
    }
    return a;
  }

  set(traceId: string, query: string, answer: QueryAnswer): void {
    if (answer.rows.length > this.maxRows) return;
    const key = QueryCache.key(traceId, query);
    this.drop(key);
    this.answers.set(key, answer);
    this.rows += answer.rows.length;
    for (const [k] of this.answers) {
      if (this.answers.size <= this.maxAnswers && this.rows <= this.maxRows) break;
      this.drop(k);
    }
  }

  get size(): number {
    return this.answers.size;
  }

  private drop(key: string): void {
    const a = this.answers.get(key);
    if (!a) return;
    this.rows -= a.rows.length;
    this.answers.delete(key);
  }
}
