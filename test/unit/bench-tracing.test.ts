/**
 * The benchmark's tracing mode, without running it: the mode names, and the report's tracing
 * section and checks from fixed figures (each traced path against tracing off of its mode).
 */
import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../bench/load.ts';
import { modeOf, expandModes, tracingSteps, TRACING_STEPS } from '../../bench/modes.ts';
import { checks, medianRound, toLatency, toMarkdown, type PathReport, type Report, type TracingCost, type TracingRound } from '../../bench/results.ts';

function run(p50Us: number, p99Us: number, errors = 0): RunResult {
  const h = { count: 1000, min: 10, max: p99Us * 2, mean: p50Us, p50: p50Us, p90: p50Us * 2, p99: p99Us, p999: p99Us * 1.5, overflow: 0 };
  return {
    mode: 'open', rate: 1000, connections: 16, durationS: 1, elapsedS: 1, sent: 1000, completed: 1000 - errors, ok: 1000 - errors, achievedRps: 1000,
    errors: { total: errors, status: errors ? { '503': errors } : {}, connection: 0, timeout: 0, dropped: 0, other: 0, codes: {} },
    latencyUs: h, serviceUs: h, sendLagUs: h, generatorCpuMs: 100,
  };
}

function path(name: string, workers: number, ratio: number | null, cpuA: number, cpuB: number, rssA: number, p50Us: number, errors = 0): PathReport {
  const cost = (role: string, us: number, rss: number) => ({ role, pid: 1, cpuS: us / 1000, cpuSPer1000: us / 1000, cpuUsPerRequest: us, rssIdleMB: 60, rssLoadMB: rss, peakMB: rss });
  const r = run(p50Us, p50Us * 4, errors);
  return {
    name, workers, url: 'http://x', run: r, latencyMs: toLatency(r.latencyUs), addedMs: null,
    costs: [cost('node A', cpuA, rssA), cost('node B', cpuB, 70)], max: null, search: null, otherVcpu: 0, stealVcpu: 0, api: 'http',
    tracing: { ratio, tracingOff: `${name.split('-')[0]}-off`, spansExported: ratio === null ? 0 : 4000 * ratio, spansDropped: 0, otlpRequests: ratio === null ? 0 : 8, otlpBytes: 0 },
  };
}

const hooks: TracingCost = { calls: 1000, figures: [{ mode: 'off', nodeAUs: 0.4, nodeBUs: 0.1 }, { mode: '1%', nodeAUs: 3.5, nodeBUs: 6 }, { mode: '100%', nodeAUs: 28, nodeBUs: 20 }] };

describe('bench tracing mode', () => {
  it('reads tracing and tracing=N, and names its three paths', () => {
    expect(modeOf('tracing')).toEqual({ api: 'tracing', workers: 0 });
    expect(modeOf('tracing=2')).toEqual({ api: 'tracing', workers: 2 });
    expect(expandModes(['baseline', 'tracing', 'tracing=2'])).toEqual(['baseline', 'tracing', 'tracing=2']);
    expect(TRACING_STEPS.map((s) => s.suffix)).toEqual(['off', '1%', '100%']);
    expect(tracingSteps(false)).toBe(TRACING_STEPS);
    expect(tracingSteps(true).map((s) => `${s.suffix}:${s.ratio}`)).toEqual(['off:null', 'off2:null', '1%:0.01', '100%:1']);
  });

  it('checks each sampling against tracing off of the same run, and the hooks against their targets', () => {
    const paths = [
      path('tracing-off', 0, null, 90, 80, 100, 500),
      path('tracing-1%', 0, 0.01, 93, 84, 101, 520),
      path('tracing-100%', 0, 1, 131, 100, 110, 600, 2),
    ];
    const c = checks(paths, 1000, true, hooks);
    const find = (what: string) => c.find((x) => x.what === what);
    expect(find("tracing 1%: hooks' CPU per call per node (isolated)")).toMatchObject({ measured: '3.50 / 6.00 µs', pass: false });
    expect(find("tracing 100%: hooks' CPU per call per node (isolated)")).toMatchObject({ pass: true });
    expect(find('tracing-1%: CPU per call per node vs tracing off (end to end)')).toMatchObject({ measured: '3.0 / 4.0 µs', pass: true });
    expect(find('tracing-100%: CPU per call per node vs tracing off (end to end)')).toMatchObject({ measured: '41.0 / 20.0 µs', pass: false });
    expect(find('tracing-100%: errors as with tracing off')).toMatchObject({ target: '0', measured: '2', pass: false });
  });

  it('renders the tracing section with deltas and what the pool adds to RSS', () => {
    const paths = [
      path('tracing-off', 0, null, 90, 80, 100, 500),
      path('tracing-100%', 0, 1, 110, 95, 110, 600),
      path('tracing=2-off', 2, null, 120, 80, 130, 550),
      path('tracing=2-100%', 2, 1, 140, 95, 145, 650),
    ];
    const report: Report = {
      version: 1, startedAt: '2026-01-01T00:00:00.000Z', machine: { cpuModel: 'cpu', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
      settings: { rate: 1000 }, sharing: 'all', paths, tracingHooks: hooks, checks: [], failures: [],
    };
    const md = toMarkdown(report);
    expect(md).toContain('## Tracing');
    expect(md).toMatch(/\| 100% \| 28\.00 \| 20\.00 \| ≤ 30 µs \|/);
    // a figure with no target of its own (calls whose parent is unsampled) says so plainly
    const withUnsampled = toMarkdown({ ...report, tracingHooks: { ...hooks, figures: [...hooks.figures, { mode: 'unsampled', nodeAUs: 1.2, nodeBUs: 0.3 }] } });
    expect(withUnsampled).toMatch(/\| unsampled \| 1\.20 \| 0\.30 \| — \|/);
    expect(md).toMatch(/\| tracing-100% \| 110\.0 \| 95\.0 \| 20\.0 \| 15\.0 \| 0\.60 \| 2\.40 \| 0\.10 \| 0\.40 \| 0 \| 4000 \/ 0 \| 8 \| 110 \/ 70 \|/);
    expect(md).toContain("The worker pool (2 workers) with tracing at 100%: node A's RSS 145 MB against 110 MB inline (+35 MB).");
  });

  it('with --rounds, reports each path by its median round and lists every round with its delta against the same round of tracing off', () => {
    const offRounds = [path('tracing-off', 0, null, 300, 250, 100, 500), path('tracing-off', 0, null, 280, 240, 100, 500), path('tracing-off', 0, null, 320, 260, 100, 500)];
    // --control: a second tracing-off pair, compared with the first like the others
    const controlRounds = [path('tracing-off2', 0, null, 310, 240, 100, 500), path('tracing-off2', 0, null, 270, 250, 100, 500), path('tracing-off2', 0, null, 330, 255, 100, 500)];
    const fullRounds = [path('tracing-100%', 0, 1, 330, 270, 110, 600), path('tracing-100%', 0, 1, 290, 250, 110, 600), path('tracing-100%', 0, 1, 345, 280, 110, 600)];
    // the median of both nodes' CPU together: 300 + 250 and 330 + 270
    expect(medianRound(offRounds)).toBe(offRounds[0]);
    expect(medianRound(fullRounds)).toBe(fullRounds[0]);
    expect(medianRound(offRounds.slice(0, 2))).toBe(offRounds[1]);
    const figures = (p: PathReport): TracingRound => ({ nodeAUs: p.costs[0]?.cpuUsPerRequest ?? null, nodeBUs: p.costs[1]?.cpuUsPerRequest ?? null, p50Ms: p.latencyMs.p50, p99Ms: p.latencyMs.p99, errors: 0, spansDropped: 0, otherVcpu: 0.5 });
    const withRounds = (chosen: PathReport, rounds: PathReport[]): PathReport => ({ ...chosen, tracing: { ...(chosen.tracing as NonNullable<PathReport['tracing']>), rounds: rounds.map(figures) } });
    const report: Report = {
      version: 1, startedAt: '2026-01-01T00:00:00.000Z', machine: { cpuModel: 'cpu', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
      settings: { rate: 1000 }, sharing: 'all', paths: [withRounds(offRounds[0] as PathReport, offRounds), withRounds(controlRounds[0] as PathReport, controlRounds), withRounds(fullRounds[0] as PathReport, fullRounds)], checks: [], failures: [],
    };
    const md = toMarkdown(report);
    expect(md).toMatch(/\| tracing-100% \| 330\.0 \| 270\.0 \| 30\.0 \| 20\.0 \|/);
    expect(md).toContain('| tracing-100% | 330, 290, 345 | 270, 250, 280 | 30, 10, 25 | 20, 10, 20 |');
    expect(md).toContain('| tracing-off | 300, 280, 320 | 250, 240, 260 | —, —, — | —, —, — |');
    expect(md).toContain('| tracing-off2 | 310, 270, 330 | 240, 250, 255 | 10, -10, 10 | -10, 10, -5 |');
    // the control is no sampling: no check of its own
    expect(checks(report.paths, 1000, true).some((c) => c.what.startsWith('tracing-off2') && c.what.includes('vs tracing off'))).toBe(false);
  });
});
