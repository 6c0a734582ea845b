/**
 * The tracing mode's paired method (bench/paired.ts), without running it: the window schedule,
 * the median-of-deltas and its order-statistics interval on known inputs, the verdict against
 * the 30 µs target (including cases that must not pass), and the report's section and checks.
 */
import { describe, expect, it } from 'vitest';
import { analysePaired, blockDeltas, LEAD_WINDOWS, medianInterval, pairedChecks, pairedMarkdown, pairedSchedule, usPerCall, verdict, type Condition, type PairedReport, type WindowFigures } from '../../bench/paired.ts';
import { checks, toMarkdown, type Report, type TracingCost } from '../../bench/results.ts';
import { poolPaired, pooledMarkdown, savedRun } from '../../bench/pool-paired.ts';

/** Windows for a schedule whose µs/call per node is `cpu(condition, index)`, 2000 calls each. */
function windowsOf(schedule: Condition[], cpu: (c: Condition, i: number, role: string) => number): WindowFigures[] {
  return schedule.map((condition, index) => {
    const calls = 2000;
    const cpuS: Record<string, number> = {};
    for (const role of ['node A', 'node B']) cpuS[role] = (cpu(condition, index, role) * calls) / 1e6;
    // the app: the same work under every condition, a little noise by window
    cpuS['app'] = ((100 + (index % 4)) * calls) / 1e6;
    return { index, block: index < LEAD_WINDOWS.length ? -1 : Math.floor((index - LEAD_WINDOWS.length) / 6), condition, calls, errors: 0, foreign: 0, cpuS, wallS: 2, otherVcpu: 0.1 };
  });
}

const hooks: TracingCost = { calls: 1000, figures: [{ mode: 'off', nodeAUs: 0.2, nodeBUs: 0.01 }, { mode: '1%', nodeAUs: 1.8, nodeBUs: 0.9 }, { mode: '100%', nodeAUs: 6.7, nodeBUs: 6.2 }] };

function report(schedule: Condition[], cpu: (c: Condition, i: number, role: string) => number, errors = { sampled: 0, unsampled: 0, control: 0 }): PairedReport {
  const windows = windowsOf(schedule, cpu);
  return {
    mode: 'tracing', workers: 0, rate: 1000, settleS: 0.5, measureS: 2, blocks: (schedule.length - LEAD_WINDOWS.length) / 6, confidence: 0.95,
    windows, nodes: analysePaired(windows, ['node A', 'node B', 'app']), errors, sent: { sampled: 40_000, unsampled: 40_000, control: 32_000 },
    spansExported: 160_000, spansDropped: 0, loadAvg: [1.2, 1.5], latencyMs: { sampled: { p50: 1.1, p99: 3.2 }, unsampled: { p50: 1.0, p99: 3.0 } },
  };
}

describe('bench paired tracing method', () => {
  it('schedules two lead windows, then blocks A B C C B A with A and C swapping places every other block', () => {
    const s = pairedSchedule(2);
    expect(s.slice(0, 2)).toEqual(['sampled', 'unsampled']);
    expect(s.slice(2, 8)).toEqual(['unsampled', 'sampled', 'control', 'control', 'sampled', 'unsampled']);
    expect(s.slice(8)).toEqual(['control', 'sampled', 'unsampled', 'unsampled', 'sampled', 'control']);
    // in every block each condition's mean position is the same: a drift linear over the block cancels
    for (let b = 0; b < 2; b++) {
      const block = s.slice(2 + b * 6, 8 + b * 6);
      for (const c of ['sampled', 'unsampled', 'control'] as const) {
        const at = block.flatMap((x, i) => (x === c ? [i] : []));
        expect(at.length).toBe(2);
        expect((at[0]! + at[1]!) / 2).toBe(2.5);
      }
    }
    expect(() => pairedSchedule(0)).toThrow(RangeError);
  });

  it('gives the median and the order-statistics interval of known samples', () => {
    // n = 14: k = 3, [x(3), x(12)], coverage 1 − 2·P(Bin(14, ½) ≤ 2) = 1 − 2·106/16384
    const ci = medianInterval([14, 2, 9, 1, 13, 3, 12, 4, 11, 5, 10, 6, 8, 7]);
    expect(ci).toMatchObject({ n: 14, median: 7.5, low: 3, high: 12 });
    expect(ci?.coverage).toBeCloseTo(1 - 212 / 16384, 10);
    // n = 9: k = 2 (coverage 1 − 20/512 ≥ 0.95; k = 3 would cover only 1 − 92/512)
    expect(medianInterval([9, 8, 7, 6, 5, 4, 3, 2, 1])).toMatchObject({ median: 5, low: 2, high: 8 });
    // n = 6: the whole range is the only 95% interval (1 − 2/64)
    expect(medianInterval([6, 1, 5, 2, 4, 3])).toMatchObject({ median: 3.5, low: 1, high: 6, coverage: 1 - 2 / 64 });
    // n = 5: no 95% interval exists (the whole range covers 1 − 2/32 = 93.75%)
    expect(medianInterval([1, 2, 3, 4, 5])).toMatchObject({ median: 3, low: null, high: null, coverage: 0 });
    expect(medianInterval([])).toBeNull();
  });

  it('calls the target met only when the interval is under it, not met when above, and not settled when it straddles', () => {
    const under = medianInterval([10, 12, 14, 16, 18, 20, 22, 24, 26, 28]);
    expect(verdict(under, 30)).toBe('met');
    const above = medianInterval([31, 35, 36, 40, 41, 44, 45, 50, 52, 60]);
    expect(verdict(above, 30)).toBe('not met');
    // medians under the target do not pass when the interval reaches above it
    const straddles = medianInterval([-20, 0, 5, 10, 15, 20, 25, 45, 60, 80]);
    expect(straddles?.median).toBeLessThan(30);
    expect(verdict(straddles, 30)).toBe('not settled');
    // too few blocks to have an interval: never met, however small the deltas
    expect(verdict(medianInterval([1, 2, 3, 4, 5]), 30)).toBe('not settled');
  });

  it('cancels a drift linear over the run: per block, the sampled excess exactly, and 0 for the A/A control', () => {
    const s = pairedSchedule(8);
    // the machine slows by 3 µs/call per window; sampling adds 20 µs on node A and 12 on node B
    const w = windowsOf(s, (c, i, role) => 400 + 3 * i + (c === 'sampled' ? (role === 'node A' ? 20 : 12) : 0));
    const a = blockDeltas(w, 'node A');
    expect(a.traced).toHaveLength(8);
    for (const d of a.traced) expect(d).toBeCloseTo(20, 9);
    for (const d of a.control) expect(d).toBeCloseTo(0, 9);
    for (const d of blockDeltas(w, 'node B').traced) expect(d).toBeCloseTo(12, 9);
    // the lead windows are left out: making them wild changes nothing
    const wild = w.map((x) => (x.block < 0 ? { ...x, cpuS: { 'node A': 99, 'node B': 99 } } : x));
    expect(blockDeltas(wild, 'node A')).toEqual(a);
    expect(usPerCall(w[2]!, 'node A')).toBeCloseTo(406, 9);
    expect(usPerCall({ ...w[2]!, calls: 0 }, 'node A')).toBeNull();
  });

  it('summarises each node: its deltas, the A/A floor, the windows\' spread', () => {
    const s = pairedSchedule(8);
    // block-to-block noise on both conditions alike (alternating ±10), a 25 µs excess on node A, 5 on node B
    const p = report(s, (c, i, role) => 400 + (Math.floor((i - 2) / 6) % 2 === 0 ? 10 : -10) + (c === 'sampled' ? (role === 'node A' ? 25 : 5) : 0));
    const [a, b] = p.nodes;
    expect(a?.tracedCi?.median).toBeCloseTo(25, 9);
    expect(b?.tracedCi?.median).toBeCloseTo(5, 9);
    expect(a?.controlCi?.median).toBeCloseTo(0, 9);
    expect(a?.windows.sampled?.max).toBeCloseTo(435, 9);
    expect(a?.windows.unsampled?.min).toBeCloseTo(390, 9);
    expect(pairedChecks(p).map((c) => c.pass)).toEqual([true, true, true]);
  });

  it('leaves out a block with a window that mixes conditions (calls sent before the switch), and says so', () => {
    const s = pairedSchedule(8);
    const p = report(s, (c) => 400 + (c === 'sampled' ? 20 : 0));
    // block 3's control window: the nodes lagged, 30% of its calls were sent in the sampled window before it, and it looks wild
    const at = p.windows.findIndex((w) => w.block === 2 && w.condition === 'control');
    p.windows[at] = { ...p.windows[at]!, foreign: 600, cpuS: { 'node A': 2, 'node B': 2, app: 0.2 } };
    // 1% of a window's calls is tolerated
    const near = p.windows.findIndex((w) => w.block === 5 && w.condition === 'unsampled');
    p.windows[near] = { ...p.windows[near]!, foreign: 20 };
    const [a] = analysePaired(p.windows, ['node A']);
    expect(a?.traced).toHaveLength(7);
    expect(a?.traced.every((d) => Math.abs(d - 20) < 1e-9)).toBe(true);
    expect(a?.control.every((d) => Math.abs(d) < 1e-9)).toBe(true);
    expect(pairedMarkdown({ ...p, nodes: analysePaired(p.windows, ['node A', 'node B']) }, hooks).join('\n')).toContain(
      'of which 620 were sent in an earlier window (the nodes lagged by more than the settling time): 1 of 8 blocks had a window where they were more than 1% of its calls, mixing conditions, and are left out (blocks 3).',
    );
  });

  it('fails the check when the delta is beyond the target, and when a condition has errors', () => {
    const p = report(pairedSchedule(8), (c, i) => 400 + i + (c === 'sampled' ? 45 : 0), { sampled: 3, unsampled: 0, control: 0 });
    const c = pairedChecks(p);
    expect(c[0]).toMatchObject({ target: '≤ 30 µs', measured: '+45.0 [+45.0, +45.0] µs', pass: false });
    expect(c[2]).toMatchObject({ measured: '3 / 0 / 0', pass: false });
  });

  it('leaves the check open, said "not settled", when the interval straddles the target', () => {
    const deltas = [-20, 0, 5, 10, 15, 20, 25, 45, 60, 80];
    const s = pairedSchedule(deltas.length);
    const p = report(s, (c, i) => 400 + (c === 'sampled' ? (deltas[Math.floor((i - 2) / 6)] ?? 0) : 0));
    const c = pairedChecks(p)[0];
    expect(c).toMatchObject({ pass: null, note: 'not settled' });
    const md = toMarkdown({ ...base(), tracingPaired: [p], checks: checks([], 1000, true, hooks, [p]) });
    expect(md).toMatch(/\| ≤ 30 µs \| \+17\.5 \[\+0\.0, \+60\.0\] µs \| not settled \|/);
  });

  it('renders the paired section: deltas with intervals, the A/A floor, errors, spans, load and the bound on what it leaves out', () => {
    // per block, sampling adds 22 µs on node A give or take 3 (19, 24, 22, 20, 25, 23, 21, 19), 18 on node B
    const p = report(pairedSchedule(8), (c, i, role) => 400 + (c === 'sampled' ? (role === 'node A' ? 22 + ((Math.floor((i - 2) / 6) * 5) % 7) - 3 : 18) : 0));
    const md = toMarkdown({ ...base(), tracingHooks: hooks, tracingPaired: [p], checks: checks([], 1000, true, hooks, [p]) });
    expect(md).toContain('### Paired: tracing, one pair of nodes, sampled against unsampled windows');
    // n = 8: the interval is the whole range (k = 1, coverage 1 − 2/256)
    expect(md).toContain('| node A | +21.5 [+19.0, +25.0] | +0.0 [+0.0, +0.0] | 99.2% | +19, +24, +22, +20, +25, +23, +21, +19 | +0, +0, +0, +0, +0, +0, +0, +0 | 419–422–425 / 400–400–400 / 400–400–400 | met |');
    expect(md).toMatch(/\| node B \| \+18\.0 \[\+18\.0, \+18\.0\] /);
    // the app is reported as a second floor, never checked against the target
    expect(md).toMatch(/\| app \(no tracing work: should be 0\) \| [+-]\d\.\d \[[^\]]+\] \| .* \| — \|\n/);
    expect(md).not.toContain("tracing --paired: app's CPU");
    expect(md).toContain('| met |');
    expect(md).toContain('- Calls sent (sampled / unsampled / control): 40000 / 40000 / 32000; errors 0 / 0 / 0.');
    expect(md).toContain('- Spans exported 160000, dropped 0.');
    expect(md).toContain('of which 0 were sent in an earlier window');
    expect(md).toContain('- Load average (1 min) 1.20 as the windows began, 1.50 as they ended; other processes per window: median 0.10, most 0.10 vCPU.');
    expect(md).toContain('which the isolated hooks bound at 1.80 µs');
    // with the hooks' figure for calls whose parent is unsampled, that is the bound, node by node
    const withUnsampled = pairedMarkdown(p, { ...hooks, figures: [...hooks.figures, { mode: 'unsampled', nodeAUs: 0.61, nodeBUs: 0.12 }] }).join('\n');
    expect(withUnsampled).toContain('which the isolated hooks bound at 0.61 µs on node A and 0.12 µs on node B');
    expect(md).not.toContain('Where it goes');
    // with the nodes' threads by kind: a table of their own
    const windows = p.windows.map((w) => ({ ...w, cpuS: { ...w.cpuS, 'node A main': ((w.condition === 'sampled' ? 300 : 285) * w.calls) / 1e6, 'node A v8': ((w.condition === 'sampled' ? 27 : 20) * w.calls) / 1e6 } }));
    const withThreads = pairedMarkdown({ ...p, windows, threads: analysePaired(windows.map((w) => ({ ...w, cpuS: { ...w.cpuS, 'node A libuv': 0 } })), ['node A main', 'node A v8', 'node A libuv']) }, hooks).join('\n');
    expect(withThreads).not.toContain('| node A libuv |');
    expect(withThreads).toContain('| node A main | +15.0 [+15.0, +15.0] | +0.0 [+0.0, +0.0] | 285.0 |');
    expect(withThreads).toContain('| node A v8 | +7.0 [+7.0, +7.0] | +0.0 [+0.0, +0.0] | 20.0 |');
    expect(md).toContain('sampled p50 1.10, p99 3.20 ms; unsampled p50 1.00, p99 3.00 ms');
    expect(md).toContain("| tracing --paired: node A's CPU per call, sampled − unsampled (median of 8 blocks, 99.2% interval; A/A floor +0.0 [+0.0, +0.0]) | ≤ 30 µs | +21.5 [+19.0, +25.0] µs | met |");
  });
});

describe('pooling paired runs of one build (bench/pool-paired.ts)', () => {
  const saved = (source: string, sha: string, cpu: (c: Condition, i: number, role: string) => number, over: Partial<PairedReport> = {}) =>
    savedRun(source, { commit: { sha, dirty: false }, tracingPaired: [{ ...report(pairedSchedule(8), cpu), ...over }] });
  // per block, node A's sampled windows cost `d(block)` more: runs whose own medians differ
  const run = (source: string, sha: string, d: (block: number) => number) =>
    saved(source, sha, (c, i) => (c === 'sampled' ? 400 + d(Math.floor((i - LEAD_WINDOWS.length) / 6)) : 400));

  it('analyses the blocks of all the runs as one run', () => {
    const a = run('a.json', 'c0ffee', (b) => 10 + b); // Δ 10 … 17
    const b = run('b.json', 'c0ffee', (b) => 30 + b); // Δ 30 … 37
    const pooled = poolPaired([a, b]);
    const nodeA = pooled.nodes.find((n) => n.role === 'node A');
    expect(nodeA?.blocksPerRun).toEqual([8, 8]);
    // the median of the 16 deltas together, and the interval of 16 (not of either run's 8)
    const all = [...(a.paired.nodes[0]?.traced ?? []), ...(b.paired.nodes[0]?.traced ?? [])];
    expect(all).toHaveLength(16);
    expect(nodeA?.tracedCi).toEqual(medianInterval(all, 0.95));
    expect(nodeA?.tracedCi?.median).toBeCloseTo(23.5, 6);
    const md = pooledMarkdown(pooled).join('\n');
    expect(md).toContain('2 paired runs of weft c0ffee, their blocks pooled:');
    expect(md).toMatch(/\| node A \| \+23\.5 \[\+\d+\.\d, \+\d+\.\d\] \| .* \| 8 \+ 8 \| not settled \|/);
  });

  it('refuses runs of other builds, of another method, or of uncommitted nodes, naming them', () => {
    const a = run('a.json', 'c0ffee', () => 10);
    expect(() => poolPaired([a, run('b.json', 'decade', () => 10)])).toThrow(/b\.json ran weft decade, a\.json ran c0ffee/);
    expect(() => poolPaired([a, saved('c.json', 'c0ffee', () => 400, { rate: 500 })])).toThrow(/c\.json ran mode tracing, workers 0, 500\/s/);
    expect(() => savedRun('d.json', { commit: { sha: 'c0ffee', dirty: true }, tracingPaired: [a.paired] })).toThrow(/d\.json: its nodes ran from a tree with uncommitted changes/);
    expect(() => savedRun('e.json', { commit: { sha: 'c0ffee', dirty: false }, tracingPaired: [] })).toThrow(/not the report of one paired run/);
    expect(() => poolPaired([])).toThrow(/no runs/);
  });
});

function base(): Report {
  return {
    version: 1, startedAt: '2026-01-01T00:00:00.000Z', machine: { cpuModel: 'cpu', cores: 2, platform: 'linux', loadAvg: [0, 0, 0] }, node: 'v24', commit: { sha: 'abc', dirty: false },
    settings: { rate: 1000 }, sharing: 'all', paths: [], checks: [], failures: [],
  };
}
