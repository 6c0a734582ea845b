/**
 * The shape of a benchmark report (the JSON file `bench/run.ts` writes) and its markdown
 * rendering. Latencies are in ms here (the generator's µs divided by 1000); CPU in seconds
 * and µs; memory in MB.
 */
import type { RunResult, SearchResult } from './load.ts';

export interface ProcessCost {
  /** A (ingress, caller side), B (the app's node), app, generator. */
  role: string;
  pid: number;
  /** CPU used during the measured phase, s. */
  cpuS: number | null;
  /** CPU seconds per 1000 requests = vCPU per 1000 requests/s. */
  cpuSPer1000: number | null;
  /** The same figure as µs of CPU per request. */
  cpuUsPerRequest: number | null;
  /** RSS after start, before any load, MB. */
  rssIdleMB: number | null;
  /** Largest RSS sampled during the measured phase, MB. */
  rssLoadMB: number | null;
  /** VmHWM right after the measured phase, MB. */
  peakMB: number | null;
}

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export type PathApi = 'http' | 'grpc' | 'actors';

export interface PathReport {
  /** baseline, workers, inline, actors-baseline, actors, grpc, ... */
  name: string;
  /**
   * What the path calls: `http` (service invocation over the HTTP API, and the baseline),
   * `grpc` (InvokeService over the gRPC API), `actors` (actor method calls over the HTTP API,
   * and their own baseline). Absent (reports before these paths existed): `http`.
   */
  api?: PathApi;
  /** The name of the path `addedMs` is measured against. Absent: `baseline`. */
  baseline?: string;
  /** `--workers` given to both nodes (null for the baseline). */
  workers: number | null;
  url: string;
  run: RunResult;
  latencyMs: Latency;
  /** weft − its baseline at each percentile, ms (null for a baseline, or when its baseline was not measured). */
  addedMs: Latency | null;
  costs: ProcessCost[];
  max: { run: RunResult; costs: ProcessCost[] } | null;
  search: SearchResult | null;
  /** Average CPU used by processes outside this benchmark during the measured phase, vCPU. */
  otherVcpu: number | null;
  /** Average CPU stolen by the hypervisor during the measured phase, vCPU. */
  stealVcpu: number | null;
}

export interface Report {
  version: 1;
  startedAt: string;
  machine: { cpuModel: string; cores: number; platform: string; loadAvg: number[] };
  node: string;
  commit: { sha: string; dirty: boolean };
  settings: Record<string, unknown>;
  sharing: string;
  paths: PathReport[];
  checks: Check[];
  failures: string[];
}

export interface Check {
  what: string;
  target: string;
  measured: string;
  pass: boolean | null;
}

const f = (n: number | null | undefined, digits = 2): string => (n === null || n === undefined || !Number.isFinite(n) ? '—' : n.toFixed(digits));

export function toLatency(us: { p50: number; p90: number; p99: number; p999: number; max: number }): Latency {
  return { p50: us.p50 / 1000, p90: us.p90 / 1000, p99: us.p99 / 1000, p999: us.p999 / 1000, max: us.max / 1000 };
}

export function added(weft: Latency, base: Latency): Latency {
  return { p50: weft.p50 - base.p50, p90: weft.p90 - base.p90, p99: weft.p99 - base.p99, p999: weft.p999 - base.p999, max: weft.max - base.max };
}

function errorText(r: RunResult): string {
  const e = r.errors;
  if (e.total === 0) return '0';
  const parts: string[] = [];
  for (const [status, n] of Object.entries(e.status)) parts.push(`${n}×${status}`);
  if (e.connection) parts.push(`${e.connection} conn`);
  if (e.timeout) parts.push(`${e.timeout} timeout`);
  if (e.dropped) parts.push(`${e.dropped} dropped`);
  if (e.other) parts.push(`${e.other} other`);
  // The codes say what the kinds do not (a gRPC status, an undici error code).
  const codes = Object.entries(e.codes ?? {});
  if (codes.length > 0) parts.push(`codes: ${codes.map(([code, n]) => `${n}×${code}`).join(' ')}`);
  return `**${e.total}** (${parts.join(', ')})`;
}

export function toMarkdown(r: Report): string {
  const s = r.settings;
  const out: string[] = [];
  out.push(`# weft benchmark, ${r.startedAt}`);
  out.push('');
  out.push(`- machine: ${r.machine.cpuModel}, ${r.machine.cores} cores, ${r.machine.platform}; load average before: ${r.machine.loadAvg.map((x) => x.toFixed(2)).join(' ')}`);
  out.push(`- Node ${r.node}; weft commit ${r.commit.sha}${r.commit.dirty ? ' (with uncommitted changes)' : ''}`);
  out.push(
    `- load: ${s['rate']} requests/s open loop (latency from the scheduled send time, paced by ${s['pacer'] === 'timer' ? "Node's timers" : 'a thread'}), ${s['connections']} connections, ${s['bodyBytes']} B ${s['method']} body, ` +
      `${s['durationS']} s after ${s['warmupS']} s of warm-up at ${s['warmupRate']}/s; max rate: closed loop, ${s['maxConnections']} connections, ${s['maxDurationS']} s`,
  );
  if (r.paths.some((p) => apiOf(p) === 'http')) {
    out.push('- path: generator → node A (`loadgen`) HTTP API → node B → echo app `/test`; baseline: generator → echo app directly');
  }
  const ids = typeof s['ids'] === 'number' ? s['ids'] : 1000;
  if (r.paths.some((p) => apiOf(p) === 'actors')) {
    out.push(
      `- actors: generator → node A \`PUT /v1.0/actors/Counter/bench-{id}/method/get\` (ids 0 … ${ids - 1} in turn, the same body) → node B, the owner → actor app ` +
        `(\`actorapp\`, examples/actor-app.ts); its baseline, actors-baseline: generator → the actor app's \`PUT /actors/Counter/bench-{id}/method/get\` directly`,
    );
  }
  if (r.paths.some((p) => apiOf(p) === 'grpc')) {
    out.push(
      `- grpc: generator (grpc-js, a pre-encoded InvokeServiceRequest, ${s['connections']} channels) → node A's gRPC API \`InvokeService\` → node B → echo app \`/test\`; ` +
        `compared with the HTTP baseline (the echo app speaks HTTP only), so its added latency also holds the difference between the generator's gRPC client and its HTTP one`,
    );
  }
  out.push(`- TLS between the nodes: ${s['mtls'] ? 'mTLS' : 'off'}`);
  out.push(`- sharing the cores: ${r.sharing}`);
  out.push('');

  out.push(`## Latency at ${s['rate']} requests/s (ms)`);
  out.push('');
  out.push('| path | p50 | p90 | p99 | p99.9 | max | achieved/s | errors | generator lag p50 / p99 |');
  out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |');
  for (const p of r.paths) {
    const l = p.latencyMs;
    const lag = p.run.sendLagUs;
    out.push(
      `| ${p.name} | ${f(l.p50)} | ${f(l.p90)} | ${f(l.p99)} | ${f(l.p999)} | ${f(l.max)} | ${f(p.run.achievedRps, 0)} | ${errorText(p.run)} | ${lag ? `${f(lag.p50 / 1000)} / ${f(lag.p99 / 1000)}` : '—'} |`,
    );
  }
  out.push('');

  const weft = r.paths.filter((p) => p.addedMs !== null);
  if (weft.length > 0) {
    out.push('## Added latency: weft − baseline (ms) and ratio to the baseline');
    out.push('');
    out.push('| path | added p50 | added p90 | added p99 | added p99.9 | p50 ratio | p99 ratio | baseline |');
    out.push('| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const p of weft) {
      const a = p.addedMs!;
      const base = r.paths.find((x) => x.name === baselineOf(p));
      const ratio = (x: number, y: number | undefined): string => (y && y > 0 ? `${(x / y).toFixed(1)}×` : '—');
      out.push(
        `| ${p.name} | ${f(a.p50)} | ${f(a.p90)} | ${f(a.p99)} | ${f(a.p999)} | ${ratio(p.latencyMs.p50, base?.latencyMs.p50)} | ${ratio(p.latencyMs.p99, base?.latencyMs.p99)} | ${baselineOf(p)} |`,
      );
    }
    out.push('');
  }

  out.push('## Cost per process during the measured phase');
  out.push('');
  out.push('CPU s per 1000 requests equals vCPU per 1000 requests/s. RSS: idle after start, largest sampled under load, VmHWM after the phase.');
  out.push('');
  out.push('| path | process | CPU s / 1000 req | µs CPU / req | RSS idle MB | RSS load MB | peak MB |');
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const p of r.paths) {
    for (const c of p.costs) {
      out.push(`| ${p.name} | ${c.role} | ${f(c.cpuSPer1000, 3)} | ${f(c.cpuUsPerRequest, 0)} | ${f(c.rssIdleMB, 0)} | ${f(c.rssLoadMB, 0)} | ${f(c.peakMB, 0)} |`);
    }
  }
  out.push('');

  const withMax = r.paths.filter((p) => p.max !== null || p.search !== null);
  if (withMax.length > 0) {
    out.push('## Throughput');
    out.push('');
    out.push(`| path | max requests/s (closed loop) | p99 at max, ms | errors at max | µs CPU / req at max (per process) | max rate with p99 < ${f((withMax[0]?.search?.p99LimitUs ?? 10_000) / 1000, 0)} ms |`);
    out.push('| --- | ---: | ---: | --- | --- | ---: |');
    for (const p of withMax) {
      const m = p.max;
      const cpu = m ? m.costs.map((c) => `${c.role} ${f(c.cpuUsPerRequest, 0)}`).join(', ') : '—';
      const search = p.search ? `${p.search.rate}${p.search.failedAt !== null ? ` (${p.search.failedAt} failed)` : ''}` : '—';
      out.push(`| ${p.name} | ${m ? f(m.run.achievedRps, 0) : '—'} | ${m ? f(m.run.latencyUs.p99 / 1000) : '—'} | ${m ? errorText(m.run) : '—'} | ${cpu} | ${search} |`);
    }
    out.push('');
  }

  if (r.checks.length > 0) {
    out.push('## Against the targets in perf.md');
    out.push('');
    out.push('| what | target | measured | |');
    out.push('| --- | --- | --- | --- |');
    for (const c of r.checks) out.push(`| ${c.what} | ${c.target} | ${c.measured} | ${c.pass === null ? 'n/a' : c.pass ? 'met' : '**not met**'} |`);
    out.push('');
  }
  if (r.failures.length > 0) {
    out.push('## Failures');
    out.push('');
    for (const failure of r.failures) out.push(`- ${failure}`);
    out.push('');
  }
  return out.join('\n');
}

export function apiOf(p: PathReport): PathApi {
  return p.api ?? 'http';
}

/** The name of the path a path's added latency is measured against. */
export function baselineOf(p: PathReport): string {
  return p.baseline ?? 'baseline';
}

/**
 * Added latency targets, ms: perf.md's for the HTTP API, and "within 1.25× of those" for the
 * gRPC API and actor calls.
 */
const ADDED_TARGETS: Record<PathApi, { p50: [number, string]; p90: [number, string]; p99: [number, string] }> = {
  http: { p50: [0.5, '≤ 0.5 ms'], p90: [1.0, '≤ 1.0 ms'], p99: [2.0, '≤ 2.0 ms'] },
  grpc: { p50: [0.625, '≤ 0.625 ms (1.25× HTTP)'], p90: [1.25, '≤ 1.25 ms (1.25× HTTP)'], p99: [2.5, '≤ 2.5 ms (1.25× HTTP)'] },
  actors: { p50: [0.625, '≤ 0.625 ms (1.25× HTTP)'], p90: [1.25, '≤ 1.25 ms (1.25× HTTP)'], p99: [2.5, '≤ 2.5 ms (1.25× HTTP)'] },
};

/** The perf.md targets that one run can check. Absolute figures depend on the machine. */
export function checks(paths: PathReport[], rate: number, mtls: boolean): Check[] {
  const out: Check[] = [];
  const ms = (n: number): string => `${n.toFixed(2)} ms`;
  for (const p of paths) {
    if (p.workers === null) continue;
    const a = p.addedMs;
    const note = mtls ? '' : ' (mTLS off)';
    const t = ADDED_TARGETS[apiOf(p)];
    if (a !== null) {
      out.push({ what: `${p.name}: added p50${note}`, target: t.p50[1], measured: ms(a.p50), pass: a.p50 <= t.p50[0] });
      out.push({ what: `${p.name}: added p90${note}`, target: t.p90[1], measured: ms(a.p90), pass: a.p90 <= t.p90[0] });
      out.push({ what: `${p.name}: added p99${note}`, target: t.p99[1], measured: ms(a.p99), pass: a.p99 <= t.p99[0] });
    }
    out.push({ what: `${p.name}: errors`, target: '0', measured: String(p.run.errors.total), pass: p.run.errors.total === 0 });
    for (const c of p.costs) {
      if (c.role !== 'node A' && c.role !== 'node B') continue;
      if (c.cpuSPer1000 !== null) {
        out.push({ what: `${p.name}: ${c.role} vCPU per 1000 req/s`, target: '≤ 0.15', measured: c.cpuSPer1000.toFixed(3), pass: c.cpuSPer1000 <= 0.15 });
      }
      if (c.rssIdleMB !== null) out.push({ what: `${p.name}: ${c.role} RSS idle`, target: '≤ 90 MB', measured: `${c.rssIdleMB.toFixed(0)} MB`, pass: c.rssIdleMB <= 90 });
      const load = Math.max(c.rssLoadMB ?? 0, c.peakMB ?? 0);
      if (load > 0) out.push({ what: `${p.name}: ${c.role} RSS under ${rate}/s`, target: '≤ 120 MB', measured: `${load.toFixed(0)} MB`, pass: load <= 120 });
    }
    // perf.md states the throughput targets for the two-node HTTP path only.
    if (apiOf(p) !== 'http') continue;
    if (p.max) {
      out.push({ what: `${p.name}: max rate, 64 connections`, target: '≥ 10,000/s', measured: `${p.max.run.achievedRps.toFixed(0)}/s`, pass: p.max.run.achievedRps >= 10_000 });
      for (const c of p.max.costs) {
        if ((c.role === 'node A' || c.role === 'node B') && c.cpuUsPerRequest !== null) {
          out.push({ what: `${p.name}: ${c.role} CPU per request at saturation`, target: '≤ 100 µs', measured: `${c.cpuUsPerRequest.toFixed(0)} µs`, pass: c.cpuUsPerRequest <= 100 });
        }
      }
    }
    if (p.search) {
      out.push({ what: `${p.name}: max rate with p99 < 10 ms`, target: '≥ 5,000/s', measured: `${p.search.rate}/s`, pass: p.search.rate >= 5000 });
    }
  }
  // The pool's price: the same path with and without workers, in the same run.
  const pooled = paths.find((p) => apiOf(p) === 'http' && p.workers !== null && p.workers > 0);
  const inline = paths.find((p) => apiOf(p) === 'http' && p.workers === 0);
  if (pooled && inline) {
    const cpuA = (p: PathReport): number | null => p.costs.find((c) => c.role === 'node A')?.cpuUsPerRequest ?? null;
    const a = cpuA(pooled);
    const b = cpuA(inline);
    if (a !== null && b !== null) {
      out.push({ what: 'worker pool: extra CPU per request in node A', target: '≤ 40 µs', measured: `${(a - b).toFixed(0)} µs`, pass: a - b <= 40 });
    }
    const dp50 = pooled.latencyMs.p50 - inline.latencyMs.p50;
    out.push({ what: 'worker pool: extra p50', target: '≤ 0.2 ms', measured: ms(dp50), pass: dp50 <= 0.2 });
  }
  return out;
}
