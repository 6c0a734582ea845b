/**
 * A weft node's event loop and garbage collector over a measured phase, read from its own
 * /metrics (prom-client's default metrics, which every node exports with the `weft_` prefix):
 *
 * - event-loop delay: `weft_nodejs_eventloop_lag_*_seconds`, from `monitorEventLoopDelay`. prom-client
 *   resets that histogram each time /metrics is read, so a read at the start of the phase
 *   empties it and the read at the end gives the phase's own percentiles. Its samples are the
 *   time between two ticks of a 10 ms timer (prom-client's default precision, which weft keeps),
 *   so the delay is what a sample took beyond those 10 ms;
 * - GC: `weft_nodejs_gc_duration_seconds_{count,sum}` by kind (minor: scavenges; major:
 *   mark-compact; incremental: marking steps; weakcb: weak callbacks), as differences between
 *   the two reads. These are pauses of the main thread; V8's helper threads' share of GC shows
 *   in the report's per-thread CPU (`v8`);
 * - the time a call spends inside the node, from the node's own latency histograms, as bucket
 *   differences between the two reads: on the calling node `…_res_recv_latency_ms` (its HTTP or
 *   gRPC handler to the call's outcome: routing, the peer hop, the far node and its app), on
 *   the app's node `…_res_sent_latency_ms` (its app call). Set beside the generator's latency,
 *   they say whether a slow request was slow inside the nodes or waited outside them.
 */

/** The interval of the timer `monitorEventLoopDelay` samples with in a node (prom-client's default), ms. */
export const LOOP_SAMPLE_MS = 10;

/** Event-loop delay percentiles over the phase, ms: how late the sampling timer ran. */
export interface LoopDelay {
  p50: number;
  p90: number;
  p99: number;
  max: number;
  mean: number;
}

/** One GC kind over the phase: how many pauses, and their total, ms. */
export interface GcKind {
  count: number;
  totalMs: number;
}

export interface NodeRuntimeStats {
  loopDelayMs: LoopDelay | null;
  gc: Record<string, GcKind>;
  /** All GC pauses together as a share of the phase's wall time (0..1). */
  gcShare: number | null;
  /** The node's own latency histograms over the phase: upper bounds of their buckets, ms. */
  calls: NodeCallTimes[];
}

/** Calls a node timed over the phase, by one of its histograms: the bucket bound each quantile falls in. */
export interface NodeCallTimes {
  /** `res_recv`: a local app's call, handler to outcome; `res_sent`: the app call for a remote caller. */
  metric: 'res_recv' | 'res_sent';
  count: number;
  /** Each quantile is at most this many ms (the upper bound of its bucket; Infinity past the last). */
  p50: number;
  p90: number;
  p99: number;
}

const CALL_METRICS = ['res_recv', 'res_sent'] as const;

/** What one read of /metrics says: the event-loop gauges and the GC histogram's totals by kind. */
export interface RuntimeSample {
  lag: Partial<Record<'min' | 'max' | 'mean' | 'p50' | 'p90' | 'p99', number>>;
  gc: Record<string, { count: number; sumS: number }>;
  /** Cumulative bucket counts by upper bound (ms), summed over label sets, per call histogram. */
  buckets: Record<(typeof CALL_METRICS)[number], Map<number, number>>;
}

const LAG = /^weft_nodejs_eventloop_lag_(min|max|mean|p50|p90|p99)_seconds(?:\{[^}]*\})? ([0-9.eE+-]+)$/;
const GC = /^weft_nodejs_gc_duration_seconds_(count|sum)\{([^}]*)\} ([0-9.eE+-]+)$/;
const BUCKET = /^weft_service_invocation_(res_recv|res_sent)_latency_ms_bucket\{([^}]*)\} ([0-9.eE+-]+)$/;

/** Reads the event-loop and GC lines out of a Prometheus text exposition. */
export function parseRuntime(text: string): RuntimeSample {
  const out: RuntimeSample = { lag: {}, gc: {}, buckets: { res_recv: new Map(), res_sent: new Map() } };
  for (const line of text.split('\n')) {
    const bucket = line.startsWith('weft_service_invocation_') ? BUCKET.exec(line) : null;
    if (bucket !== null) {
      const le = /(?:^|,)le="([^"]*)"/.exec(bucket[2] as string)?.[1];
      if (le === undefined) continue;
      const bound = le === '+Inf' ? Infinity : Number(le);
      const counts = out.buckets[bucket[1] as (typeof CALL_METRICS)[number]];
      counts.set(bound, (counts.get(bound) ?? 0) + Number(bucket[3]));
      continue;
    }
    if (!line.startsWith('weft_nodejs_')) continue;
    const lag = LAG.exec(line);
    if (lag !== null) {
      out.lag[lag[1] as keyof RuntimeSample['lag']] = Number(lag[2]);
      continue;
    }
    const gc = GC.exec(line);
    if (gc === null) continue;
    const kind = /(?:^|,)kind="([^"]*)"/.exec(gc[2] as string)?.[1];
    if (kind === undefined) continue;
    const entry = (out.gc[kind] ??= { count: 0, sumS: 0 });
    if (gc[1] === 'count') entry.count += Number(gc[3]);
    else entry.sumS += Number(gc[3]);
  }
  return out;
}

/** The phase between two reads: `after`'s event-loop percentiles, and the GC totals' differences. */
export function runtimeOver(before: RuntimeSample, after: RuntimeSample, wallS: number): NodeRuntimeStats {
  const l = after.lag;
  const ms = (s: number | undefined): number => Math.max(0, (s ?? 0) * 1000 - LOOP_SAMPLE_MS);
  const loopDelayMs = l.p99 === undefined ? null : { p50: ms(l.p50), p90: ms(l.p90), p99: ms(l.p99), max: ms(l.max), mean: ms(l.mean) };
  const gc: Record<string, GcKind> = {};
  let totalS = 0;
  for (const [kind, a] of Object.entries(after.gc)) {
    const b = before.gc[kind] ?? { count: 0, sumS: 0 };
    const count = a.count - b.count;
    const sumS = Math.max(0, a.sumS - b.sumS);
    if (count <= 0) continue;
    gc[kind] = { count, totalMs: sumS * 1000 };
    totalS += sumS;
  }
  const calls: NodeCallTimes[] = [];
  for (const metric of CALL_METRICS) {
    const was = before.buckets[metric];
    const bounds = [...after.buckets[metric].keys()].sort((x, y) => x - y);
    const counts = bounds.map((b) => (after.buckets[metric].get(b) ?? 0) - (was.get(b) ?? 0));
    const count = counts.at(-1) ?? 0;
    if (count <= 0) continue;
    // cumulative buckets: the first bound whose count reaches the quantile's rank
    const at = (q: number): number => bounds[counts.findIndex((c) => c >= q * count)] ?? Infinity;
    calls.push({ metric, count, p50: at(0.5), p90: at(0.9), p99: at(0.99) });
  }
  return { loopDelayMs, gc, gcShare: wallS > 0 ? totalS / wallS : null, calls };
}

/** One read of a node's /metrics (which also restarts its event-loop delay histogram). */
export async function sampleRuntime(metricsPort: number): Promise<RuntimeSample> {
  const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  if (!res.ok) throw new Error(`/metrics on :${metricsPort} answered ${res.status}`);
  return parseRuntime(await res.text());
}
