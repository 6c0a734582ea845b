import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../bench/load.ts';
import { cpuSeconds, machineCpu, memory } from '../../bench/procs.ts';
import { added, checks, toLatency, toMarkdown, type PathReport, type Report } from '../../bench/results.ts';

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
