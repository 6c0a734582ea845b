/**
 * The shape of a benchmark report (the JSON file `bench/run.ts` writes) and its markdown
 * rendering. Latencies are in ms here (the generator's µs divided by 1000); CPU in seconds
 * and µs; memory in MB.
 */
import type { AllocSummary } from './alloc-profile.ts';
import type { NodeRuntimeStats } from './node-runtime.ts';
import type { RunResult, SearchResult } from './load.ts';
import { pairedChecks, pairedMarkdown, type PairedReport } from './paired.ts';

export interface ProcessCost {
  /** A (ingress, caller side), B (the app's node), app, generator. */
  role: string;
  pid: number;
  /** CPU used during the measured phase, s. */
  cpuS: number | null;
  /** Time the process's threads spent runnable, waiting for a core, per request, µs (absent: not measured). */
  runQueueUsPerRequest?: number | null;
  /** CPU seconds per 1000 requests = vCPU per 1000 requests/s. */
  cpuSPer1000: number | null;
  /** The same figure as µs of CPU per request. */
  cpuUsPerRequest: number | null;
  /**
   * CPU of the main thread alone (for a weft node, its event loop; the rest is worker threads,
   * libuv's pool and V8's helpers), s and µs per request. Absent in older reports.
   */
  mainCpuS?: number | null;
  mainCpuUsPerRequest?: number | null;
  /**
   * µs of CPU per request by thread: `main`, `workers` (worker threads: weft's pool), `v8` (V8's
   * GC and compiler threads), `libuv` (libuv's pool: DNS, file system, some crypto), `other`.
   * Threads that exited during the phase are not counted. Absent in older reports.
   */
  threadUsPerRequest?: Record<'main' | 'workers' | 'v8' | 'libuv' | 'other', number> | null;
  /** RSS after start, before any load, MB. */
  rssIdleMB: number | null;
  /** Largest RSS sampled during the measured phase, MB. */
  rssLoadMB: number | null;
  /** VmHWM right after the measured phase, MB. */
  peakMB: number | null;
}

/** One node's event loop and GC over the measured phase, from its /metrics. */
export interface NodeRuntime extends NodeRuntimeStats {
  role: string;
}

/** Bytes one node's main thread allocated per call over the measured phase, sampled. */
export interface NodeAlloc extends AllocSummary {
  role: string;
}

/** Self time by stage of one node's threads over the measured phase, from V8 CPU profiles. */
export interface NodeProfile {
  role: string;
  /** The directory holding the .cpuprofile files. */
  dir: string;
  /** The main thread's busy ms over the phase, and its stages as shares of that. */
  mainBusyMs: number;
  main: Array<{ stage: string; share: number }>;
  /** All worker threads together (empty without --workers). */
  workersBusyMs: number;
  workers: Array<{ stage: string; share: number }>;
}

export interface Latency {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export type PathApi = 'http' | 'grpc' | 'actors' | 'grpc-app' | 'grpc-proxy';

export interface PathReport {
  /** baseline, workers, inline, actors-baseline, actors, grpc, ... */
  name: string;
  /**
   * What the path calls: `http` (service invocation over the HTTP API, and the baseline),
   * `grpc` (InvokeService over the gRPC API), `actors` (actor method calls over the HTTP API,
   * and their own baseline), `grpc-app` (InvokeService to an app on app protocol grpc, and its
   * own baseline), `grpc-proxy` (proxy mode, and its own baseline). Absent (reports before these
   * paths existed): `http`.
   */
  api?: PathApi;
  /** The name of the path `addedMs` is measured against. Absent: `baseline`. */
  baseline?: string;
  /** `--workers` given to both nodes (null for a baseline and for the nginx pair). */
  workers: number | null;
  /**
   * Set on a pair of proxies weft is compared with: the nginx pair (bench/nginx.ts) or the Node
   * pair (`node`, bench/node-pair.ts). Absent on baselines and weft paths.
   */
  proxy?: Proxy;
  /** The hop between the two proxies (weft nodes or nginx): `mtls` or `plain`. Absent on baselines and older reports. */
  tls?: 'mtls' | 'plain';
  url: string;
  run: RunResult;
  latencyMs: Latency;
  /** weft − its baseline at each percentile, ms (null for a baseline, or when its baseline was not measured). */
  addedMs: Latency | null;
  costs: ProcessCost[];
  /** The measured phase on the monotonic clock (µs): the window --profile reads profiles over. */
  measuredUs?: { fromUs: number; toUs: number };
  /** With --profile: each node's CPU profiles over the measured phase, by stage (bench/profile-summary.ts). */
  profiles?: NodeProfile[];
  /** Each weft node's event-loop delay and GC pauses over the measured phase (bench/node-runtime.ts). */
  runtime?: NodeRuntime[];
  /** With --alloc: what each weft node's main thread allocated per call over the measured phase (bench/alloc-profile.ts). */
  alloc?: NodeAlloc[];
  max: { run: RunResult; costs: ProcessCost[] } | null;
  search: SearchResult | null;
  /** Average CPU used by processes outside this benchmark during the measured phase, vCPU. */
  otherVcpu: number | null;
  /** Average CPU stolen by the hypervisor during the measured phase, vCPU. */
  stealVcpu: number | null;
  /** A path of the tracing mode: its sampling (null: tracing off) and what the nodes exported. */
  tracing?: {
    ratio: number | null;
    /** The tracing-off path of the same mode, which this one's costs are compared with. */
    tracingOff: string;
    spansExported: number;
    spansDropped: number;
    otlpRequests: number;
    otlpBytes: number;
    /** With --rounds N: every round's figures, in order (this report is the median round's). */
    rounds?: TracingRound[];
  };
}

/** One round of a tracing path (`--rounds`): the three paths are measured in turn, round after round. */
export interface TracingRound {
  nodeAUs: number | null;
  nodeBUs: number | null;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  spansDropped: number;
  otherVcpu: number | null;
}

/** The round with the median CPU per request of both nodes together (the lower middle of an even count). */
export function medianRound(rounds: readonly PathReport[]): PathReport | undefined {
  const cpu = (p: PathReport): number => (cpuOf(p, 'node A') ?? 0) + (cpuOf(p, 'node B') ?? 0);
  const sorted = [...rounds].sort((x, y) => cpu(x) - cpu(y));
  return sorted[Math.floor((sorted.length - 1) / 2)];
}

/** bench/tracing-cost.ts: the tracing hooks' CPU per call per node, measured in isolation. */
export interface TracingCost {
  calls: number;
  figures: Array<{ mode: string; nodeAUs: number; nodeBUs: number }>;
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
  /** With the tracing mode: the hooks' isolated cost. */
  tracingHooks?: TracingCost | null;
  /** With the tracing mode and --paired: one paired run per tracing mode (bench/paired.ts). */
  tracingPaired?: PairedReport[];
  /**
   * Ratios between the pairs: each weft path ÷ the nginx pair and ÷ the Node pair, and the Node
   * pair ÷ the nginx pair, for the pairs that ran (absent: none ran).
   */
  peers?: PeerRatios[];
  checks: Check[];
  failures: string[];
}

export interface Check {
  what: string;
  target: string;
  measured: string;
  pass: boolean | null;
  /** Said instead of "n/a" when pass is null (e.g. "not settled"). */
  note?: string;
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
  if (r.paths.some((p) => apiOf(p) === 'grpc-app')) {
    out.push(
      `- grpc-app: generator (grpc-js, a pre-encoded InvokeServiceRequest) → node A's gRPC API \`InvokeService\` → node B → a gRPC app (examples/grpc-echo-app.ts, app protocol grpc) \`AppCallback/OnInvoke\`; ` +
        `its baseline, grpc-app-baseline: generator → the app's \`OnInvoke\` directly (a pre-encoded InvokeRequest)`,
    );
  }
  if (r.paths.some((p) => apiOf(p) === 'grpc-proxy')) {
    out.push(
      `- grpc-proxy: generator (grpc-js, the raw body as the message) → node A's gRPC port, \`/weft.bench.Echo/Echo\` with \`dapr-app-id: testapp\` (proxy mode) → node B → the gRPC app's own \`Echo\`; ` +
        `its baseline, grpc-proxy-baseline: generator → the app's \`Echo\` directly`,
    );
  }
  if (r.paths.some((p) => p.proxy === 'nginx')) {
    out.push(
      '- nginx: generator → nginx A → nginx B → the same echo app `/test` (bench/nginx.ts): two nginx processes of one worker each (`master_process off`), ' +
        'keepalive upstreams over HTTP/1.1, A → B plaintext (`nginx-plain`) or mTLS (`nginx-mtls`, certificates from weft\'s CA code); measured against the same baseline',
    );
  }
  if (r.paths.some((p) => p.proxy === 'node')) {
    out.push(
      '- Node pair: generator → Node proxy A → Node proxy B → the same echo app `/test` (bench/node-pair.ts, bench/node-proxy.ts): node:http in, one node:http2 session A → B ' +
        '(mTLS, `node-pair-mtls`, or h2c, `node-pair-plain`), an undici Pool to the app; no weft code: the Node floor for this shape; measured against the same baseline',
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
  out.push(
    'CPU s per 1000 requests equals vCPU per 1000 requests/s. Main thread: the CPU of the process\'s main thread alone (a node\'s event loop; ' +
      'the rest is worker threads, libuv\'s pool and V8\'s helpers). RSS: idle after start, largest sampled under load, VmHWM after the phase.',
  );
  out.push('');
  out.push('| path | process | CPU s / 1000 req | µs CPU / req | main thread µs / req | RSS idle MB | RSS load MB | peak MB |');
  out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const p of r.paths) {
    for (const c of p.costs) {
      out.push(
        `| ${p.name} | ${c.role} | ${f(c.cpuSPer1000, 3)} | ${f(c.cpuUsPerRequest, 0)} | ${f(c.mainCpuUsPerRequest, 0)} | ${f(c.rssIdleMB, 0)} | ${f(c.rssLoadMB, 0)} | ${f(c.peakMB, 0)} |`,
      );
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

  const peers = r.peers ?? [];
  if (peers.length > 0) {
    const node = r.paths.some((p) => p.proxy === 'node');
    out.push(node ? '## weft ÷ the nginx pair, weft ÷ the Node pair, the Node pair ÷ nginx, same run' : '## weft ÷ the nginx pair, same run');
    out.push('');
    out.push(
      'Each figure of the path divided by the same figure of the pair it is compared with (1.00× = the same; below 1 is better for latency, CPU and memory, above 1 better for the maximum rate). ' +
        'CPU per request at the measured rate is also the ratio of vCPU per 1000 requests/s. A and B are the first and second proxy.' +
        (node ? ' Against the Node pair (no weft code, Node\'s own transports), a weft path\'s ratio is what weft\'s own code and grpc-js cost; the Node pair against nginx is what the runtime costs.' : ''),
    );
    out.push('');
    out.push('| path | vs | added p50 | added p90 | added p99 | max rps | CPU / req at max A / B | CPU / req at rate A / B | RSS under load A / B |');
    out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
    const x = (n: number | null): string => (n === null ? '—' : `${n.toFixed(2)}×`);
    for (const c of peers) {
      out.push(
        `| ${c.path} | ${c.peer}${c.sameTls ? '' : ' (other TLS)'} | ${x(c.added.p50)} | ${x(c.added.p90)} | ${x(c.added.p99)} | ${x(c.maxRps)} | ` +
          `${x(c.cpuAtMax.a)} / ${x(c.cpuAtMax.b)} | ${x(c.cpuAtRate.a)} / ${x(c.cpuAtRate.b)} | ${x(c.rss.a)} / ${x(c.rss.b)} |`,
      );
    }
    out.push('');
  }

  const byThread = r.paths.filter((p) => (isWeft(p) || p.proxy === 'node') && p.costs.some((c) => c.threadUsPerRequest));
  if (byThread.length > 0) {
    out.push(`## CPU per request by thread, weft nodes${byThread.some((p) => p.proxy === 'node') ? ' and the Node pair' : ''} (µs)`);
    out.push('');
    out.push(
      'At the measured rate. main: the event loop; workers: worker threads (the pool, with --workers); v8: V8\'s garbage-collector and compiler threads; ' +
        'libuv: libuv\'s pool; other: the rest. At saturation when there was a max-rate run, in brackets.',
    );
    out.push('');
    out.push('| path | process | main | workers | v8 | libuv | other | all |');
    out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |');
    for (const p of byThread) {
      for (const c of p.costs) {
        const t = c.threadUsPerRequest;
        if (!t || !/^node(-pair)? [AB]$/.test(c.role)) continue;
        const atMax = p.max?.costs.find((x) => x.role === c.role)?.threadUsPerRequest ?? null;
        const cell = (k: keyof typeof t): string => `${f(t[k], 0)}${atMax ? ` (${f(atMax[k], 0)})` : ''}`;
        out.push(`| ${p.name} | ${c.role} | ${cell('main')} | ${cell('workers')} | ${cell('v8')} | ${cell('libuv')} | ${cell('other')} | ${f(c.cpuUsPerRequest, 0)} |`);
      }
    }
    out.push('');
  }

  const ceilings = r.paths.filter((p) => p.workers !== null || p.proxy !== undefined);
  if (ceilings.some((p) => (p.max?.costs ?? p.costs).some((c) => c.mainCpuUsPerRequest !== undefined && c.mainCpuUsPerRequest !== null))) {
    out.push('## Ceiling per node from its CPU per request');
    out.push('');
    out.push(
      'What one node (or nginx process) would reach with N cores to itself: the lower of 1e6 ÷ main-thread µs per request (the event loop runs on one core) ' +
        'and N × 1e6 ÷ all threads\' µs per request. From the CPU measured at the maximum rate (at the measured rate when there was no max-rate run): an estimate, ' +
        'not a measurement, and one that assumes CPU per request stays as measured.',
    );
    out.push('');
    out.push(`| path | process | µs / req all threads | main thread | main thread share | ${CEILING_CORES.map((n) => `${n} core${n > 1 ? 's' : ''}`).join(' | ')} |`);
    out.push(`| --- | --- | ---: | ---: | ---: | ${CEILING_CORES.map(() => '---:').join(' | ')} |`);
    for (const p of ceilings) {
      for (const c of p.max?.costs ?? p.costs) {
        if (!/^(node|node-pair|nginx) [AB]$/.test(c.role)) continue;
        const share = ratio(c.mainCpuUsPerRequest, c.cpuUsPerRequest);
        const row = CEILING_CORES.map((n) => f(nodeCeiling(c.cpuUsPerRequest, c.mainCpuUsPerRequest, n), 0));
        out.push(`| ${p.name} | ${c.role} | ${f(c.cpuUsPerRequest, 0)} | ${f(c.mainCpuUsPerRequest, 0)} | ${share === null ? '—' : `${(share * 100).toFixed(0)}%`} | ${row.join(' | ')} |`);
      }
    }
    out.push('');
  }

  const profiled = r.paths.filter((p) => (p.profiles ?? []).length > 0);
  if (profiled.length > 0) {
    out.push('## Where the threads\' time went (CPU profiles, measured phase)');
    out.push('');
    out.push(
      'With --profile: V8 CPU profiles of each node, self time charged to the first frame from the leaf up that names a stage ' +
        '(bench/profile-summary.ts), as a share of the thread\'s busy samples. The profiler samples wall time, so a thread descheduled inside a ' +
        'system call (a wake-up of another thread, a socket write) is counted there: read shares, not µs, and take µs from the per-thread CPU above.',
    );
    out.push('');
    out.push('| path | process | thread | busy ms | stages |');
    out.push('| --- | --- | --- | ---: | --- |');
    const stages = (list: NodeProfile['main']): string => list.filter((x) => x.share >= 0.01).slice(0, 8).map((x) => `${x.stage} ${(x.share * 100).toFixed(0)}%`).join('; ');
    for (const p of profiled) {
      for (const n of p.profiles ?? []) {
        out.push(`| ${p.name} | ${n.role} | main | ${n.mainBusyMs.toFixed(0)} | ${stages(n.main)} |`);
        if (n.workersBusyMs > 0) out.push(`| ${p.name} | ${n.role} | workers | ${n.workersBusyMs.toFixed(0)} | ${stages(n.workers)} |`);
      }
    }
    out.push('');
  }

  out.push(...perNodeSection(
    'Waiting for a core (measured phase)',
    'Per request, the time each process\'s threads spent runnable but waiting for a core (the kernel\'s schedstat run-queue time, all ' +
      'threads together) beside the CPU they used. On shared cores this is where a request waits without any process being slow: time ' +
      'that adds to latency, though no event loop is late by more than its own share.',
    ['path', 'process', 'µs CPU / req', 'µs waiting for a core / req'], '| --- | --- | ---: | ---: |',
    r.paths.flatMap((p) => p.costs.flatMap((c) => typeof c.runQueueUsPerRequest !== 'number' ? [] : [
      [p.name, c.role, c.cpuUsPerRequest === null ? '—' : c.cpuUsPerRequest.toFixed(0), c.runQueueUsPerRequest.toFixed(0)],
    ])),
  ));
  out.push(...perNodeSection(
    'Event loop and GC (measured phase)',
    'Each weft node\'s own /metrics, read as the measured phase starts and as it ends: event-loop delay from `monitorEventLoopDelay` ' +
      '(how late its 10 ms timer ran; prom-client restarts it at each read, so these are the phase\'s own), and the main thread\'s GC pauses by kind (minor: scavenges; ' +
      'major: mark-compact; incremental: marking steps). V8\'s helper threads\' GC work is in the per-thread CPU (`v8`).',
    ['path', 'process', 'loop delay p50 / p90 / p99 / max, ms', 'GC pauses (count, total ms)', 'GC share of the phase'], '| --- | --- | --- | --- | ---: |',
    r.paths.flatMap((p) => (p.runtime ?? []).map((n) => {
      const d = n.loopDelayMs;
      const delay = d === null ? '—' : [d.p50, d.p90, d.p99, d.max].map((x) => x.toFixed(1)).join(' / ');
      const kinds = Object.entries(n.gc).sort((a, b) => b[1].totalMs - a[1].totalMs).map(([k, g]) => `${k} ${g.count}, ${g.totalMs.toFixed(0)} ms`).join('; ');
      return [p.name, n.role, delay, kinds === '' ? 'none' : kinds, n.gcShare === null ? '—' : `${(n.gcShare * 100).toFixed(1)}%`];
    })),
  ));
  const bound = (ms: number): string => (ms === Infinity ? '> last bucket' : `≤ ${ms}`);
  out.push(...perNodeSection(
    'Time inside the nodes (their own histograms, measured phase)',
    'The calls each weft node timed itself over the phase, from its latency histograms (bucket bounds, so each figure is "at most"): on the ' +
      'calling node `res_recv`, its handler to the call\'s outcome (routing, the peer hop, the far node and its app); on the app\'s node ' +
      '`res_sent`, its app call. Beside them the generator\'s own latency: what it saw beyond the nodes\' figures was spent outside them ' +
      '(the generator\'s connections, socket buffers, parsing before the handler, writing the answer).',
    ['path', 'process', 'histogram', 'calls', 'p50 ms', 'p90 ms', 'p99 ms', 'generator p50 / p90 / p99 ms'], '| --- | --- | --- | ---: | ---: | ---: | ---: | --- |',
    r.paths.flatMap((p) => (p.runtime ?? []).flatMap((n) => (n.calls ?? []).map((c) => [
      p.name, n.role, c.metric, String(c.count), bound(c.p50), bound(c.p90), bound(c.p99),
      [p.latencyMs.p50, p.latencyMs.p90, p.latencyMs.p99].map((x) => x.toFixed(2)).join(' / '),
    ]))),
  ));
  out.push(...perNodeSection(
    'What a call allocates (sampling heap profiler, measured phase)',
    'With --alloc: V8\'s sampling heap profiler on each weft node\'s main thread, keeping objects the GC has already collected, so the bytes ' +
      'estimate everything allocated during the rate run, divided by its calls. Worker threads are not sampled (compare inline paths). ' +
      'The sampling costs CPU: take CPU and latency from a run without --alloc.',
    ['path', 'process', 'KB per call', 'most allocated by (KB per call)'], '| --- | --- | ---: | --- |',
    r.paths.flatMap((p) => (p.alloc ?? []).map((n) => [
      p.name, n.role, (n.bytesPerCall / 1024).toFixed(1), n.top.slice(0, 6).map((t) => `\`${t.fn}\` ${(t.bytesPerCall / 1024).toFixed(2)}`).join('; '),
    ])),
  ));

  if (r.checks.length > 0) {
    out.push('## Against the targets in perf.md');
    out.push('');
    out.push('| what | target | measured | |');
    out.push('| --- | --- | --- | --- |');
    for (const c of r.checks) out.push(`| ${c.what} | ${c.target} | ${c.measured} | ${c.pass === null ? (c.note ?? 'n/a') : c.pass ? 'met' : '**not met**'} |`);
    out.push('');
  }
  out.push(...tracingSection(r));
  if (r.failures.length > 0) {
    out.push('## Failures');
    out.push('');
    for (const failure of r.failures) out.push(`- ${failure}`);
    out.push('');
  }
  return out.join('\n');
}

const TRACING_TARGETS: Record<string, number> = { off: 2, '1%': 5, '100%': 30 };

/** µs of CPU per request of a node on a path. */
function cpuOf(p: PathReport | undefined, role: string): number | null {
  return p?.costs.find((c) => c.role === role)?.cpuUsPerRequest ?? null;
}

/** A node's largest RSS on a path (sampled under load, or its peak), MB. */
function rssOf(p: PathReport, role: string): number {
  const c = p.costs.find((x) => x.role === role);
  return Math.max(c?.rssLoadMB ?? 0, c?.peakMB ?? 0);
}

function tracingLabel(ratio: number | null): string {
  return ratio === null ? 'off' : `${+(ratio * 100).toFixed(2)}%`;
}

/** The tracing mode's figures: each sampling against tracing off, in the same run. */
function tracingSection(r: Report): string[] {
  const traced = r.paths.filter((p) => p.tracing !== undefined);
  const paired = r.tracingPaired ?? [];
  if (traced.length === 0 && !r.tracingHooks && paired.length === 0) return [];
  const out: string[] = ['## Tracing', ''];
  if (r.tracingHooks) {
    out.push(`The tracing hooks' CPU per call per node, measured in isolation (bench/tracing-cost.ts, ${r.tracingHooks.calls} calls, export to a sink in a process of its own included):`);
    out.push('');
    out.push('| sampling | node A µs/call | node B µs/call | target |');
    out.push('| --- | --- | --- | --- |');
    for (const h of r.tracingHooks.figures) {
      const target = TRACING_TARGETS[h.mode];
      out.push(`| ${h.mode} | ${f(h.nodeAUs)} | ${f(h.nodeBUs)} | ${target === undefined ? '—' : `≤ ${target} µs`} |`);
    }
    out.push('');
  }
  for (const p of paired) out.push(...pairedMarkdown(p, r.tracingHooks));
  if (traced.length > 0) {
    out.push('End to end, each path against the tracing-off path of its mode (same run, same load):');
    out.push('');
    out.push('| path | node A µs/req | node B µs/req | Δ A | Δ B | p50 ms | p99 ms | Δ p50 | Δ p99 | errors | spans exported / dropped | OTLP requests | RSS A / B MB |');
    out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
    for (const p of traced) {
      const off = r.paths.find((x) => x.name === p.tracing?.tracingOff);
      const a = cpuOf(p, 'node A');
      const b = cpuOf(p, 'node B');
      const a0 = cpuOf(off, 'node A');
      const b0 = cpuOf(off, 'node B');
      const d = (x: number | null, y: number | null): string => (x === null || y === null || p === off ? '—' : (x - y).toFixed(1));
      const t = p.tracing as NonNullable<PathReport['tracing']>;
      out.push(
        `| ${p.name} | ${f(a, 1)} | ${f(b, 1)} | ${d(a, a0)} | ${d(b, b0)} | ${f(p.latencyMs.p50)} | ${f(p.latencyMs.p99)} | ` +
          `${off === undefined || p === off ? '—' : f(p.latencyMs.p50 - off.latencyMs.p50)} | ${off === undefined || p === off ? '—' : f(p.latencyMs.p99 - off.latencyMs.p99)} | ` +
          `${p.run.errors.total} | ${t.ratio === null ? '—' : `${t.spansExported} / ${t.spansDropped}`} | ${t.ratio === null ? '—' : t.otlpRequests} | ${f(rssOf(p, 'node A'), 0)} / ${f(rssOf(p, 'node B'), 0)} |`,
      );
    }
    out.push('');
    // What the worker pool adds to a node's memory with tracing on: the same sampling inline and pooled.
    const full = traced.filter((p) => p.tracing?.ratio === 1);
    const inline = full.find((p) => p.workers === 0);
    for (const pooled of full.filter((p) => (p.workers ?? 0) > 0)) {
      const pa = rssOf(pooled, 'node A');
      const ia = inline === undefined ? 0 : rssOf(inline, 'node A');
      if (inline !== undefined) out.push(`- The worker pool (${pooled.workers} workers) with tracing at 100%: node A's RSS ${f(pa, 0)} MB against ${f(ia, 0)} MB inline (+${f(pa - ia, 0)} MB).`);
    }
    out.push('Δ: CPU per request (µs) and latency (ms) against tracing off. End-to-end CPU on shared cores varies by several µs run to run; the isolated figures above are the precise ones.');
    out.push('');
    const withRounds = traced.filter((p) => (p.tracing?.rounds?.length ?? 0) > 1);
    if (withRounds.length > 0) {
      out.push(`Each round (the paths measured in turn, round after round, on the same nodes; the rows above are each path's median round). Δ: against tracing off of the same round.`);
      out.push('');
      out.push('| path | node A µs/req | node B µs/req | Δ A | Δ B | p50 ms | p99 ms | spans dropped | others vCPU |');
      out.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
      const list = (xs: Array<number | null>, digits: number): string => xs.map((x) => f(x, digits)).join(', ');
      for (const p of withRounds) {
        const rounds = p.tracing?.rounds ?? [];
        const off = r.paths.find((x) => x.name === p.tracing?.tracingOff)?.tracing?.rounds ?? [];
        const delta = (pick: (x: TracingRound) => number | null): Array<number | null> => rounds.map((x, i) => {
          const o = off[i];
          const a = pick(x);
          const b = o === undefined ? null : pick(o);
          return a === null || b === null || p.name === p.tracing?.tracingOff ? null : a - b;
        });
        out.push(
          `| ${p.name} | ${list(rounds.map((x) => x.nodeAUs), 0)} | ${list(rounds.map((x) => x.nodeBUs), 0)} | ${list(delta((x) => x.nodeAUs), 0)} | ${list(delta((x) => x.nodeBUs), 0)} | ` +
            `${list(rounds.map((x) => x.p50Ms), 2)} | ${list(rounds.map((x) => x.p99Ms), 2)} | ${rounds.map((x) => x.spansDropped).join(', ')} | ${list(rounds.map((x) => x.otherVcpu), 2)} |`,
        );
      }
      out.push('');
    }
  }
  return out;
}

export function apiOf(p: PathReport): PathApi {
  return p.api ?? 'http';
}

/** The name of the path a path's added latency is measured against. */
export function baselineOf(p: PathReport): string {
  return p.baseline ?? 'baseline';
}

/**
 * perf.md's targets ("Targets for weft"), stated with mTLS on, for the HTTP API, the gRPC API
 * and actor calls alike. Those relative to nginx need an nginx path in the same run.
 */
export const TARGETS = {
  addedMs: { p50: 0.3, p90: 0.5, p99: 1.5 },
  vcpuPer1000: 0.12,
  rssIdleMB: 80,
  rssLoadMB: 110,
  /** weft's closed-loop maximum ÷ the nginx pair's, at least. */
  maxRpsVsNginx: 0.6,
  /** CPU per request at saturation ÷ nginx's, per proxy, at most. */
  cpuAtMaxVsNginx: 2,
  /** With the pool on: node A's main-thread CPU per call ÷ inline's, at most, and the extra p50. */
  poolMainCpuVsInline: 0.4,
  poolExtraP50Ms: 0.1,
} as const;

/** A path whose p50 is above this was queueing: the pool's extra p50 is not judged from it. */
const SATURATED_P50_MS = 10;

/** Differences of µs figures in ms are not exact in binary floating point: 0.4 − 0.1 > 0.3. */
const EPSILON = 1e-9;

/** The perf.md targets that one run can check. Absolute figures depend on the machine. */
export function checks(paths: PathReport[], rate: number, mtls: boolean, hooks: TracingCost | null = null, paired: readonly PairedReport[] = []): Check[] {
  const out: Check[] = [];
  for (const p of paired) out.push(...pairedChecks(p));
  // Tracing (issue 12's targets): the hooks' isolated CPU per call per node, and end to end against tracing off.
  for (const h of hooks?.figures ?? []) {
    const target = TRACING_TARGETS[h.mode];
    if (target === undefined) continue;
    const worst = Math.max(h.nodeAUs, h.nodeBUs);
    out.push({ what: `tracing ${h.mode}: hooks' CPU per call per node (isolated)`, target: `≤ ${target} µs`, measured: `${h.nodeAUs.toFixed(2)} / ${h.nodeBUs.toFixed(2)} µs`, pass: worst <= target });
  }
  for (const p of paths) {
    const t = p.tracing;
    if (t === undefined || t.ratio === null) continue;
    const off = paths.find((x) => x.name === t.tracingOff);
    if (off === undefined) continue;
    const target = TRACING_TARGETS[tracingLabel(t.ratio)];
    const da = (cpuOf(p, 'node A') ?? NaN) - (cpuOf(off, 'node A') ?? NaN);
    const db = (cpuOf(p, 'node B') ?? NaN) - (cpuOf(off, 'node B') ?? NaN);
    if (target !== undefined && Number.isFinite(da) && Number.isFinite(db)) {
      out.push({ what: `${p.name}: CPU per call per node vs tracing off (end to end)`, target: `≤ ${target} µs`, measured: `${da.toFixed(1)} / ${db.toFixed(1)} µs`, pass: Math.max(da, db) <= target });
    }
    out.push({ what: `${p.name}: errors as with tracing off`, target: String(off.run.errors.total), measured: String(p.run.errors.total), pass: p.run.errors.total === off.run.errors.total });
  }
  const ms = (n: number): string => `${n.toFixed(2)} ms`;
  const t = TARGETS;
  for (const p of paths) {
    if (!isWeft(p)) continue;
    const a = p.addedMs;
    const note = mtls ? '' : ' (mTLS off)';
    if (a !== null) {
      for (const q of ['p50', 'p90', 'p99'] as const) {
        out.push({ what: `${p.name}: added ${q}${note}`, target: `≤ ${t.addedMs[q]} ms`, measured: ms(a[q]), pass: a[q] <= t.addedMs[q] + EPSILON });
      }
    }
    out.push({ what: `${p.name}: errors`, target: '0', measured: String(p.run.errors.total), pass: p.run.errors.total === 0 });
    for (const c of p.costs) {
      if (c.role !== 'node A' && c.role !== 'node B') continue;
      if (c.cpuSPer1000 !== null) {
        out.push({ what: `${p.name}: ${c.role} vCPU per 1000 req/s`, target: `≤ ${t.vcpuPer1000}`, measured: c.cpuSPer1000.toFixed(3), pass: c.cpuSPer1000 <= t.vcpuPer1000 });
      }
      if (c.rssIdleMB !== null) out.push({ what: `${p.name}: ${c.role} RSS idle`, target: `≤ ${t.rssIdleMB} MB`, measured: `${c.rssIdleMB.toFixed(0)} MB`, pass: c.rssIdleMB <= t.rssIdleMB });
      const load = loadRss(c);
      if (load !== null) out.push({ what: `${p.name}: ${c.role} RSS under ${rate}/s`, target: `≤ ${t.rssLoadMB} MB`, measured: `${load.toFixed(0)} MB`, pass: load <= t.rssLoadMB });
    }
    // perf.md states the throughput targets for the two-node HTTP path, relative to the nginx pair.
    if (apiOf(p) !== 'http' || p.max === null) continue;
    const peer = peerFor(p, paths);
    if (peer === undefined || peer.max === null) {
      out.push({ what: `${p.name}: max rate vs the nginx pair`, target: `≥ ${t.maxRpsVsNginx * 100}% of nginx's`, measured: 'no nginx max-rate run in this run (--modes nginx)', pass: null });
      continue;
    }
    const r = peerRatios(p, peer);
    const other = r.sameTls ? '' : ` (${peer.name}: other TLS)`;
    out.push({
      what: `${p.name}: max rate vs ${peer.name}${other}`,
      target: `≥ ${t.maxRpsVsNginx * 100}% of nginx's`,
      measured: r.maxRps === null ? '—' : `${(r.maxRps * 100).toFixed(0)}% (${p.max.run.achievedRps.toFixed(0)} vs ${peer.max.run.achievedRps.toFixed(0)}/s)`,
      pass: r.maxRps === null ? null : r.maxRps >= t.maxRpsVsNginx,
    });
    for (const side of ['a', 'b'] as const) {
      const x = r.cpuAtMax[side];
      out.push({
        what: `${p.name}: node ${side.toUpperCase()} CPU per request at saturation vs nginx ${side.toUpperCase()}${other}`,
        target: `≤ ${t.cpuAtMaxVsNginx}×`,
        measured: x === null ? '—' : `${x.toFixed(2)}×`,
        pass: x === null ? null : x <= t.cpuAtMaxVsNginx,
      });
    }
  }
  // The pool's price: the same path with and without workers, in the same run.
  const pooled = paths.find((p) => isWeft(p) && apiOf(p) === 'http' && p.workers !== null && p.workers > 0);
  const inline = paths.find((p) => isWeft(p) && apiOf(p) === 'http' && p.workers === 0);
  if (pooled && inline) {
    const mainA = (p: PathReport): number | null => proxyCost(p.costs, 'A')?.mainCpuUsPerRequest ?? null;
    const share = ratio(mainA(pooled), mainA(inline));
    if (share !== null) {
      out.push({
        what: `worker pool: node A main-thread CPU per call vs inline (${pooled.name} vs ${inline.name})`,
        target: `≤ ${t.poolMainCpuVsInline * 100}%`,
        measured: `${(share * 100).toFixed(0)}% (${mainA(pooled)!.toFixed(0)} vs ${mainA(inline)!.toFixed(0)} µs)`,
        pass: share <= t.poolMainCpuVsInline,
      });
    }
    const dp50 = pooled.latencyMs.p50 - inline.latencyMs.p50;
    // A path whose median is already tens of ms was queueing (it or the machine was saturated):
    // a difference of 0.1 ms between two such medians is noise, not the pool's price.
    const saturated = Math.max(pooled.latencyMs.p50, inline.latencyMs.p50) > SATURATED_P50_MS;
    out.push({
      what: 'worker pool: extra p50',
      target: `≤ ${t.poolExtraP50Ms} ms`,
      measured: saturated ? `${ms(dp50)} (not judged: p50 ${ms(inline.latencyMs.p50)} inline, ${ms(pooled.latencyMs.p50)} pooled, over ${SATURATED_P50_MS} ms: saturated)` : ms(dp50),
      pass: saturated ? null : dp50 <= t.poolExtraP50Ms + EPSILON,
    });
  }
  return out;
}

// --- the pairs weft is compared with: the nginx pair, the Node pair --------------------------------

/** The pairs of proxies a weft path is compared with: nginx (bench/nginx.ts) and Node's own (bench/node-pair.ts). */
export type Proxy = 'nginx' | 'node';

/** The role names of a pair's two processes, `<prefix> A` and `<prefix> B`. */
export const PROXY_ROLE: Record<Proxy, string> = { nginx: 'nginx', node: 'node-pair' };

/** A weft path (two weft nodes), as opposed to a baseline or the nginx pair. */
export function isWeft(p: PathReport): boolean {
  return p.workers !== null && p.proxy === undefined;
}

/** A path measured against a baseline: a weft path or the nginx pair. */
export function hasBaseline(p: PathReport): boolean {
  return p.workers !== null || p.proxy !== undefined;
}

/** x / y, or null when either is unknown or y is not a positive number. */
export function ratio(x: number | null | undefined, y: number | null | undefined): number | null {
  if (x === null || x === undefined || y === null || y === undefined || !Number.isFinite(x) || !Number.isFinite(y) || y <= 0) return null;
  return x / y;
}

/** A path's figures divided by a pair's (weft ÷ nginx, weft ÷ the Node pair, the Node pair ÷ nginx): below 1 is better, above 1 worse. */
export interface PeerRatios {
  path: string;
  /** The pair's path compared with. */
  peer: string;
  /** False when the pair ran with other TLS between its proxies than the path did. */
  sameTls: boolean;
  /** Added latency (path − its baseline) at each percentile. */
  added: { p50: number | null; p90: number | null; p99: number | null };
  /** Closed-loop maximum rate. */
  maxRps: number | null;
  /** CPU per request per proxy at the maximum rate: node A / nginx A, node B / nginx B. */
  cpuAtMax: { a: number | null; b: number | null };
  /** CPU per request per proxy at the measured rate, which is also vCPU per 1000 requests/s. */
  cpuAtRate: { a: number | null; b: number | null };
  /** Largest RSS under the measured rate (or VmHWM after it) per proxy. */
  rss: { a: number | null; b: number | null };
}

/** The pair's path (nginx by default) to compare a path with: the same TLS between the proxies if it ran, else any. */
export function peerFor(weft: PathReport, paths: PathReport[], proxy: Proxy = 'nginx'): PathReport | undefined {
  const pairs = paths.filter((p) => p.proxy === proxy);
  return pairs.find((p) => p.tls === weft.tls) ?? pairs[0];
}

/** The first (A) or second (B) proxy of a path: a weft node, or a pair's process. */
function proxyCost(costs: ProcessCost[] | undefined, side: 'A' | 'B'): ProcessCost | undefined {
  return costs?.find((c) => c.role === `node ${side}` || c.role === `${PROXY_ROLE.nginx} ${side}` || c.role === `${PROXY_ROLE.node} ${side}`);
}

function loadRss(c: ProcessCost | undefined): number | null {
  if (c === undefined) return null;
  const load = Math.max(c.rssLoadMB ?? 0, c.peakMB ?? 0);
  return load > 0 ? load : null;
}

export function peerRatios(weft: PathReport, peer: PathReport): PeerRatios {
  const wa = weft.addedMs;
  const pa = peer.addedMs;
  const side = (pick: (c: ProcessCost | undefined) => number | null | undefined, w: ProcessCost[] | undefined, p: ProcessCost[] | undefined): { a: number | null; b: number | null } => ({
    a: ratio(pick(proxyCost(w, 'A')), pick(proxyCost(p, 'A'))),
    b: ratio(pick(proxyCost(w, 'B')), pick(proxyCost(p, 'B'))),
  });
  return {
    path: weft.name,
    peer: peer.name,
    sameTls: weft.tls === peer.tls,
    added: { p50: ratio(wa?.p50, pa?.p50), p90: ratio(wa?.p90, pa?.p90), p99: ratio(wa?.p99, pa?.p99) },
    maxRps: ratio(weft.max?.run.achievedRps, peer.max?.run.achievedRps),
    cpuAtMax: side((c) => c?.cpuUsPerRequest, weft.max?.costs, peer.max?.costs),
    cpuAtRate: side((c) => c?.cpuUsPerRequest, weft.costs, peer.costs),
    rss: side(loadRss, weft.costs, peer.costs),
  };
}

/**
 * The rows of the ratio table, for the pairs that ran in the same run: each weft path against the
 * nginx pair, then each against the Node pair, then each Node pair against the nginx pair.
 */
export function comparePeers(paths: PathReport[]): PeerRatios[] {
  const out: PeerRatios[] = [];
  const rows = (from: (p: PathReport) => boolean, proxy: Proxy): void => {
    for (const p of paths) {
      if (!from(p)) continue;
      const peer = peerFor(p, paths, proxy);
      if (peer) out.push(peerRatios(p, peer));
    }
  };
  rows(isWeft, 'nginx');
  rows(isWeft, 'node');
  rows((p) => p.proxy === 'node', 'nginx');
  return out;
}

// --- what the main thread costs, and the ceiling it sets ----------------------------------------

/**
 * The rate one node could reach with `cores` cores to itself, from its CPU per request: its
 * main thread (one core at most) saturates at 1e6 / main µs per request, and all its threads
 * together at cores × 1e6 / total µs per request; the lower one is the ceiling. An estimate
 * from measured CPU, not a measurement: it leaves out what sharing cores with the generator
 * and the app costs, and assumes CPU per request stays as measured as the rate grows.
 */
export function nodeCeiling(totalUsPerRequest: number | null | undefined, mainUsPerRequest: number | null | undefined, cores: number): number | null {
  if (totalUsPerRequest === null || totalUsPerRequest === undefined || !(totalUsPerRequest > 0)) return null;
  const all = (cores * 1e6) / totalUsPerRequest;
  if (mainUsPerRequest === null || mainUsPerRequest === undefined || !(mainUsPerRequest > 0)) return all;
  return Math.min(all, 1e6 / mainUsPerRequest);
}

/** The core counts the report shows ceilings for. */
export const CEILING_CORES = [1, 2, 4, 8] as const;

/** A report section of one table, one row per path and process: nothing when there are no rows. */
function perNodeSection(title: string, blurb: string, columns: string[], align: string, rows: string[][]): string[] {
  if (rows.length === 0) return [];
  return [`## ${title}`, '', blurb, '', `| ${columns.join(' | ')} |`, align, ...rows.map((r) => `| ${r.join(' | ')} |`), ''];
}
