import { describe, expect, it } from 'vitest';
import type { RunResult } from '../../bench/load.ts';
import { cpuSeconds, machineCpu, mainThreadCpuSeconds, memory, threadCpuSeconds, threadKind } from '../../bench/procs.ts';
import { added, baselineOf, checks, comparePeers, nodeCeiling, peerFor, peerRatios, ratio, toLatency, toMarkdown, type PathReport, type ProcessCost, type Report } from '../../bench/results.ts';

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

/** A report of these paths from an mTLS run at 1000/s, for rendering. */
function mtlsReport(paths: PathReport[], more: Partial<Report> = {}): Report {
  return {
    version: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    machine: { cpuModel: 'Test CPU', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] },
    node: 'v24.0.0',
    commit: { sha: 'abc', dirty: false },
    settings: { rate: 1000, mtls: true },
    sharing: 'everything',
    paths,
    checks: [],
    failures: [],
    ...more,
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

    inline.costs[0]!.mainCpuUsPerRequest = 100;
    pooled.costs[0]!.mainCpuUsPerRequest = 40;
    const result = checks([base, inline, pooled], 1000, false);
    const find = (what: string) => result.find((c) => c.what === what);
    expect(find('inline: added p50 (mTLS off)')).toMatchObject({ target: '≤ 0.3 ms', pass: true }); // 0.3
    expect(find('inline: added p90 (mTLS off)')).toMatchObject({ target: '≤ 0.5 ms', pass: false }); // 0.6
    expect(find('inline: added p99 (mTLS off)')).toMatchObject({ target: '≤ 1.5 ms', pass: true }); // 1.5
    expect(find('workers: added p50 (mTLS off)')?.pass).toBe(false); // 0.6 ms > 0.3 ms
    expect(find('workers: errors')).toMatchObject({ measured: '2', pass: false });
    expect(find('inline: node A vCPU per 1000 req/s')).toMatchObject({ target: '≤ 0.12', pass: true }); // 0.120
    expect(find('workers: node A vCPU per 1000 req/s')?.pass).toBe(false); // 0.200
    expect(find('inline: node A RSS idle')).toMatchObject({ target: '≤ 80 MB', pass: true });
    expect(find('inline: node A RSS under 1000/s')).toMatchObject({ target: '≤ 110 MB', measured: '110 MB', pass: true });
    expect(find('worker pool: node A main-thread CPU per call vs inline (workers vs inline)')).toMatchObject({ measured: '40% (40 vs 100 µs)', pass: true });
    expect(find('worker pool: extra p50')).toMatchObject({ target: '≤ 0.1 ms', measured: '0.30 ms', pass: false });
    expect(result.some((c) => c.what.startsWith('baseline'))).toBe(false);

    // Medians of seconds (the nodes or the machine saturated): a 0.1 ms price is not judged from them.
    const slowInline = fakePath('inline', 0, fakeRun(4_000_000, 5_000_000), 120);
    const slowPooled = fakePath('workers', 2, fakeRun(3_000_000, 5_000_000), 200);
    const saturated = checks([base, slowInline, slowPooled], 1000, false).find((c) => c.what === 'worker pool: extra p50');
    expect(saturated?.pass).toBeNull();
    expect(saturated?.measured).toContain('not judged');
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
    expect(md).toContain('| inline | node A | 0.120 | 120 | — | 80 | 100 | 110 |');
    expect(md).toContain('- workers: node B did not start');
  });

  it('measures actor and gRPC paths against their own baselines, with the same targets as HTTP', () => {
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
    expect(find('actors: added p50')).toMatchObject({ target: '≤ 0.3 ms', measured: '0.60 ms', pass: false });
    expect(find('actors: added p99')).toMatchObject({ target: '≤ 1.5 ms', measured: '2.40 ms', pass: false });
    expect(find('grpc: added p50')).toMatchObject({ target: '≤ 0.3 ms', measured: '0.55 ms', pass: false });
    expect(find('grpc: added p90')).toMatchObject({ target: '≤ 0.5 ms', measured: '1.10 ms', pass: false });
    expect(find('inline: added p50')).toMatchObject({ target: '≤ 0.3 ms', measured: '0.30 ms', pass: true });
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

  it('checks throughput targets on HTTP paths only, relative to the nginx pair', () => {
    const max = { run: fakeRun(100, 500), costs: [] };
    const http = { ...fakePath('inline', 0, fakeRun(400, 2000), 100), max };
    const actors = { ...fakePath('actors', 0, fakeRun(400, 2000), 100), api: 'actors' as const, max };
    const result = checks([http, actors], 1000, false);
    // No nginx path ran: the check is there, says why, and is neither met nor failed.
    expect(result.find((c) => c.what === 'inline: max rate vs the nginx pair')).toMatchObject({ pass: null });
    expect(result.some((c) => c.what.startsWith('actors: max rate'))).toBe(false);
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
    // Per thread: the main thread is the task whose id is the pid; the kinds add up to at most the whole.
    const threads = threadCpuSeconds(process.pid)!;
    const total = cpuSeconds(process.pid)!;
    // Read again a moment later: the same thread, so the same figure or a tick (10 ms) or two more.
    const mainAgain = mainThreadCpuSeconds(process.pid)!;
    expect(mainAgain).toBeGreaterThanOrEqual(threads.main);
    expect(mainAgain - threads.main).toBeLessThan(0.05);
    expect(threads.main).toBeLessThanOrEqual(total);
    const sum = threads.main + threads.workers + threads.v8 + threads.libuv + threads.other;
    expect(sum).toBeLessThanOrEqual(cpuSeconds(process.pid)! + 0.011);
    expect(threadCpuSeconds(2 ** 30)).toBeNull();
  });

  describe('against the nginx pair', () => {
    const cost = (role: string, us: number, rss: number): ProcessCost => ({ role, pid: 1, cpuS: us / 1000, cpuSPer1000: us / 1000, cpuUsPerRequest: us, rssIdleMB: rss / 2, rssLoadMB: rss, peakMB: rss });
    const maxRun = (rps: number): ReturnType<typeof fakeRun> => ({ ...fakeRun(1000, 5000), mode: 'closed', achievedRps: rps });
    function setup(): { base: PathReport; plain: PathReport; mtls: PathReport; inline: PathReport } {
      const base = fakePath('baseline', null, fakeRun(100, 500), 0);
      const plain: PathReport = { ...fakePath('nginx-plain', null, fakeRun(200, 900), 0), proxy: 'nginx', tls: 'plain', costs: [cost('nginx A', 25, 10), cost('nginx B', 20, 10)] };
      const mtls: PathReport = {
        ...fakePath('nginx-mtls', null, fakeRun(250, 1200), 0),
        proxy: 'nginx',
        tls: 'mtls',
        costs: [cost('nginx A', 90, 10), cost('nginx B', 95, 12)],
        max: { run: maxRun(16_000), costs: [cost('nginx A', 25, 10), cost('nginx B', 30, 12)] },
      };
      const inline: PathReport = {
        ...fakePath('inline', 0, fakeRun(600, 4200), 0),
        tls: 'mtls',
        costs: [cost('node A', 270, 150), cost('node B', 190, 120)],
        max: { run: maxRun(6_400), costs: [cost('node A', 75, 150), cost('node B', 60, 120)] },
      };
      for (const p of [plain, mtls, inline]) p.addedMs = added(p.latencyMs, base.latencyMs);
      return { base, plain, mtls, inline };
    }

    it('computes each ratio from the figures of the same TLS', () => {
      const { base, plain, mtls, inline } = setup();
      expect(peerFor(inline, [base, plain, mtls, inline])?.name).toBe('nginx-mtls');
      const r = peerRatios(inline, mtls);
      expect(r.sameTls).toBe(true);
      expect(r.added.p50).toBeCloseTo(0.5 / 0.15, 9); // (0.6 − 0.1) / (0.25 − 0.1)
      expect(r.added.p90).toBeCloseTo(1.0 / 0.3, 9);
      expect(r.added.p99).toBeCloseTo(3.7 / 0.7, 9);
      expect(r.maxRps).toBeCloseTo(0.4, 9);
      expect(r.cpuAtMax.a).toBeCloseTo(3, 9);
      expect(r.cpuAtMax.b).toBeCloseTo(2, 9);
      expect(r.cpuAtRate.a).toBeCloseTo(3, 9);
      expect(r.cpuAtRate.b).toBeCloseTo(2, 9);
      expect(r.rss.a).toBeCloseTo(15, 9);
      expect(r.rss.b).toBeCloseTo(10, 9);
      // Without an mTLS pair it compares with the plaintext one, and says so.
      const other = comparePeers([base, plain, inline]);
      expect(other).toHaveLength(1);
      expect(other[0]).toMatchObject({ path: 'inline', peer: 'nginx-plain', sameTls: false, maxRps: null });
      expect(comparePeers([base, inline])).toEqual([]);
    });

    it('gives no ratio where nginx added nothing or a figure is missing', () => {
      expect(ratio(1, 0)).toBeNull();
      expect(ratio(1, -0.1)).toBeNull(); // nginx faster than the baseline at that percentile: no meaningful ratio
      expect(ratio(null, 2)).toBeNull();
      expect(ratio(3, 2)).toBe(1.5);
    });

    it('checks the relative throughput and CPU targets, and prints the ratio table', () => {
      const { base, plain, mtls, inline } = setup();
      const paths = [base, plain, mtls, inline];
      const result = checks(paths, 1000, true);
      const find = (what: string) => result.find((c) => c.what === what);
      expect(find('inline: max rate vs nginx-mtls')).toMatchObject({ target: '≥ 60% of nginx\'s', measured: '40% (6400 vs 16000/s)', pass: false });
      expect(find('inline: node A CPU per request at saturation vs nginx A')).toMatchObject({ measured: '3.00×', pass: false });
      expect(find('inline: node B CPU per request at saturation vs nginx B')).toMatchObject({ measured: '2.00×', pass: true });
      // The nginx paths are the yardstick, not held to weft's targets.
      expect(result.some((c) => c.what.startsWith('nginx'))).toBe(false);
      const md = toMarkdown(mtlsReport(paths, { peers: comparePeers(paths), checks: result }));
      expect(md).toContain('## weft ÷ the nginx pair, same run');
      expect(md).toContain('| inline | nginx-mtls | 3.33× | 3.33× | 5.29× | 0.40× | 3.00× / 2.00× | 3.00× / 2.00× | 15.00× / 10.00× |');
      expect(md).toContain('| nginx-mtls | nginx A | 0.090 | 90 |');
    });

    describe('and the Node pair (the Node floor)', () => {
      function withNode(): PathReport[] {
        const { base, mtls, inline } = setup();
        const node: PathReport = {
          ...fakePath('node-pair-mtls', null, fakeRun(300, 1900), 0),
          proxy: 'node',
          tls: 'mtls',
          costs: [{ ...cost('node-pair A', 180, 50), threadUsPerRequest: { main: 150, workers: 0, v8: 25, libuv: 5, other: 0 } }, cost('node-pair B', 95, 40)],
          max: { run: maxRun(12_000), costs: [{ ...cost('node-pair A', 50, 50), mainCpuUsPerRequest: 45 }, cost('node-pair B', 40, 40)] },
        };
        node.addedMs = added(node.latencyMs, base.latencyMs);
        return [base, mtls, node, inline];
      }

      it('divides weft by the Node pair and the Node pair by nginx, beside weft by nginx', () => {
        const paths = withNode();
        const rows = comparePeers(paths);
        expect(rows.map((r) => [r.path, r.peer])).toEqual([['inline', 'nginx-mtls'], ['inline', 'node-pair-mtls'], ['node-pair-mtls', 'nginx-mtls']]);
        const weftOverNode = rows[1]!;
        expect(weftOverNode.added.p50).toBeCloseTo(0.5 / 0.2, 9);
        expect(weftOverNode.added.p99).toBeCloseTo(3.7 / 1.4, 9);
        expect(weftOverNode.maxRps).toBeCloseTo(6400 / 12_000, 9);
        expect(weftOverNode.cpuAtMax).toEqual({ a: 1.5, b: 1.5 });
        expect(weftOverNode.cpuAtRate).toEqual({ a: 1.5, b: 2 });
        const nodeOverNginx = rows[2]!;
        expect(nodeOverNginx.sameTls).toBe(true);
        expect(nodeOverNginx.maxRps).toBeCloseTo(0.75, 9);
        expect(nodeOverNginx.cpuAtMax.a).toBeCloseTo(2, 9);
        expect(nodeOverNginx.rss.a).toBeCloseTo(5, 9);
        // Without a Node pair the table is as before: weft against nginx only.
        expect(comparePeers(paths.filter((p) => p.proxy !== 'node')).map((r) => r.peer)).toEqual(['nginx-mtls']);
        // The Node pair is a yardstick, not held to weft's targets; weft's nginx checks are unchanged.
        const result = checks(paths, 1000, true);
        expect(result.some((c) => c.what.startsWith('node-pair'))).toBe(false);
        expect(result.find((c) => c.what === 'inline: max rate vs nginx-mtls')).toMatchObject({ measured: '40% (6400 vs 16000/s)' });
      });

      it('prints the rows, the path, its threads and its ceiling in the report', () => {
        const paths = withNode();
        const md = toMarkdown(mtlsReport(paths, { peers: comparePeers(paths), checks: checks(paths, 1000, true) }));
        expect(md).toContain('## weft ÷ the nginx pair, weft ÷ the Node pair, the Node pair ÷ nginx, same run');
        expect(md).toContain('| inline | nginx-mtls | 3.33× | 3.33× | 5.29× | 0.40× | 3.00× / 2.00× | 3.00× / 2.00× | 15.00× / 10.00× |');
        expect(md).toContain('| inline | node-pair-mtls | 2.50× | 2.50× | 2.64× | 0.53× | 1.50× / 1.50× | 1.50× / 2.00× | 3.00× / 3.00× |');
        expect(md).toContain('| node-pair-mtls | nginx-mtls | 1.33× | 1.33× | 2.00× | 0.75× | 2.00× / 1.33× | 2.00× / 1.00× | 5.00× / 3.33× |');
        expect(md).toContain('- Node pair: generator → Node proxy A → Node proxy B');
        expect(md).toContain('| node-pair-mtls | node-pair A | 0.180 | 180 |');
        expect(md).toContain('## CPU per request by thread, weft nodes and the Node pair (µs)');
        expect(md).toContain('| node-pair-mtls | node-pair A | 150 | 0 | 25 | 5 | 0 | 180 |');
        expect(md).toContain('| node-pair-mtls | node-pair A | 50 | 45 | 90% | 20000 | 22222 | 22222 | 22222 |');
      });
    });
  });

  it('estimates a node\'s ceiling from its main thread and all its threads', () => {
    // Inline: the main thread does nearly everything, so more cores do not help.
    expect(nodeCeiling(100, 90, 1)).toBeCloseTo(10_000, 6);
    expect(nodeCeiling(100, 90, 8)).toBeCloseTo(1e6 / 90, 6);
    // A pool that moved work off the main thread: cores help until the main thread is full.
    expect(nodeCeiling(150, 30, 2)).toBeCloseTo(2e6 / 150, 6);
    expect(nodeCeiling(150, 30, 8)).toBeCloseTo(1e6 / 30, 6);
    expect(nodeCeiling(100, null, 4)).toBeCloseTo(40_000, 6); // main thread unknown: all threads only
    expect(nodeCeiling(null, 30, 4)).toBeNull();
    expect(nodeCeiling(0, 0, 4)).toBeNull();

    const inline = fakePath('inline', 0, fakeRun(400, 2000), 100);
    inline.costs = [{ ...inline.costs[0]!, cpuUsPerRequest: 100, mainCpuUsPerRequest: 80 }];
    const md = toMarkdown(mtlsReport([inline]));
    expect(md).toContain('| inline | node A | 100 | 80 | 80% | 10000 | 12500 | 12500 | 12500 |');
  });

  it('names thread kinds as Node and V8 name their threads', () => {
    expect(threadKind(100, 100, 'MainThread\n')).toBe('main');
    expect(threadKind(100, 100, 'nginx\n')).toBe('main'); // whatever the main thread calls itself
    expect(threadKind(100, 101, 'WorkerThread\n')).toBe('workers');
    expect(threadKind(100, 102, 'V8Worker\n')).toBe('v8');
    expect(threadKind(100, 103, 'DelayedTaskSche\n')).toBe('v8');
    expect(threadKind(100, 104, 'libuv-worker\n')).toBe('libuv');
    expect(threadKind(100, 105, 'SignalInspector\n')).toBe('other');
  });

  it('prints CPU per request by thread for weft nodes, at the rate and at saturation', () => {
    const pooled = fakePath('workers', 2, fakeRun(400, 2000), 150);
    pooled.costs[0]!.threadUsPerRequest = { main: 60, workers: 70, v8: 15, libuv: 1, other: 4 };
    pooled.max = { run: fakeRun(300, 900), costs: [{ ...pooled.costs[0]!, threadUsPerRequest: { main: 40, workers: 50, v8: 8, libuv: 0, other: 2 } }] };
    const md = toMarkdown(mtlsReport([pooled]));
    expect(md).toContain('## CPU per request by thread, weft nodes (µs)');
    expect(md).toContain('| workers | node A | 60 (40) | 70 (50) | 15 (8) | 1 (0) | 4 (2) | 150 |');
    // node B has no per-thread figures: no row rather than a row of dashes.
    expect(md).not.toContain('| workers | node B | —');
  });
});
