import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../bench/load.ts';
import { cpuSeconds, machineCpu, memory } from '../../bench/procs.ts';
import { added, baselineOf, checks, toLatency, toMarkdown, type PathReport, type Report } from '../../bench/results.ts';

function fakeRun(p50Us: number, p99Us: number, errors = 0): RunResult {
  const h = { count: 1000, min: 10, max: p99Us * 2, mean: p50Us, p50: p50Us, p90: p50Us * 2, p99: p99Us, p999: p99Us * 1.5, overflow: 0 };
  return {
    mode: 'open',
    rate: 1000,
    connections: 16,
    durationS: 1,
    elapsedS: 1,
    sent: 1000,
    completed: 1000 - errors,
    ok: 1000 - errors,
    achievedRps: 1000,
    errors: { total: errors, status: errors ? { '503': errors } : {}, connection: 0, timeout: 0, dropped: 0, other: 0, codes: {} },
    latencyUs: h,
    serviceUs: h,
    sendLagUs: h,
    generatorCpuMs: 100,
  };
}

function fakePath(name: string, workers: number | null, run: RunResult, cpuUsA: number): PathReport {
  const cost = (role: string, us: number) => ({ role, pid: 1, cpuS: us / 1000, cpuSPer1000: us / 1000, cpuUsPerRequest: us, rssIdleMB: 80, rssLoadMB: 100, peakMB: 110 });
  return {
    name,
    workers,
    url: 'http://x',
    run,
    latencyMs: toLatency(run.latencyUs),
    addedMs: null,
    costs: workers === null ? [cost('app', 30)] : [cost('node A', cpuUsA), cost('node B', 100)],
    max: null,
    search: null,
    otherVcpu: 0,
    stealVcpu: 0,
  };
}

describe('bench report', () => {
  it('computes added latency per percentile and checks the targets', () => {
    const base = fakePath('baseline', null, fakeRun(100, 500), 0);
    const inline = fakePath('inline', 0, fakeRun(400, 2000), 120);
    const pooled = fakePath('workers', 2, fakeRun(700, 3000, 2), 200);
    for (const p of [inline, pooled]) p.addedMs = added(p.latencyMs, base.latencyMs);
    const expected = { p50: 0.3, p90: 0.6, p99: 1.5, p999: 2.25, max: 3 };
    for (const [key, value] of Object.entries(expected)) expect(inline.addedMs?.[key as keyof typeof expected]).toBeCloseTo(value, 9);

    const result = checks([base, inline, pooled], 1000, false);
    const find = (what: string) => result.find((c) => c.what === what);
    expect(find('inline: added p50 (mTLS off)')?.pass).toBe(true);
    expect(find('inline: added p99 (mTLS off)')?.pass).toBe(true);
    expect(find('workers: added p50 (mTLS off)')?.pass).toBe(false); // 0.6 ms > 0.5 ms
    expect(find('workers: errors')).toMatchObject({ measured: '2', pass: false });
    expect(find('inline: node A vCPU per 1000 req/s')?.pass).toBe(true); // 0.120 ≤ 0.15
    expect(find('workers: node A vCPU per 1000 req/s')?.pass).toBe(false); // 0.200
    expect(find('worker pool: extra CPU per request in node A')).toMatchObject({ measured: '80 µs', pass: false });
    expect(find('worker pool: extra p50')).toMatchObject({ measured: '0.30 ms', pass: false });
    expect(result.some((c) => c.what.startsWith('baseline'))).toBe(false);
  });

  it('renders every path and figure into the markdown table', () => {
    const base = fakePath('baseline', null, fakeRun(100, 500), 0);
    const inline = fakePath('inline', 0, fakeRun(400, 2000, 3), 120);
    inline.addedMs = added(inline.latencyMs, base.latencyMs);
    const report: Report = {
      version: 1,
      startedAt: '2026-01-01T00:00:00.000Z',
      machine: { cpuModel: 'Test CPU', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] },
      node: 'v24.0.0',
      commit: { sha: 'abc', dirty: true },
      settings: { rate: 1000, connections: 16, bodyBytes: 1024, method: 'POST', durationS: 60, warmupS: 10, warmupRate: 100, maxConnections: 64, maxDurationS: 10, mtls: false },
      sharing: 'everything',
      paths: [base, inline],
      checks: checks([base, inline], 1000, false),
      failures: ['workers: node B did not start'],
    };
    const md = toMarkdown(report);
    expect(md).toContain('Test CPU, 2 cores');
    expect(md).toContain('abc (with uncommitted changes)');
    expect(md).toContain('| baseline | 0.10 | 0.20 | 0.50 | 0.75 | 1.00 | 1000 | 0 |');
    expect(md).toContain('| inline | 0.30 | 0.60 | 1.50 | 2.25 | 4.0× | 4.0× |');
    expect(md).toContain('**3** (3×503)');
    expect(md).toContain('| inline | node A | 0.120 | 120 | 80 | 100 | 110 |');
    expect(md).toContain('- workers: node B did not start');
  });

  it('measures actor and gRPC paths against their own baselines, with 1.25× the HTTP targets', () => {
    const base = fakePath('baseline', null, fakeRun(100, 500), 0);
    base.api = 'http';
    const actorBase = { ...fakePath('actors-baseline', null, fakeRun(200, 600), 0), api: 'actors' as const };
    const actors = { ...fakePath('actors', 0, fakeRun(800, 3000), 120), api: 'actors' as const, baseline: 'actors-baseline' };
    const grpc = { ...fakePath('grpc', 0, fakeRun(650, 2600, 4), 130), api: 'grpc' as const, baseline: 'baseline' };
    grpc.run.errors = { total: 4, status: {}, connection: 0, timeout: 1, dropped: 0, other: 3, codes: { GRPC_UNAVAILABLE: 3, GRPC_DEADLINE_EXCEEDED: 1 } };
    const inline = fakePath('inline', 0, fakeRun(400, 2000), 100); // an old-style path: no api, no baseline
    const paths = [base, actorBase, actors, grpc, inline];
    expect(paths.map(baselineOf)).toEqual(['baseline', 'baseline', 'actors-baseline', 'baseline', 'baseline']);
    for (const p of paths) {
      if (p.workers === null) continue;
      const b = paths.find((x) => x.name === baselineOf(p))!;
      p.addedMs = added(p.latencyMs, b.latencyMs);
    }
    expect(actors.addedMs?.p50).toBeCloseTo(0.6, 9); // 0.8 − 0.2, not 0.8 − 0.1
    expect(grpc.addedMs?.p50).toBeCloseTo(0.55, 9);

    const result = checks(paths, 1000, true);
    const find = (what: string) => result.find((c) => c.what === what);
    expect(find('actors: added p50')).toMatchObject({ target: '≤ 0.625 ms (1.25× HTTP)', measured: '0.60 ms', pass: true });
    expect(find('actors: added p99')).toMatchObject({ target: '≤ 2.5 ms (1.25× HTTP)', measured: '2.40 ms', pass: true });
    expect(find('grpc: added p50')).toMatchObject({ measured: '0.55 ms', pass: true }); // 0.55 > 0.5, but within 1.25×
    expect(find('grpc: added p90')).toMatchObject({ target: '≤ 1.25 ms (1.25× HTTP)', measured: '1.10 ms', pass: true });
    expect(find('inline: added p50')).toMatchObject({ target: '≤ 0.5 ms', measured: '0.30 ms', pass: true });
    expect(find('grpc: errors')).toMatchObject({ measured: '4', pass: false });
    expect(result.some((c) => c.what.startsWith('actors-baseline'))).toBe(false);
    // The worker-pool comparison stays between HTTP paths: no pooled HTTP path here, so none.
    expect(result.some((c) => c.what.startsWith('worker pool'))).toBe(false);

    const md = toMarkdown({
      version: 1,
      startedAt: '2026-01-01T00:00:00.000Z',
      machine: { cpuModel: 'Test CPU', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] },
      node: 'v24.0.0',
      commit: { sha: 'abc', dirty: false },
      settings: { rate: 1000, connections: 16, bodyBytes: 1024, method: 'POST', durationS: 5, warmupS: 2, warmupRate: 100, maxConnections: 64, maxDurationS: 0, mtls: true, ids: 250 },
      sharing: 'everything',
      paths,
      checks: result,
      failures: [],
    });
    expect(md).toContain('- actors: generator → node A `PUT /v1.0/actors/Counter/bench-{id}/method/get` (ids 0 … 249 in turn');
    expect(md).toContain('- grpc: generator (grpc-js, a pre-encoded InvokeServiceRequest, 16 channels)');
    expect(md).toContain('compared with the HTTP baseline');
    expect(md).toContain('- TLS between the nodes: mTLS');
    expect(md).toContain('| actors-baseline | 0.20 | 0.40 | 0.60 |');
    expect(md).toContain('| actors | 0.60 | 1.20 | 2.40 | 3.60 | 4.0× | 5.0× | actors-baseline |');
    expect(md).toContain('| grpc | 0.55 | 1.10 | 2.10 | 3.15 | 6.5× | 5.2× | baseline |');
    expect(md).toContain('**4** (1 timeout, 3 other, codes: 3×GRPC_UNAVAILABLE 1×GRPC_DEADLINE_EXCEEDED)');
  });

  it('checks throughput targets on HTTP paths only', () => {
    const max = { run: fakeRun(100, 500), costs: [] };
    const http = { ...fakePath('inline', 0, fakeRun(400, 2000), 100), max };
    const actors = { ...fakePath('actors', 0, fakeRun(400, 2000), 100), api: 'actors' as const, max };
    const result = checks([http, actors], 1000, false);
    expect(result.some((c) => c.what === 'inline: max rate, 64 connections')).toBe(true);
    expect(result.some((c) => c.what === 'actors: max rate, 64 connections')).toBe(false);
    expect(result.some((c) => c.what === 'actors: node A vCPU per 1000 req/s')).toBe(true);
  });

  // Skipped off Linux: the harness reads process figures from /proc, which only Linux has.
  it.skipIf(process.platform !== 'linux')('reads CPU and memory of a live process from /proc', () => {
    const cpu = cpuSeconds(process.pid);
    expect(cpu).not.toBeNull();
    expect(cpu).toBeGreaterThanOrEqual(0);
    const mem = memory(process.pid);
    expect(mem?.rssMB).toBeGreaterThan(0);
    expect(mem!.hwmMB).toBeGreaterThanOrEqual(mem!.rssMB);
    expect(machineCpu()?.busyS).toBeGreaterThan(0);
    expect(cpuSeconds(2 ** 30)).toBeNull();
    expect(memory(2 ** 30)).toBeNull();
  });
});
