import { describe, expect, it } from 'vitest';
import { Histogram, highestOf, indexOf, lowestOf } from '../../bench/histogram.ts';

describe('bench histogram', () => {
  it('gives exact nearest-rank percentiles for small values', () => {
    const h = new Histogram();
    for (let v = 1; v <= 100; v++) h.record(v);
    expect(h.count).toBe(100);
    expect(h.percentile(50)).toBe(50);
    expect(h.percentile(90)).toBe(90);
    expect(h.percentile(99)).toBe(99);
    expect(h.percentile(99.9)).toBe(100); // rank ceil(99.9) = 100
    expect(h.percentile(100)).toBe(100);
    expect(h.percentile(0)).toBe(1);
    const s = h.summary();
    expect(s).toMatchObject({ count: 100, min: 1, max: 100, mean: 50.5, p50: 50, p90: 90, p99: 99, p999: 100, overflow: 0 });
  });

  it('uses rank ceil(p * n) with repeated values', () => {
    const h = new Histogram();
    // 1000 values: 990 of 10, 9 of 200, 1 of 250.
    for (let i = 0; i < 990; i++) h.record(10);
    for (let i = 0; i < 9; i++) h.record(200);
    h.record(250);
    expect(h.percentile(99)).toBe(10); // rank 990
    expect(h.percentile(99.1)).toBe(200); // rank 991
    expect(h.percentile(99.9)).toBe(200); // rank 999
    expect(h.percentile(99.95)).toBe(250); // rank 1000
  });

  it('stays within 1/128 of the value above the exact range', () => {
    const h = new Histogram();
    for (const v of [300, 1_000, 12_345, 999_999, 60_000_000]) {
      h.reset();
      h.record(v);
      h.record(1); // min, so that clamping to [min, max] does not hide the bucket bound
      h.record(2 ** 27 - 1);
      const p = h.percentile(50);
      expect(p).toBeGreaterThanOrEqual(v);
      expect((p - v) / v).toBeLessThan(1 / 128);
    }
  });

  it('maps values to contiguous buckets that cover every integer once', () => {
    let previous = -1;
    for (let v = 0; v < 70_000; v++) {
      const i = indexOf(v);
      expect(i === previous || i === previous + 1).toBe(true);
      expect(lowestOf(i)).toBeLessThanOrEqual(v);
      expect(highestOf(i)).toBeGreaterThanOrEqual(v);
      previous = i;
    }
    expect(lowestOf(indexOf(256))).toBe(256);
    expect(highestOf(indexOf(256))).toBe(257);
    expect(lowestOf(indexOf(1023))).toBe(1020); // 2^9..2^10 in buckets of 4
    expect(highestOf(indexOf(1023))).toBe(1023);
  });

  it('rounds, clamps negatives to 0 and counts values above the ceiling', () => {
    const h = new Histogram(1000);
    h.record(-5);
    h.record(2.4);
    h.record(2.6);
    h.record(5000);
    const s = h.summary();
    expect(s.min).toBe(0);
    expect(h.percentile(50)).toBe(2);
    expect(h.percentile(75)).toBe(3);
    expect(s.max).toBe(1000);
    expect(s.overflow).toBe(1);
  });

  it('merges counts, min and max', () => {
    const a = new Histogram();
    const b = new Histogram();
    for (let v = 1; v <= 50; v++) a.record(v);
    for (let v = 51; v <= 100; v++) b.record(v);
    a.merge(b);
    expect(a.summary()).toMatchObject({ count: 100, min: 1, max: 100, p50: 50, p99: 99 });
    expect(() => a.merge(new Histogram(1000))).toThrow(RangeError);
  });

  it('answers 0 when empty and rejects bad percentiles', () => {
    const h = new Histogram();
    expect(h.summary()).toMatchObject({ count: 0, min: 0, max: 0, mean: 0, p50: 0, p999: 0 });
    expect(() => h.percentile(101)).toThrow(RangeError);
    expect(() => h.percentile(Number.NaN)).toThrow(RangeError);
  });
});
