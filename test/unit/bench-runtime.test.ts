import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { availableParallelism } from 'node:os';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { parseRuntime, runtimeOver } from '../../bench/node-runtime.ts';
import { runQueueSeconds } from '../../bench/procs.ts';
import { toMarkdown, type Report } from '../../bench/results.ts';

const later = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('event loop and GC over a phase (bench/node-runtime.ts)', () => {
  it('reads a stall and the scavenges it caused from prom-client\'s own default metrics, as a node exports them', async () => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'weft_', eventLoopMonitoringPrecision: 10 });
    await later(50);
    const before = parseRuntime(await registry.metrics());
    // The phase: the event loop is held for 400 ms once, and a few hundred MB of short-lived objects are made.
    await later(20);
    const until = performance.now() + 400;
    while (performance.now() < until) { /* a stall */ }
    let keep: unknown[] = [];
    for (let i = 0; i < 2_000_000; i++) {
      keep.push({ i, s: `x${i}` });
      if (keep.length > 1000) keep = [];
    }
    await later(50); // GC entries reach their observer asynchronously
    const after = parseRuntime(await registry.metrics());
    const r = runtimeOver(before, after, 0.2);
    expect(r.loopDelayMs).not.toBeNull();
    expect(r.loopDelayMs?.max).toBeGreaterThanOrEqual(350);
    expect(r.gc['minor']?.count).toBeGreaterThanOrEqual(1);
    expect(r.gc['minor']?.totalMs).toBeGreaterThan(0);
    expect(r.gcShare).toBeGreaterThan(0);
    // the read restarted the histogram: the next phase, with no stall of its own, does not see the 400 ms
    await later(100);
    const quiet = runtimeOver(after, parseRuntime(await registry.metrics()), 0.1);
    expect(quiet.loopDelayMs?.max).toBeLessThan(350);
    registry.clear();
  });

  it('sums GC kinds over label sets, keeps only kinds that paused in the phase, and prints them', () => {
    const text = (minor: number, sum: number) => [
      '# HELP weft_nodejs_eventloop_lag_p99_seconds x',
      'weft_nodejs_eventloop_lag_min_seconds 0.0101',
      'weft_nodejs_eventloop_lag_max_seconds 0.0402',
      'weft_nodejs_eventloop_lag_mean_seconds 0.0111',
      'weft_nodejs_eventloop_lag_p50_seconds 0.0105',
      'weft_nodejs_eventloop_lag_p90_seconds 0.012',
      'weft_nodejs_eventloop_lag_p99_seconds 0.025',
      `weft_nodejs_gc_duration_seconds_count{kind="minor"} ${minor}`,
      `weft_nodejs_gc_duration_seconds_sum{kind="minor"} ${sum}`,
      'weft_nodejs_gc_duration_seconds_count{kind="major"} 2',
      'weft_nodejs_gc_duration_seconds_sum{kind="major"} 0.02',
      'weft_nodejs_gc_duration_seconds_bucket{le="0.001",kind="minor"} 3',
    ].join('\n');
    const r = runtimeOver(parseRuntime(text(10, 0.015)), parseRuntime(text(110, 0.165)), 10);
    const ms = r.loopDelayMs as NonNullable<typeof r.loopDelayMs>;
    // the 10 ms sampling interval is not delay
    expect([ms.p50, ms.p90, ms.p99, ms.max, ms.mean].map((x) => Number(x.toFixed(6)))).toEqual([0.5, 2, 15, 30.2, 1.1]);
    expect(r.gc['minor']?.count).toBe(100);
    expect(r.gc['minor']?.totalMs).toBeCloseTo(150, 6);
    expect(r.gc['major']).toBeUndefined();
    expect(r.gcShare).toBeCloseTo(0.015, 6);

    const H = { count: 1, min: 1, max: 1, mean: 1, p50: 1, p90: 1, p99: 1, p999: 1, overflow: 0 };
    const report = {
      version: 1, startedAt: '', machine: { cpuModel: 'x', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
      settings: {}, sharing: '', checks: [], failures: [],
      paths: [{
        name: 'inline', workers: 0, url: 'http://x', run: { errors: { total: 0, dropped: 0 }, latencyUs: H }, latencyMs: { p50: 1, p90: 1, p99: 1, p999: 1, max: 1 }, addedMs: null,
        costs: [{ role: 'node B', pid: 1, cpuS: 1, cpuSPer1000: 0.4, cpuUsPerRequest: 400, runQueueUsPerRequest: 251.4, rssIdleMB: null, rssLoadMB: null, peakMB: null }],
        max: null, search: null, otherVcpu: 0, stealVcpu: 0, runtime: [{ role: 'node B', ...r }],
      }],
    } as unknown as Report;
    const md = toMarkdown(report);
    expect(md).toContain('## Event loop and GC (measured phase)');
    expect(md).toContain('| inline | node B | 0.5 / 2.0 / 15.0 / 30.2 | minor 100, 150 ms | 1.5% |');
    expect(md).toContain('## Waiting for a core (measured phase)');
    expect(md).toContain('| inline | node B | 400 | 251 |');
  });

  it('reads a process\'s run-queue time from the kernel: a busy child beside busy siblings waits for a core', async () => {
    // one more spinner than there are cores: somebody must wait, so their run-queue times grow
    const spin = () => spawn(process.execPath, ['-e', 'const t = Date.now() + 1500; while (Date.now() < t) {}'], { stdio: 'ignore' });
    const kids = Array.from({ length: availableParallelism() + 1 }, spin);
    try {
      const before = kids.map((k) => runQueueSeconds(k.pid as number));
      await later(800);
      const after = kids.map((k) => runQueueSeconds(k.pid as number));
      const waited = after.reduce((sum: number, a, i) => sum + ((a ?? 0) - (before[i] ?? 0)), 0);
      expect(before.every((b) => typeof b === 'number')).toBe(true);
      expect(waited).toBeGreaterThan(0);
    } finally {
      for (const k of kids) k.kill('SIGKILL');
      await Promise.all(kids.map((k) => (k.exitCode === null && k.signalCode === null ? once(k, 'exit') : undefined)));
    }
    expect(runQueueSeconds(2 ** 22 + 12345)).toBeNull();
  });

  it('reads the calls a node timed over the phase from its latency histograms, summed over label sets, and prints them beside the generator\'s', () => {
    const lines = (n: number) => [
      // two label sets of the caller's histogram; cumulative buckets
      `weft_service_invocation_res_recv_latency_ms_bucket{le="1",app_id="a",dst_app_id="b",status="200"} ${10 + 50 * n}`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="10",app_id="a",dst_app_id="b",status="200"} ${10 + 89 * n}`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="25",app_id="a",dst_app_id="b",status="200"} ${10 + 99 * n}`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="+Inf",app_id="a",dst_app_id="b",status="200"} ${10 + 99 * n}`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="1",app_id="a",dst_app_id="b",status="503"} 0`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="10",app_id="a",dst_app_id="b",status="503"} 0`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="25",app_id="a",dst_app_id="b",status="503"} 0`,
      `weft_service_invocation_res_recv_latency_ms_bucket{le="+Inf",app_id="a",dst_app_id="b",status="503"} ${n}`,
      'weft_service_invocation_res_recv_latency_ms_count{app_id="a",dst_app_id="b",status="200"} 1',
    ].join('\n');
    // over the phase: 100 calls, 50 within 1 ms, 89 within 10, 99 within 25, 1 past the last bucket
    const r = runtimeOver(parseRuntime(lines(0)), parseRuntime(lines(1)), 1);
    expect(r.calls).toEqual([{ metric: 'res_recv', count: 100, p50: 1, p90: 25, p99: 25 }]);
    const far = runtimeOver(parseRuntime(lines(0)), parseRuntime(lines(1).replace(/le="25",(.*) 109$/m, 'le="25",$1 108')), 1);
    expect(far.calls[0]?.p99).toBe(Infinity);

    const L = { p50: 1.5, p90: 30, p99: 90, p999: 95, max: 99 };
    const report = {
      version: 1, startedAt: '', machine: { cpuModel: 'x', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
      settings: {}, sharing: '', checks: [], failures: [],
      paths: [{ name: 'inline', workers: 0, url: 'http://x', run: { errors: { total: 0, dropped: 0 }, latencyUs: { count: 1, min: 1, max: 1, mean: 1, p50: 1, p90: 1, p99: 1, p999: 1, overflow: 0 } }, latencyMs: L, addedMs: null, costs: [], max: null, search: null, otherVcpu: 0, stealVcpu: 0, runtime: [{ role: 'node A', ...r }] }],
    } as unknown as Report;
    const md = toMarkdown(report);
    expect(md).toContain('## Time inside the nodes');
    expect(md).toContain('| inline | node A | res_recv | 100 | ≤ 1 | ≤ 25 | ≤ 25 | 1.50 / 30.00 / 90.00 |');
  });
});
