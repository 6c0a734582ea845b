/**
 * The per-call metric families (src/observability/fast-metrics.ts) against prom-client's own
 * Counter and Histogram: the same observations must read the same on /metrics.
 */
import { describe, expect, it } from 'vitest';
import { Counter, Histogram, Registry } from 'prom-client';
import { FastCounter, FastHistogram } from '../../src/observability/fast-metrics.ts';
import { labelValue } from '../../src/observability/metrics.ts';

const BOUNDS = [0.25, 1, 5, 10];
const limits = { maxSets: 3, overflow: '_other', clean: labelValue };

/** The registry's text with the metric names made equal. */
async function text(reg: Registry, from: string, to: string): Promise<string> {
  return (await reg.metrics()).replaceAll(from, to);
}

describe('fast metric families', () => {
  it('a histogram reads as prom-client\'s for the same observations (buckets on the boundary, labels that need escaping)', async () => {
    const mine = new Registry();
    const theirs = new Registry();
    for (const r of [mine, theirs]) r.setDefaultLabels({ node_id: 'n1' });
    const fast = new FastHistogram(mine, 'lat_ms', 'latency', ['app', 'status'], BOUNDS, limits);
    const ref = new Histogram({ name: 'lat_ms', help: 'latency', labelNames: ['app', 'status'], buckets: BOUNDS, registers: [theirs] });
    const samples: [string, string, number][] = [['a', '200', 0.1], ['a', '200', 0.25], ['a', '200', 3], ['b"x\\y', '500', 12], ['a', '200', 1], ['b"x\\y', '500', 5]];
    for (const [app, status, v] of samples) {
      fast.child2(app, status).observe(v);
      ref.labels(app, status).observe(v);
    }
    expect(await text(mine, 'x', 'x')).toBe(await text(theirs, 'x', 'x'));
  });

  it('a counter reads as prom-client\'s, and past maxSets new label sets count under the overflow value', async () => {
    const mine = new Registry();
    const theirs = new Registry();
    const fast = new FastCounter(mine, 'calls_total', 'calls', ['app', 'dst', 'status'], limits);
    const ref = new Counter({ name: 'calls_total', help: 'calls', labelNames: ['app', 'dst', 'status'], registers: [theirs] });
    const sets: [string, string, string][] = [['a', 'b', '200'], ['a', 'b', '200'], ['a', 'c', '200'], ['a', 'b', '500'], ['z', 'z', 'z'], ['y', 'y', 'y'], ['a', 'c', '200']];
    for (const [a, d, s] of sets) fast.child3(a, d, s).inc();
    for (const [a, d, s] of [['a', 'b', '200'], ['a', 'b', '200'], ['a', 'c', '200'], ['a', 'b', '500'], ['_other', '_other', '_other'], ['_other', '_other', '_other'], ['a', 'c', '200']] as const) ref.labels(a, d, s).inc();
    expect(await text(mine, 'x', 'x')).toBe(await text(theirs, 'x', 'x'));
  });

  it('cleans control characters from label values and looks the same set up by its raw values', async () => {
    const reg = new Registry();
    const fast = new FastCounter(reg, 'c_total', 'c', ['app', 'dst'], limits);
    fast.child2('a\r\nb', 'x').inc();
    fast.child(['a\r\nb', 'x']).inc();
    expect(await reg.metrics()).toContain('c_total{app="a__b",dst="x"} 2');
  });
});
