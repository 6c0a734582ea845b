import { describe, expect, it } from 'vitest';
import { RetryBudget } from '../../src/resiliency/budget.ts';

function clock(start = 0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function drain(b: RetryBudget): number {
  let n = 0;
  while (b.tryAcquireRetry()) n++;
  return n;
}

describe('RetryBudget', () => {
  it('grants the floor (minPerSecond × window seconds) with no traffic, then denies', () => {
    const c = clock();
    const b = new RetryBudget({ now: c.now });
    expect(drain(b)).toBe(100); // 10/s over 10 s
    expect(b.granted).toBe(100);
    expect(b.denied).toBe(1);
  });

  it('adds ratio × requests on top of the floor', () => {
    const c = clock();
    const b = new RetryBudget({ now: c.now, ratio: 0.2, minPerSecond: 0 });
    for (let i = 0; i < 50; i++) b.recordRequest();
    expect(drain(b)).toBe(10);
    expect(b.window).toEqual({ requests: 50, retries: 10 });
  });

  it('slides: requests and retries leave the window bucket by bucket', () => {
    const c = clock();
    const b = new RetryBudget({ now: c.now, ratio: 0.5, minPerSecond: 0, windowMs: 3000, bucketMs: 1000 });
    for (let i = 0; i < 10; i++) b.recordRequest(); // bucket 0
    c.advance(1000);
    for (let i = 0; i < 4; i++) b.recordRequest(); // bucket 1
    expect(drain(b)).toBe(7);
    c.advance(2000); // bucket 0 leaves (10 requests); its 0 retries too
    expect(b.window).toEqual({ requests: 4, retries: 7 });
    expect(b.tryAcquireRetry()).toBe(false);
    c.advance(1000); // bucket 1 leaves: requests 4, retries 7
    expect(b.window).toEqual({ requests: 0, retries: 0 });
  });

  it('clears everything after a gap longer than the window', () => {
    const c = clock();
    const b = new RetryBudget({ now: c.now, minPerSecond: 1, windowMs: 2000, bucketMs: 500 });
    expect(drain(b)).toBe(2);
    c.advance(60_000);
    expect(b.window).toEqual({ requests: 0, retries: 0 });
    expect(drain(b)).toBe(2);
  });

  it('rejects options that make no sense', () => {
    expect(() => new RetryBudget({ now: () => 0, ratio: -1 })).toThrow('ratio must be >= 0');
    expect(() => new RetryBudget({ now: () => 0, minPerSecond: -1 })).toThrow('minPerSecond must be >= 0');
    expect(() => new RetryBudget({ now: () => 0, windowMs: 100, bucketMs: 1000 })).toThrow('windowMs must be >= bucketMs > 0');
  });
});
