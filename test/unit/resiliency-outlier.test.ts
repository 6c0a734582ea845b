import { describe, expect, it } from 'vitest';
import { OutlierDetector } from '../../src/resiliency/outlier.ts';
import type { OutlierEvent } from '../../src/resiliency/outlier.ts';

function clock(start = 0) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

const nodes = (...ids: string[]) => ids.map((nodeId) => ({ nodeId }));

function setup(options: { maxEjectionPercent?: number } = {}) {
  const c = clock();
  const events: OutlierEvent[] = [];
  const d = new OutlierDetector({ now: c.now, onEvent: (e) => events.push(e), ...options });
  const all = nodes('a', 'b', 'c', 'd');
  d.filter(all);
  const fail = (id: string, n = 1) => { for (let i = 0; i < n; i++) d.recordFailure(id); };
  return { c, d, events, all, fail };
}

describe('OutlierDetector', () => {
  it('ejects an instance after 5 consecutive failures for the base time (5 s)', () => {
    const { c, d, events, all, fail } = setup();
    fail('a', 4);
    expect(d.isEjected('a')).toBe(false);
    fail('a');
    expect(d.isEjected('a')).toBe(true);
    expect(events).toEqual([{ type: 'ejected', nodeId: 'a', ejections: 1, durationMs: 5000 }]);
    expect(d.filter(all).map((i) => i.nodeId)).toEqual(['b', 'c', 'd']);
    c.advance(5000);
    expect(d.filter(all)).toBe(all);
    expect(events.at(-1)).toEqual({ type: 'probation', nodeId: 'a' });
  });

  it('a success in between resets the count', () => {
    const { d, fail } = setup();
    fail('a', 4);
    d.recordSuccess('a');
    fail('a', 4);
    expect(d.isEjected('a')).toBe(false);
  });

  it('on probation one failure ejects again for twice as long, up to the cap', () => {
    const { c, d, events, fail } = setup();
    fail('a', 5);
    const durations = [5000];
    for (let k = 0; k < 5; k++) {
      c.advance(durations.at(-1)!);
      expect(d.isEjected('a')).toBe(false);
      fail('a');
      const last = events.at(-1)!;
      expect(last.type).toBe('ejected');
      durations.push(last.type === 'ejected' ? last.durationMs : -1);
    }
    expect(durations).toEqual([5000, 10_000, 20_000, 40_000, 60_000, 60_000]);
  });

  it('on probation one success clears the record: the next ejection is short again', () => {
    const { c, d, events, fail } = setup();
    fail('a', 5);
    c.advance(5000);
    fail('a'); // re-ejected for 10 s
    c.advance(10_000);
    d.recordSuccess('a');
    expect(events.at(-1)).toEqual({ type: 'recovered', nodeId: 'a' });
    fail('a', 5);
    expect(events.at(-1)).toEqual({ type: 'ejected', nodeId: 'a', ejections: 1, durationMs: 5000 });
  });

  it('never ejects more than maxEjectionPercent of the instances', () => {
    const { d, events, all, fail } = setup(); // 4 instances, 50%: at most 2
    fail('a', 5);
    fail('b', 5);
    fail('c', 5);
    expect(d.ejectedCount).toBe(2);
    expect(events.at(-1)).toEqual({ type: 'ejection-skipped', nodeId: 'c' });
    expect(d.filter(all).map((i) => i.nodeId)).toEqual(['c', 'd']);
  });

  it('fails open: if every instance is ejected, filter returns them all', () => {
    const { d, fail } = setup({ maxEjectionPercent: 100 });
    const two = nodes('a', 'b');
    d.filter(two);
    fail('a', 5);
    fail('b', 5);
    expect(d.ejectedCount).toBe(2);
    expect(d.filter(two)).toBe(two);
  });

  it('does not eject the only instance at 50%', () => {
    const { d, fail } = setup();
    const one = nodes('a');
    d.filter(one);
    fail('a', 10);
    expect(d.isEjected('a')).toBe(false);
  });

  it('ignores failures and successes of an instance while it is ejected', () => {
    const { d, events, fail } = setup();
    fail('a', 5);
    fail('a', 3);
    d.recordSuccess('a');
    expect(d.isEjected('a')).toBe(true);
    expect(events).toHaveLength(1);
  });

  it('retain forgets instances that left, freeing their ejection slot', () => {
    const { d, fail } = setup();
    fail('a', 5);
    fail('b', 5);
    d.retain(['b', 'c', 'd', 'e']);
    expect(d.ejectedCount).toBe(1);
    fail('c', 5);
    expect(d.isEjected('c')).toBe(true);
  });

  it('rejects options that make no sense', () => {
    expect(() => new OutlierDetector({ now: () => 0, consecutiveFailures: 0 })).toThrow('consecutiveFailures must be an integer >= 1');
    expect(() => new OutlierDetector({ now: () => 0, baseEjectionMs: 10, maxEjectionMs: 5 })).toThrow('maxEjectionMs must be >= baseEjectionMs > 0');
    expect(() => new OutlierDetector({ now: () => 0, maxEjectionPercent: 101 })).toThrow('maxEjectionPercent must be from 0 to 100');
  });
});
