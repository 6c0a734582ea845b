import type { Check, TracingCost } from './results.ts';

/**
 * The tracing mode's paired method (`--paired`): what tracing at 100% costs per call per node,
 * measured on ONE pair of nodes with tracing on, by switching the sampling decision the caller
 * sends (`traceparent` flags `-01` / `-00`, which a parent-based sampler follows) in short
 * windows, so that the difference between two pairs of processes is not in the figure and the
 * machine's drift over minutes cancels. Pure: the schedule, the statistics and their verdict,
 * so unit tests can check them on known inputs.
 *
 * The schedule is made of blocks of six windows in the order A B C C B A (B sampled; A and C
 * both unsampled, C being the A/A control), with A and C swapping places every other block:
 * every condition's mean position in a block is the same, so a drift linear over the block
 * cancels from every difference. A block gives one traced difference (mean of its two B windows
 * − mean of its four unsampled ones, A and C) and one control difference (mean of its two C
 * windows − of its two A windows): the method's own floor, measured in the same run. The two
 * are uncorrelated (with every window's noise alike and independent, Cov(B − (A+C)/2, C − A)
 * = 0: a chance low A moves the control, not the traced difference), and the control is the noisier of the two
 * (variance 2 against 1.5 in units of a two-window mean's), so it is a conservative floor.
 */

/** A window's condition: sampled, unsampled, or unsampled again (the A/A control). */
export type Condition = 'sampled' | 'unsampled' | 'control';

/** One letter per window on the generator's command line (`--windows`). */
export const CONDITION_LETTERS: Readonly<Record<Condition, string>> = { sampled: 'S', unsampled: 'U', control: 'C' };

export function conditionOf(letter: string): Condition {
  if (letter === 'S') return 'sampled';
  if (letter === 'U') return 'unsampled';
  if (letter === 'C') return 'control';
  throw new Error(`unknown window condition "${letter}" (S, U or C)`);
}

/** The windows before the first block (one sampled, one unsampled at the full rate), not analysed. */
export const LEAD_WINDOWS: readonly Condition[] = ['sampled', 'unsampled'];

/** The windows of `blocks` blocks, after the lead windows. */
export function pairedSchedule(blocks: number): Condition[] {
  if (!Number.isInteger(blocks) || blocks < 1) throw new RangeError(`blocks must be a whole number >= 1 (got ${blocks})`);
  const out: Condition[] = [...LEAD_WINDOWS];
  for (let b = 0; b < blocks; b++) {
    const [outer, inner]: Condition[] = b % 2 === 0 ? ['unsampled', 'control'] : ['control', 'unsampled'];
    out.push(outer as Condition, 'sampled', inner as Condition, inner as Condition, 'sampled', outer as Condition);
  }
  return out;
}

/** What the harness measured over one window's measured part. */
export interface WindowFigures {
  /** Position in the schedule (lead windows included). */
  index: number;
  /** The block it belongs to (0-based), or -1 for a lead window. */
  block: number;
  condition: Condition;
  /** Calls the generator completed in the measured part. */
  calls: number;
  /** Of those, calls that failed (any status outside 2xx, or no answer). */
  errors: number;
  /** Of those, calls sent in an earlier window (a target lagging by more than the settling time): 0 on a healthy run. */
  foreign: number;
  /** CPU seconds each watched process ran during the measured part (schedstat), by role. */
  cpuS: Record<string, number | null>;
  /** The measured part's wall time, s. */
  wallS: number;
  /** vCPU the rest of the machine used during it (null: unknown). */
  otherVcpu: number | null;
}

/** µs of CPU per call of one role in one window (null: unknown or no calls). */
export function usPerCall(w: WindowFigures, role: string): number | null {
  const s = w.cpuS[role];
  return s === null || s === undefined || w.calls <= 0 ? null : (s * 1e6) / w.calls;
}

/** The median of a sample and a distribution-free interval for it. */
export interface MedianInterval {
  n: number;
  median: number;
  /** The order-statistics interval [x(k), x(n+1-k)]: null bounds when n is too small for the confidence asked. */
  low: number | null;
  high: number | null;
  /** The interval's exact coverage under the binomial(n, 1/2) law (0 when there is none). */
  coverage: number;
}

/** P(X <= k) for X ~ binomial(n, 1/2). */
function binomialHalfCdf(n: number, k: number): number {
  let term = 0.5 ** n;
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += term;
    term = (term * (n - i)) / (i + 1);
  }
  return sum;
}

/**
 * The median of `xs` with the order-statistics confidence interval for it: the narrowest
 * [x(k), x(n+1-k)] (sorted, 1-based) whose coverage, 1 − 2·P(Bin(n, ½) ≤ k−1), is at least
 * `confidence`. It assumes only that the values are independent draws from one distribution
 * (no normality). With fewer than 6 values no 95% interval exists: the bounds are null.
 */
export function medianInterval(xs: readonly number[], confidence = 0.95): MedianInterval | null {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const n = v.length;
  if (n === 0) return null;
  const median = n % 2 === 1 ? (v[(n - 1) / 2] as number) : ((v[n / 2 - 1] as number) + (v[n / 2] as number)) / 2;
  let k = 0;
  let coverage = 0;
  // the largest k (narrowest interval) that still covers enough
  for (let j = 1; j <= Math.floor(n / 2); j++) {
    const c = 1 - 2 * binomialHalfCdf(n, j - 1);
    if (c >= confidence) {
      k = j;
      coverage = c;
    } else break;
  }
  if (k === 0) return { n, median, low: null, high: null, coverage: 0 };
  return { n, median, low: v[k - 1] as number, high: v[n - k] as number, coverage };
}

/** Whether an interval shows a cost within `target`: its upper bound is, beyond it: its lower bound is, else not settled. */
export type Verdict = 'met' | 'not met' | 'not settled';

export function verdict(ci: MedianInterval | null, target: number): Verdict {
  if (ci === null || ci.low === null || ci.high === null) return 'not settled';
  if (ci.high <= target) return 'met';
  if (ci.low > target) return 'not met';
  return 'not settled';
}

/** One node's figures from the paired windows. */
export interface PairedNode {
  role: string;
  /** Per block: mean µs/call of its two sampled windows − of its four unsampled ones (A and C). */
  traced: number[];
  /** Per block: mean µs/call of its two C windows − of its two A windows (all unsampled: the floor). */
  control: number[];
  tracedCi: MedianInterval | null;
  controlCi: MedianInterval | null;
  /** µs/call of single windows, per condition: the least, the median and the most. */
  windows: Record<Condition, { min: number; median: number; max: number } | null>;
}

/** The per-block differences of one role: windows of lead (block −1) are left out. */
export function blockDeltas(windows: readonly WindowFigures[], role: string): { traced: number[]; control: number[] } {
  const blocks = new Map<number, Record<Condition, number[]>>();
  for (const w of windows) {
    if (w.block < 0) continue;
    const x = usPerCall(w, role);
    if (x === null) continue;
    let b = blocks.get(w.block);
    if (b === undefined) blocks.set(w.block, (b = { sampled: [], unsampled: [], control: [] }));
    b[w.condition].push(x);
  }
  const mean = (xs: number[]): number => xs.reduce((a, c) => a + c, 0) / xs.length;
  const traced: number[] = [];
  const control: number[] = [];
  for (const [, b] of [...blocks].sort((x, y) => x[0] - y[0])) {
    // a block with a window missing (a role's CPU unreadable) gives no difference
    if (b.unsampled.length === 0 || b.control.length === 0) continue;
    if (b.sampled.length > 0) traced.push(mean(b.sampled) - mean([...b.unsampled, ...b.control]));
    control.push(mean(b.control) - mean(b.unsampled));
  }
  return { traced, control };
}

/**
 * A window whose measured part completed more than this share of calls sent in an earlier window
 * mixes conditions (the nodes lagged by more than the settling time): its block is left out.
 */
export const MAX_FOREIGN_SHARE = 0.01;

/** The blocks that have a window mixing conditions (`MAX_FOREIGN_SHARE`), left out of the analysis. */
export function mixedBlocks(windows: readonly WindowFigures[]): number[] {
  const out = new Set<number>();
  for (const w of windows) if (w.block >= 0 && w.foreign > MAX_FOREIGN_SHARE * w.calls) out.add(w.block);
  return [...out].sort((a, b) => a - b);
}

export function analysePaired(all: readonly WindowFigures[], roles: readonly string[], confidence = 0.95): PairedNode[] {
  const mixed = new Set(mixedBlocks(all));
  const windows = all.filter((w) => !mixed.has(w.block));
  return roles.map((role) => {
    const { traced, control } = blockDeltas(windows, role);
    const spread = (c: Condition): { min: number; median: number; max: number } | null => {
      const xs = windows.filter((w) => w.block >= 0 && w.condition === c).map((w) => usPerCall(w, role)).filter((x): x is number => x !== null);
      const m = medianInterval(xs, confidence);
      return m === null ? null : { min: Math.min(...xs), median: m.median, max: Math.max(...xs) };
    };
    return {
      role, traced, control,
      tracedCi: medianInterval(traced, confidence), controlCi: medianInterval(control, confidence),
      windows: { sampled: spread('sampled'), unsampled: spread('unsampled'), control: spread('control') },
    };
  });
}

/** The paired method's report (Report.tracingPaired). */
export interface PairedReport {
  /** The mode it ran under (`tracing`, `tracing=N`) and the nodes' --workers. */
  mode: string;
  workers: number;
  rate: number;
  /** Seconds per window: settling (not measured) and measured. */
  settleS: number;
  measureS: number;
  blocks: number;
  confidence: number;
  windows: WindowFigures[];
  nodes: PairedNode[];
  /** The same figures for each node's threads by kind (`node A main`, `node A v8`, ...): where a Δ goes. */
  threads?: PairedNode[];
  /** Failed calls per condition, over every window (lead windows included). */
  errors: Record<Condition, number>;
  /** Calls sent per condition, over every window. */
  sent: Record<Condition, number>;
  spansExported: number | null;
  spansDropped: number | null;
  /** The machine's load average (1 min) as the windows began and as they ended. */
  loadAvg: [number, number];
  /** The generator's latency (from the send) over the measured parts, ms: sampled, and unsampled (U and C together). */
  latencyMs?: { sampled: { p50: number; p99: number } | null; unsampled: { p50: number; p99: number } | null };
}

/**
 * The app behind node B does the same work whichever the condition (it gets a traceparent
 * either way): its Δ is a second floor, a role tracing cannot move. Reported, never checked.
 */
export const NEGATIVE_CONTROL = 'app';

/** Issue 12's target for tracing at 100%, µs of CPU per call per node. */
export const PAIRED_TARGET_US = 30;

const f = (n: number | null | undefined, digits = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));
const signed = (n: number | null | undefined, digits = 1): string => (n === null || n === undefined || !Number.isFinite(n) ? '—' : `${n >= 0 ? '+' : ''}${n.toFixed(digits)}`);

/** "median [low, high]" of an interval, with its coverage. */
export function intervalText(ci: MedianInterval | null): string {
  if (ci === null) return '—';
  const bounds = ci.low === null || ci.high === null ? 'no interval (too few blocks)' : `[${signed(ci.low)}, ${signed(ci.high)}]`;
  return `${signed(ci.median)} ${bounds}`;
}

/** The checks a paired run settles: each node's traced delta against the target, and errors 0 under every condition. */
export function pairedChecks(p: PairedReport): Check[] {
  const out: Check[] = [];
  for (const n of p.nodes.filter((x) => x.role !== NEGATIVE_CONTROL)) {
    const v = verdict(n.tracedCi, PAIRED_TARGET_US);
    out.push({
      what: `${p.mode} --paired: ${n.role}'s CPU per call, sampled − unsampled (median of ${n.traced.length} blocks, ${pct(n.tracedCi)} interval; A/A floor ${intervalText(n.controlCi)})`,
      target: `≤ ${PAIRED_TARGET_US} µs`,
      measured: `${intervalText(n.tracedCi)} µs`,
      pass: v === 'met' ? true : v === 'not met' ? false : null,
      ...(v === 'not settled' ? { note: 'not settled' } : {}),
    });
  }
  const e = p.errors;
  out.push({ what: `${p.mode} --paired: errors per condition (sampled / unsampled / control)`, target: '0 / 0 / 0', measured: `${e.sampled} / ${e.unsampled} / ${e.control}`, pass: e.sampled === 0 && e.unsampled === 0 && e.control === 0 });
  return out;
}

function pct(ci: MedianInterval | null): string {
  return ci === null || ci.coverage === 0 ? 'no' : `${(ci.coverage * 100).toFixed(1)}%`;
}

/** The report's section for one paired run. */
export function pairedMarkdown(p: PairedReport, hooks: TracingCost | null | undefined): string[] {
  const out: string[] = [];
  out.push(`### Paired: ${p.mode}, one pair of nodes, sampled against unsampled windows`);
  out.push('');
  out.push(
    `One pair of nodes with tracing at 100% (parent-based); every request carries a fresh \`traceparent\`, sampled (\`-01\`) or unsampled (\`-00\`) by window. ` +
      `${p.blocks} blocks of six windows (A B C C B A; B sampled, A and C unsampled, A and C swapping places every other block), each window ${p.settleS} s settling + ${p.measureS} s measured, at ${p.rate}/s, ` +
      `after two lead windows that are not analysed. CPU per call per node from schedstat (ns) at each measured part's start and end, over the calls completed in it. ` +
      `Per block: Δ = mean of its two sampled windows − mean of its four unsampled ones (A and C); A/A = mean of its two C windows − of its two A windows (all unsampled: the method's floor, uncorrelated with Δ and a little noisier). ` +
      `Median over the blocks, with the order-statistics interval for the median (distribution-free; its exact coverage given).`,
  );
  out.push('');
  out.push('| node | Δ sampled − unsampled µs/call, median [interval] | A/A floor, median [interval] | coverage | Δ per block | A/A per block | µs/call per window: sampled / unsampled / control (min–median–max) | verdict (≤ 30 µs) |');
  out.push('| --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const n of p.nodes) {
    const w = (c: Condition): string => {
      const x = n.windows[c];
      return x === null ? '—' : `${f(x.min, 0)}–${f(x.median, 0)}–${f(x.max, 0)}`;
    };
    const app = n.role === NEGATIVE_CONTROL;
    out.push(
      `| ${app ? 'app (no tracing work: should be 0)' : n.role} | ${intervalText(n.tracedCi)} | ${intervalText(n.controlCi)} | ${pct(n.tracedCi)} | ${n.traced.map((x) => signed(x, 0)).join(', ')} | ${n.control.map((x) => signed(x, 0)).join(', ')} | ` +
        `${w('sampled')} / ${w('unsampled')} / ${w('control')} | ${app ? '—' : verdict(n.tracedCi, PAIRED_TARGET_US)} |`,
    );
  }
  out.push('');
  if (p.threads !== undefined && p.threads.length > 0) {
    out.push('Where it goes: the same Δ for each node\'s threads by kind (main: the event loop; v8: V8\'s GC and compiler threads; libuv: its pool; other: the rest), from each thread\'s schedstat:');
    out.push('');
    out.push('| threads | Δ sampled − unsampled µs/call, median [interval] | A/A floor, median [interval] | unsampled µs/call (median window) |');
    out.push('| --- | --- | --- | --- |');
    // a kind of thread that never ran (no libuv pool on this path) has no row
    for (const t of p.threads.filter((x) => (x.windows.sampled?.max ?? 0) > 0 || (x.windows.unsampled?.max ?? 0) > 0)) out.push(`| ${t.role} | ${intervalText(t.tracedCi)} | ${intervalText(t.controlCi)} | ${f(t.windows.unsampled?.median)} |`);
    out.push('');
  }
  const e = p.errors;
  const others = p.windows.map((x) => x.otherVcpu).filter((x): x is number => x !== null).sort((x, y) => x - y);
  const otherText = others.length === 0 ? 'unknown' : `median ${f(others[Math.floor((others.length - 1) / 2)], 2)}, most ${f(others[others.length - 1], 2)} vCPU`;
  out.push(`- Calls sent (sampled / unsampled / control): ${p.sent.sampled} / ${p.sent.unsampled} / ${p.sent.control}; errors ${e.sampled} / ${e.unsampled} / ${e.control}.`);
  const foreign = p.windows.reduce((t, w) => t + w.foreign, 0);
  const measured = p.windows.reduce((t, w) => t + w.calls, 0);
  const mixed = mixedBlocks(p.windows);
  out.push(
    `- Calls completed in the measured parts: ${measured}, of which ${foreign} were sent in an earlier window` +
      (mixed.length > 0
        ? ` (the nodes lagged by more than the settling time): ${mixed.length} of ${p.blocks} blocks had a window where they were more than ${MAX_FOREIGN_SHARE * 100}% of its calls, mixing conditions, and are left out (blocks ${mixed.map((b) => b + 1).join(', ')}).`
        : '.'),
  );
  out.push(`- Spans exported ${p.spansExported ?? '—'}, dropped ${p.spansDropped ?? '—'}.`);
  if (p.latencyMs !== undefined) {
    const l = (x: { p50: number; p99: number } | null): string => (x === null ? '—' : `p50 ${x.p50.toFixed(2)}, p99 ${x.p99.toFixed(2)} ms`);
    out.push(`- Latency from the send, measured parts: sampled ${l(p.latencyMs.sampled)}; unsampled ${l(p.latencyMs.unsampled)}.`);
  }
  out.push(`- Load average (1 min) ${p.loadAvg[0].toFixed(2)} as the windows began, ${p.loadAvg[1].toFixed(2)} as they ended; other processes per window: ${otherText}.`);
  // the hooks' cost for calls whose parent is unsampled (tracing at 100%), else their 1% figure (99% of those calls are unsampled)
  const unsampled = hooks?.figures.find((h) => h.mode === 'unsampled');
  const onePct = hooks?.figures.find((h) => h.mode === '1%');
  const unsampledBound = unsampled !== undefined
    ? `${f(unsampled.nodeAUs, 2)} µs on node A and ${f(unsampled.nodeBUs, 2)} µs on node B (the hooks' isolated figure above for calls whose parent is unsampled)`
    : onePct === undefined ? 'the hooks\' isolated 1% figure' : `${f(Math.max(onePct.nodeAUs, onePct.nodeBUs), 2)} µs (the hooks' isolated 1% figure above, 99% of whose calls are unsampled)`;
  out.push(
    `- What this does not include: an unsampled call with tracing on against tracing off in the configuration, which the isolated hooks bound at ${unsampledBound}. ` +
      `Tracing at 100% against off = the Δ above + at most that.`,
  );
  out.push('');
  return out;
}
