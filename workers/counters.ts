/**
 * Batches counter increments into `MetricsBatch`es, flushed at most once a second, so the
 * outbound side reports to the main thread's registry without a message per call.
 */
import type { MetricsBatch } from './protocol.ts';

export class CounterBatcher {
  private counters: Record<string, number> = {};
  private pending = false;
  private readonly threadId: number;
  private readonly send: (batch: MetricsBatch) => void;

  constructor(threadId: number, send: (batch: MetricsBatch) => void) {
    this.threadId = threadId;
    this.send = send;
  }

  /** `labels` is `label=value,label=value` (or ''). */
  readonly count = (name: string, labels: string, by = 1): void => {
    const key = `${name}|${labels}`;
    this.counters[key] = (this.counters[key] ?? 0) + by;
    if (!this.pending) {
      this.pending = true;
      setTimeout(() => this.flush(), 1000).unref();
    }
  };

  flush(): void {
    this.pending = false;
    const counters = this.counters;
    this.counters = {};
    if (Object.keys(counters).length > 0) this.send({ type: 'metrics', threadId: this.threadId, counters });
  }
}
