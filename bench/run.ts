/**
 * weft's benchmark: Dapr's service-invocation performance test on one machine
 * (the method is in perf.md; docs/benchmark.md explains how to read the output).
 *
 *   node bench/run.ts [--duration 60] [--rate 1000] [--connections 16] [--body 1024]
 *                     [--warmup 10] [--modes baseline,workers,inline,actors,grpc,grpc-app,grpc-proxy,nginx] [--ids 1000] [--plaintext] [--quick] [--json]
 *
 * For each path it starts what the path needs, runs the load generator (bench/load.ts, in a
 * process of its own) against it, and reads each process's CPU and memory from /proc around
 * the measured phase:
 * - baseline: generator → echo app, directly;
 * - a weft mode: generator → node A (caller-only app `loadgen`) → node B (app `testapp`)
 *   → the same echo app, both nodes on the embedded `local` resolver with a registry file
 *   of their own. Modes: `workers` (--workers 2), `inline` (--workers 0), `workers=N`.
 * - actors: first its own baseline, `actors-baseline`: generator → the actor app
 *   (examples/actor-app.ts) `PUT /actors/Counter/bench-{id}/method/get` directly; then
 *   generator → node A `PUT /v1.0/actors/Counter/bench-{id}/method/get` → node B (app
 *   `actorapp`, the owner of every id) → the actor app; `{id}` takes --ids values in turn.
 *   `actors` runs the nodes inline (--workers 0, the node's default), `actors=N` with N workers.
 * - grpc: generator (grpc-js, a pre-encoded InvokeServiceRequest) → node A's gRPC API
 *   `InvokeService` → node B → the echo app; compared with the HTTP baseline. `grpc` inline,
 *   `grpc=N` with N workers.
 *   The nodes talk mTLS (a node's default) with certificates from a CA made by `weft ca init`,
 *   or plaintext (`--insecure-plaintext`) with `--plaintext`.
 * - grpc-app: first its own baseline, `grpc-app-baseline`: generator → a gRPC app
 *   (examples/grpc-echo-app.ts) `AppCallback/OnInvoke` directly; then generator → node A's
 *   `InvokeService` → node B (app protocol grpc) → the app's `OnInvoke`. `grpc-app=N` with N workers.
 * - grpc-proxy: first `grpc-proxy-baseline`: generator → the same app's own `weft.bench.Echo/Echo`
 *   directly; then the same call on node A's gRPC port with `dapr-app-id: testapp` (proxy mode)
 *   → node B → the app. `grpc-proxy=N` with N workers (proxied streams stay on the main thread).
 * - nginx-plain, nginx-mtls (`nginx` for both): generator → nginx A → nginx B → the same echo
 *   app (bench/nginx.ts), the C peer weft's figures are quoted against as ratios.
 * - node-pair-mtls, node-pair-plain (`node-pair`: the run's TLS): generator → Node proxy A →
 *   Node proxy B → the same echo app (bench/node-pair.ts): the same job on Node's own transports
 *   with no weft code, the Node floor weft's figures and nginx's are divided by.
 * - tracing: the HTTP path three times in a row, tracing off, at 1% and at 100% sampling
 *   (`OTEL_*` in the nodes' environment, exporting over OTLP http/protobuf to a sink in this
 *   harness that reads and drops what it gets); their CPU per call per node and p50/p99 are
 *   compared with the tracing-off path of the same run. `tracing` inline, `tracing=N` with N
 *   workers (what the pool adds to RSS with tracing on). Before them, bench/tracing-cost.ts
 *   measures the hooks' CPU per call per node in isolation (no sockets, so no noise from them).
 * Then, per path, the closed-loop maximum rate and a short search for the highest rate
 * with p99 under 10 ms. Progress goes to stderr; the report to bench/results/<time>.json
 * and .md, and to stdout (markdown, or JSON only with --json).
 *
 * Every process it starts is stopped when it ends, fails, or gets SIGINT/SIGTERM.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, platform, release, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { RunResult, SearchResult } from './load.ts';
import { modeOf, expandModes, tracingSteps } from './modes.ts';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { findNginx, freePort, startNginxPair, type PairTls } from './nginx.ts';
import { startNodePair } from './node-pair.ts';
import { analysePaired, CONDITION_LETTERS, LEAD_WINDOWS, pairedSchedule, usPerCall, type Condition, type PairedReport, type WindowFigures } from './paired.ts';
import type { WindowsResult } from './load.ts';
import { cpuSeconds, machineCpu, memory, Processes, RssSampler, runQueueSeconds, runSeconds, THREAD_KINDS, threadCpuSeconds, type Started, type ThreadKind } from './procs.ts';
import { added, baselineOf, checks, comparePeers, PROXY_ROLE, hasBaseline, medianRound, toLatency, toMarkdown, type NodeAlloc, type NodeRuntime, type PathReport, type ProcessCost, type Report, type TracingCost, type TracingRound } from './results.ts';
import { summariseNode } from './profile-summary.ts';
import { AllocSampler, summariseAlloc } from './alloc-profile.ts';
import { runtimeOver, sampleRuntime, type NodeRuntimeStats, type RuntimeSample } from './node-runtime.ts';

const ROOT = resolve(import.meta.dirname, '..');
/** --paired: seconds at the start of each window that are not measured (calls in flight and the last spans settle). */
const PAIRED_SETTLE_S = 0.5;

interface Settings {
  durationS: number;
  rate: number;
  connections: number;
  bodyBytes: number;
  method: string;
  warmupS: number;
  warmupRate: number;
  modes: string[];
  ids: number;
  maxConnections: number;
  maxDurationS: number;
  searchSteps: number;
  searchStepS: number;
  /** The tracing mode: how many times its three paths are measured in turn. */
  rounds: number;
  /** The checkout whose bin/weft.js runs the nodes (--nodes-from; default this one). */
  nodesFrom: string;
  /** The tracing mode: a second tracing-off pair beside the others (the method's floor). */
  control: boolean;
  /** The tracing mode: the paired method (bench/paired.ts) instead of the three pairs of nodes. */
  paired: boolean;
  /** --paired: blocks of six windows, and each window's measured seconds. */
  blocks: number;
  windowS: number;
  p99LimitMs: number;
  timeoutMs: number;
  pacer: string;
  logLevel: string;
  nodeArgs: string[];
  mtls: boolean;
  out: string;
  json: boolean;
  quick: boolean;
  /** With --alloc: sample each node's allocations over the rate run's measured phase (bench/alloc-profile.ts). */
  alloc: boolean;
  /** Where --profile puts each node's CPU profiles (a directory per node), or null. */
  profileDir: string | null;
}

function parseSettings(argv: string[]): Settings {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: 'string' },
      rate: { type: 'string', default: '1000' },
      connections: { type: 'string', default: '16' },
      body: { type: 'string', default: '1024' },
      method: { type: 'string', default: 'POST' },
      warmup: { type: 'string' },
      'warmup-rate': { type: 'string', default: '100' },
      modes: { type: 'string', default: 'baseline,workers,inline' },
      ids: { type: 'string', default: '1000' },
      'max-connections': { type: 'string', default: '64' },
      'max-duration': { type: 'string' },
      'search-steps': { type: 'string' },
      'search-step': { type: 'string' },
      rounds: { type: 'string', default: '1' },
      'nodes-from': { type: 'string' },
      control: { type: 'boolean', default: false },
      paired: { type: 'boolean', default: false },
      blocks: { type: 'string', default: '16' },
      window: { type: 'string', default: '2' },
      p99: { type: 'string', default: '10' },
      timeout: { type: 'string', default: '10000' },
      pacer: { type: 'string', default: 'thread' },
      'log-level': { type: 'string', default: 'warn' },
      'node-arg': { type: 'string', multiple: true, default: [] },
      mtls: { type: 'boolean', default: false },
      plaintext: { type: 'boolean', default: false },
      out: { type: 'string', default: 'bench/results' },
      json: { type: 'boolean', default: false },
      'json-only': { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      profile: { type: 'boolean', default: false },
      alloc: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const quick = values.quick;
  const num = (name: string, raw: string | undefined, fallback: number, min: number): number => {
    const n = raw === undefined ? fallback : Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min} (got ${raw})`);
    return n;
  };
  if (values.mtls && values.plaintext) throw new Error('--mtls and --plaintext contradict each other: pick one (mTLS is the default)');
  const modes = expandModes(values.modes.split(',').map((m) => m.trim()).filter((m) => m !== ''), !values.plaintext);
  const ids = num('ids', values.ids, 1000, 1);
  if (!Number.isInteger(ids)) throw new Error(`--ids must be a whole number (got ${values.ids})`);
  if (values.pacer !== 'thread' && values.pacer !== 'timer') throw new Error(`--pacer must be thread or timer (got ${values.pacer})`);
  return {
    durationS: num('duration', values.duration, quick ? 5 : 60, 0.5),
    rate: num('rate', values.rate, 1000, 1),
    connections: num('connections', values.connections, 16, 1),
    bodyBytes: num('body', values.body, 1024, 0),
    method: values.method.toUpperCase(),
    warmupS: num('warmup', values.warmup, quick ? 2 : 10, 0),
    warmupRate: num('warmup-rate', values['warmup-rate'], 100, 1),
    modes,
    ids,
    maxConnections: num('max-connections', values['max-connections'], 64, 1),
    maxDurationS: num('max-duration', values['max-duration'], quick ? 2 : 10, 0),
    searchSteps: num('search-steps', values['search-steps'], quick ? 3 : 5, 0),
    searchStepS: num('search-step', values['search-step'], quick ? 2 : 5, 0.5),
    rounds: Math.floor(num('rounds', values.rounds, 1, 1)),
    nodesFrom: values['nodes-from'] === undefined ? ROOT : resolve(process.cwd(), values['nodes-from']),
    control: values.control,
    paired: values.paired,
    blocks: Math.floor(num('blocks', values.blocks, 16, 1)),
    windowS: num('window', values.window, 2, 0.2),
    p99LimitMs: num('p99', values.p99, 10, 0.01),
    timeoutMs: num('timeout', values.timeout, 10_000, 1),
    pacer: values.pacer,
    logLevel: values['log-level'],
    nodeArgs: values['node-arg'],
    // A node's default is mTLS, so it is the benchmark's too; --plaintext measures without it.
    mtls: !values.plaintext,
    out: values.out,
    json: values.json || values['json-only'],
    quick,
    alloc: values.alloc,
    profileDir: values.profile ? resolve(process.cwd(), values.out, `profiles-${new Date().toISOString().replace(/[:.]/g, '-')}`) : null,
  };
}

const USAGE = `usage: node bench/run.ts [options]
  --duration S          measured seconds per path (default 60; --quick 5)
  --rate N              requests/s, open loop (default 1000)
  --connections N       connections (default 16)
  --body N              body bytes (default 1024)
  --method M            HTTP method (default POST)
  --warmup S            warm-up seconds before measuring (default 10; --quick 2)
  --warmup-rate N       warm-up rate (default 100)
  --modes LIST          default baseline,workers,inline (workers = --workers 2; also workers=N);
                        also actors (actor calls and their own direct baseline; actors=N: N workers)
                        and grpc (InvokeService over the gRPC API; grpc=N), e.g. baseline,actors,grpc;
                        grpc-app (InvokeService to a gRPC app, against the app called directly; grpc-app=N)
                        and grpc-proxy (proxy mode by dapr-app-id, against the app's method called directly);
                        and nginx: the nginx pair, A → B plaintext and mTLS (nginx-plain, nginx-mtls for one),
                        with the baseline and, when no weft mode is listed, inline added; needs nginx
                        (PATH, /usr/sbin or \$NGINX_BIN); node-pair: two minimal Node proxies (node:http →
                        node:http2 → undici) in the same shape, mTLS or h2c as the run (node-pair-mtls,
                        node-pair-plain to choose), the Node floor; and tracing: the HTTP path with tracing off, at 1%
                        and at 100%, plus the hooks' isolated cost (tracing=N: N workers)
  --ids N               actor ids the actors path spreads its calls over (default 1000)
  --max-connections N   closed-loop max-rate connections (default 64)
  --max-duration S      closed-loop seconds (default 10; --quick 2; 0 skips)
  --search-steps N      probes in the search for the max rate with p99 < --p99 (default 5; --quick 3; 0 skips)
  --search-step S       seconds per search probe (default 5; --quick 2)
  --p99 MS              the search's p99 limit (default 10)
  --nodes-from DIR      run the weft nodes from another checkout (built; e.g. a worktree at an older
                        commit), the rest of the harness from this one: before/after with one harness
  --rounds N            tracing modes: measure off, 1% and 100% in turn N times on the same nodes
                        (default 1); each is reported by its median round, with every round's spread
  --control             tracing modes: a second tracing-off pair (tracing-off2), measured like the others:
                        what two identical paths differ by, the floor of an end-to-end delta
  --paired              tracing modes: instead of three pairs of nodes, ONE pair with tracing at 100%, the
                        generator switching its traceparent between sampled (-01) and unsampled (-00) in
                        short windows (A B C C B A blocks, C an unsampled A/A control); CPU per call per node
                        from schedstat per window; the median of the per-block deltas with its interval
  --blocks N            --paired: blocks of six windows (default 16: about 4 minutes)
  --window S            --paired: measured seconds per window, after ${PAIRED_SETTLE_S} s of settling (default 2)
  --pacer thread|timer  what paces the open-loop sender: a thread (default, sub-ms) or Node's 1 ms timers
  --log-level L         weft nodes' log level (default warn)
  --node-arg ARG        extra Node flag for the weft nodes (repeatable), e.g. --max-semi-space-size=16
  --mtls                nodes talk mTLS (--ca-dir of a CA made by \`weft ca init\`): the default, as a node's
  --plaintext           nodes talk plaintext (--insecure-plaintext) instead
  --out DIR             where reports go (default bench/results)
  --json                print only the JSON report on stdout (alias --json-only)
  --quick               a smoke run: 5 s per path after 2 s of warm-up, short max/search
  --profile             CPU-profile every weft node (--cpu-prof, a directory per node under --out) and add
                        where each node's threads spent the measured phase, by stage, to the report
  --alloc               sample each weft node's allocations (V8's sampling heap profiler, over the inspector on
                        a loopback port) during each rate run's measured phase, and report bytes per call on
                        the main thread and the functions that allocate most; the sampling costs some CPU, so
                        take CPU and latency figures from a run without it
`;

/** The actor calls' routes: `{id}` is filled in by the load generator. */
const ACTOR_TYPE = 'Counter';
const ACTOR_METHOD = 'get';
const ACTOR_ID = 'bench-{id}';
/** The invocation the HTTP paths make (node A's HTTP API; nginx A takes the same URL). */
const INVOKE_PATH = '/v1.0/invoke/testapp/method/test';
/** The gRPC app's own method (examples/grpc-echo-app.ts), the proxy-mode path's target. */
const GRPC_ECHO_PATH = '/weft.bench.Echo/Echo';

const say = (line: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
};

/** What the harness saw of the processes around one generator run's measured phase. */
interface Measurement {
  /** CPU seconds per pid during the phase (null: unknown). */
  cpu: Map<number, number | null>;
  /** CPU seconds of each watched process's threads by kind during the phase (null: unknown). */
  threadCpu: Map<number, Record<ThreadKind, number> | null>;
  rssMax: Map<number, number>;
  peak: Map<number, number | null>;
  otherVcpu: number | null;
  stealVcpu: number | null;
  /** The measured phase on the monotonic clock (µs), for reading CPU profiles over it. */
  window: { fromUs: number; toUs: number };
  /** Seconds each watched process spent runnable but waiting for a core during the phase, by pid. */
  runQueue: Map<number, number | null>;
  /** Each weft node's event loop and GC over the phase (its /metrics read at both ends), by pid. */
  runtime: Map<number, NodeRuntimeStats>;
  /** With --alloc: each sampled node's allocation profile over the phase, by pid. */
  alloc: Map<number, Awaited<ReturnType<AllocSampler['stop']>>>;
}

/** Now on the monotonic clock, in µs (V8's CPU profiles use the same clock on Linux). */
function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

class Bench {
  readonly settings: Settings;
  readonly procs: Processes;
  readonly tmp: string;
  readonly failures: string[] = [];
  #loadRuns = 0;

  constructor(settings: Settings, tmp: string) {
    this.settings = settings;
    this.tmp = tmp;
    this.procs = new Processes(tmp);
  }

  /** With --mtls, the CA both nodes get (`weft ca init`, once per run); made on first use. */
  #caDir: string | null = null;
  private peerTlsArgs(): string[] {
    if (!this.settings.mtls) return ['--insecure-plaintext'];
    if (this.#caDir === null) {
      this.#caDir = join(this.tmp, 'ca');
      execFileSync(process.execPath, [join(this.settings.nodesFrom, 'bin/weft.js'), 'ca', 'init', '--dir', this.#caDir], { cwd: this.settings.nodesFrom, stdio: 'ignore' });
    }
    return ['--ca-dir', this.#caDir];
  }

  /** Runs bench/load.ts in its own process; measures `watch` around its measured phase. */
  async load(url: string, method: string, args: string[], watch: Started[], sampleRss: boolean): Promise<{ result: unknown; measured: Measurement }> {
    const s = this.settings;
    const gen = this.procs.startNode(`load-${++this.#loadRuns}`, [
      join(ROOT, 'bench/load.ts'),
      '--url', url,
      '--method', method,
      '--ids', String(s.ids),
      '--body', String(s.bodyBytes),
      '--timeout', String(s.timeoutMs),
      '--json',
      ...args,
    ]);
    const pids = [...watch.map((w) => w.pid), process.pid];
    const sampler = new RssSampler();
    let before = new Map<number, number | null>();
    let threadsBefore = new Map<number, Record<ThreadKind, number> | null>();
    let queuedBefore = new Map<number, number | null>();
    let machineBefore = machineCpu();
    let wallBefore = performance.now();
    let fromUs = 0;
    let result: unknown;
    const allocStarts: Array<Promise<number> | undefined> = [];
    const runtimeStarts = new Map<number, Promise<RuntimeSample | null>>();
    gen.onLine((line) => {
      let event: { event?: string; phase?: string; result?: unknown };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return;
      }
      if (event.event === 'phase' && event.phase === 'measure') {
        before = new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
        queuedBefore = new Map(watch.map((w) => [w.pid, runQueueSeconds(w.pid)]));
        threadsBefore = new Map(watch.map((w) => [w.pid, threadCpuSeconds(w.pid)]));
        machineBefore = machineCpu();
        wallBefore = performance.now();
        fromUs = monotonicUs();
        if (sampleRss) sampler.start(watch.map((w) => w.pid));
        if (sampleRss) for (const w of watch) allocStarts.push(this.#allocSamplers.get(w.pid)?.start().then(() => w.pid));
        for (const w of watch) {
          const port = this.#metricsPorts.get(w.pid);
          // A node whose /metrics cannot be read has no runtime figures; the run goes on.
          if (port !== undefined) runtimeStarts.set(w.pid, sampleRuntime(port).catch(() => null));
        }
      } else if (event.event === 'result') {
        result = event.result;
      }
    });
    const code = await gen.exited;
    const toUs = monotonicUs();
    sampler.stop();
    const runtime = new Map<number, NodeRuntimeStats>();
    for (const [pid, started] of runtimeStarts) {
      const before = await started;
      const port = this.#metricsPorts.get(pid);
      const after = before === null || port === undefined ? null : await sampleRuntime(port).catch(() => null);
      if (before !== null && after !== null) runtime.set(pid, runtimeOver(before, after, (toUs - fromUs) / 1e6));
    }
    const alloc = new Map<number, Awaited<ReturnType<AllocSampler['stop']>>>();
    for (const started of allocStarts) {
      const pid = await started;
      const s = pid === undefined ? undefined : this.#allocSamplers.get(pid);
      if (pid !== undefined && s !== undefined) alloc.set(pid, await s.stop());
    }
    if (code !== 0 || result === undefined) throw new Error(`load generator exited with ${code} without a result; see ${gen.logFile}`);
    const cpu = new Map<number, number | null>();
    for (const pid of pids) {
      const now = cpuSeconds(pid);
      const was = before.get(pid);
      cpu.set(pid, now !== null && was !== null && was !== undefined ? now - was : null);
    }
    const runQueue = new Map<number, number | null>();
    for (const w of watch) {
      const now = runQueueSeconds(w.pid);
      const was = queuedBefore.get(w.pid);
      runQueue.set(w.pid, now !== null && was !== null && was !== undefined ? Math.max(0, now - was) : null);
    }
    const threadCpu = new Map<number, Record<ThreadKind, number> | null>();
    for (const w of watch) {
      const now = threadCpuSeconds(w.pid);
      const was = threadsBefore.get(w.pid);
      if (now === null || was === null || was === undefined) {
        threadCpu.set(w.pid, null);
        continue;
      }
      // A thread that exited during the phase takes its CPU with it: never below 0.
      const delta = { main: 0, workers: 0, v8: 0, libuv: 0, other: 0 };
      for (const kind of THREAD_KINDS) delta[kind] = Math.max(0, now[kind] - was[kind]);
      threadCpu.set(w.pid, delta);
    }
    const peak = new Map(watch.map((w) => [w.pid, memory(w.pid)?.hwmMB ?? null]));
    const machineAfter = machineCpu();
    const wallS = (performance.now() - wallBefore) / 1000;
    let otherVcpu: number | null = null;
    let stealVcpu: number | null = null;
    const run = result as Partial<RunResult>;
    if (machineBefore && machineAfter && typeof run.generatorCpuMs === 'number' && wallS > 0) {
      // The generator reports its own CPU for the measured run (it has exited, so /proc cannot).
      let ours = run.generatorCpuMs / 1000;
      for (const v of cpu.values()) ours += v ?? 0;
      otherVcpu = Math.max(0, (machineAfter.busyS - machineBefore.busyS - ours) / wallS);
      stealVcpu = (machineAfter.stealS - machineBefore.stealS) / wallS;
    }
    return { result, measured: { cpu, threadCpu, rssMax: sampler.max, peak, otherVcpu, stealVcpu, window: { fromUs, toUs }, runQueue, runtime, alloc } };
  }

  costs(watch: Started[], roles: string[], m: Measurement, requests: number, idle: Map<number, number | null>, generatorCpuMs: number | null): ProcessCost[] {
    const out: ProcessCost[] = watch.map((w, i) => {
      const cpuS = m.cpu.get(w.pid) ?? null;
      const threads = m.threadCpu.get(w.pid) ?? null;
      const mainCpuS = threads === null ? null : threads.main;
      const queuedS = m.runQueue.get(w.pid) ?? null;
      return {
        role: roles[i] ?? w.name,
        pid: w.pid,
        cpuS,
        runQueueUsPerRequest: queuedS !== null && requests > 0 ? (queuedS * 1e6) / requests : null,
        cpuSPer1000: cpuS !== null && requests > 0 ? (cpuS * 1000) / requests : null,
        cpuUsPerRequest: cpuS !== null && requests > 0 ? (cpuS * 1e6) / requests : null,
        mainCpuS,
        mainCpuUsPerRequest: mainCpuS !== null && requests > 0 ? (mainCpuS * 1e6) / requests : null,
        threadUsPerRequest: threads !== null && requests > 0 ? perRequest(threads, requests) : null,
        rssIdleMB: idle.get(w.pid) ?? null,
        rssLoadMB: m.rssMax.get(w.pid) ?? null,
        peakMB: m.peak.get(w.pid) ?? null,
      };
    });
    if (generatorCpuMs !== null) {
      out.push({
        role: 'generator',
        pid: 0,
        cpuS: generatorCpuMs / 1000,
        cpuSPer1000: requests > 0 ? generatorCpuMs / requests : null,
        cpuUsPerRequest: requests > 0 ? (generatorCpuMs * 1000) / requests : null,
        rssIdleMB: null,
        rssLoadMB: null,
        peakMB: null,
      });
    }
    return out;
  }

  /** Measures one path: the rate run, then the max rate, then the p99 search. */
  async path(name: string, workers: number | null, url: string, method: string, watch: Started[], roles: string[]): Promise<Omit<PathReport, 'addedMs'>> {
    const s = this.settings;
    const idle = new Map(watch.map((w) => [w.pid, memory(w.pid)?.rssMB ?? null]));
    say(`${name}: ${s.rate}/s for ${s.durationS} s after ${s.warmupS} s at ${s.warmupRate}/s → ${method} ${url}`);
    const main = await this.load(
      url,
      method,
      [
        '--mode', 'open',
        '--rate', String(s.rate),
        '--duration', String(s.durationS),
        '--connections', String(s.connections),
        '--warmup', String(s.warmupS),
        '--warmup-rate', String(s.warmupRate),
        '--pacer', s.pacer,
      ],
      watch,
      true,
    );
    const run = main.result as RunResult;
    const latencyMs = toLatency(run.latencyUs);
    say(
      `${name}: p50 ${latencyMs.p50.toFixed(2)} p90 ${latencyMs.p90.toFixed(2)} p99 ${latencyMs.p99.toFixed(2)} p99.9 ${latencyMs.p999.toFixed(2)} ms, ` +
        `${run.achievedRps.toFixed(0)}/s, ${run.errors.total} errors`,
    );
    // Per request actually sent (a request the generator had to drop cost the nodes nothing).
    const costs = this.costs(watch, roles, main.measured, run.sent - run.errors.dropped, idle, run.generatorCpuMs);
    const runtime: NodeRuntime[] = [];
    watch.forEach((w, i) => {
      const r = main.measured.runtime.get(w.pid);
      if (r !== undefined) runtime.push({ role: roles[i] ?? w.name, ...r });
    });
    const alloc: NodeAlloc[] = [];
    watch.forEach((w, i) => {
      const head = main.measured.alloc.get(w.pid);
      if (head !== undefined) alloc.push({ role: roles[i] ?? w.name, ...summariseAlloc(head, run.sent - run.errors.dropped) });
    });

    // The max-rate figures are extras: if one fails, the rate run above still counts.
    let max: PathReport['max'] = null;
    if (s.maxDurationS > 0) {
      try {
        say(`${name}: max rate, closed loop, ${s.maxConnections} connections, ${s.maxDurationS} s`);
        const m = await this.load(url, method, ['--mode', 'closed', '--connections', String(s.maxConnections), '--duration', String(s.maxDurationS), '--warmup', '1'], watch, false);
        const r = m.result as RunResult;
        max = { run: r, costs: this.costs(watch, roles, m.measured, r.sent, new Map(), r.generatorCpuMs) };
        say(`${name}: max ${r.achievedRps.toFixed(0)}/s, p99 ${(r.latencyUs.p99 / 1000).toFixed(2)} ms, ${r.errors.total} errors`);
      } catch (err) {
        this.fail(`${name}: max rate: ${(err as Error).message}`);
      }
    }

    let search: SearchResult | null = null;
    if (s.searchSteps > 0) {
      try {
        search = await this.search(name, url, method, watch, max);
      } catch (err) {
        this.fail(`${name}: p99 search: ${(err as Error).message}`);
      }
    }
    // A process that died under load explains every error after it: say so, and keep its log.
    watch.forEach((w, i) => {
      const { exitCode, signalCode } = w.child;
      if (exitCode !== null || signalCode !== null) this.fail(`${name}: ${roles[i] ?? w.name} exited during the run (${exitCode ?? signalCode}); see ${w.logFile}`);
    });
    return {
      name, workers, url, run, latencyMs, costs, max, search, otherVcpu: main.measured.otherVcpu, stealVcpu: main.measured.stealVcpu, measuredUs: main.measured.window,
      ...(runtime.length > 0 ? { runtime } : {}),
      ...(alloc.length > 0 ? { alloc } : {}),
    };
  }

  fail(message: string): void {
    this.failures.push(message);
    say(`FAILED ${message}`);
  }

  /** The highest rate with p99 under the limit: bisects up to the closed-loop maximum. */
  async search(name: string, url: string, method: string, watch: Started[], max: PathReport['max']): Promise<SearchResult> {
    const s = this.settings;
    // Open loop cannot sustain more than the closed-loop maximum; without one, try 4× the rate.
    const ceiling = Math.max(s.rate, Math.round(max ? max.run.achievedRps : s.rate * 4));
    say(`${name}: highest rate with p99 < ${s.p99LimitMs} ms, ${s.searchSteps} probes of ${s.searchStepS} s up to ${ceiling}/s`);
    const m = await this.load(
      url,
      method,
      [
        '--mode', 'search',
        '--max-rate', String(ceiling),
        '--steps', String(s.searchSteps),
        '--duration', String(s.searchStepS),
        '--p99', String(s.p99LimitMs),
        '--connections', String(s.maxConnections),
        '--warmup', '1',
      ],
      watch,
      false,
    );
    const search = m.result as SearchResult;
    say(`${name}: ${search.rate}/s sustained with p99 < ${s.p99LimitMs} ms (${search.steps.map((x) => `${x.rate}${x.pass ? '✓' : '✗'}`).join(' ')})`);
    return search;
  }


  /**
   * The nginx pair's path: generator → nginx A → nginx B → the echo app, A → B plaintext or
   * mTLS; the same URL as the weft HTTP path (nginx A sends it to the app as `/test`).
   */
  async nginxPath(name: string, tls: PairTls, app: { proc: Started; port: number }): Promise<PathReport> {
    const bin = findNginx();
    if (bin === null) {
      const asked = process.env['NGINX_BIN'];
      throw new Error(
        asked ? `$NGINX_BIN names ${asked}, which does not exist` : 'nginx not found (on PATH, in /usr/sbin, or name it with $NGINX_BIN); Debian: apt-get install nginx',
      );
    }
    const pair = await startNginxPair(this.procs, {
      bin,
      dir: join(this.tmp, name),
      name,
      appPort: app.port,
      tls,
      // Enough idle upstream connections for the max-rate run's connections.
      keepalive: Math.max(this.settings.connections, this.settings.maxConnections),
      rewrite: { from: INVOKE_PATH, to: '/test' },
    });
    say(`${name}: nginx A :${pair.port} → nginx B (${tls}) → echo app :${app.port}`);
    return this.pairPath(name, 'nginx', tls, pair, app);
  }

  /**
   * The Node pair's path (bench/node-pair.ts): generator → Node proxy A → Node proxy B (HTTP/2,
   * mTLS or h2c) → the echo app, on the same URL, measured as the nginx pair is.
   */
  async nodePairPath(name: string, tls: PairTls, app: { proc: Started; port: number }): Promise<PathReport> {
    const pair = await startNodePair(this.procs, { dir: join(this.tmp, name), name, appPort: app.port, tls, rewrite: { from: INVOKE_PATH, to: '/test' }, nodeArgs: this.settings.nodeArgs });
    say(`${name}: Node proxy A :${pair.port} → Node proxy B :${pair.bPort} (${tls === 'mtls' ? 'HTTP/2 over mTLS' : 'h2c'}) → echo app :${app.port}; ${pair.compiled ? 'compiled (dist/bench/node-proxy.js)' : 'type-stripped bench/node-proxy.ts (dist/ not current: npm run build)'}`);
    return this.pairPath(name, 'node', tls, pair, app);
  }

  /** A pair of proxies in weft's shape, measured against the baseline; stops both when done. */
  private async pairPath(name: string, proxy: 'nginx' | 'node', tls: PairTls, pair: { a: Started; b: Started; port: number }, app: { proc: Started; port: number }): Promise<PathReport> {
    try {
      const url = `http://127.0.0.1:${pair.port}${INVOKE_PATH}`;
      await untilRoutable(url, this.settings.method, 10_000);
      const roles = [`${PROXY_ROLE[proxy]} A`, `${PROXY_ROLE[proxy]} B`, 'app'];
      const p = await this.path(name, null, url, this.settings.method, [pair.a, pair.b, app.proc], roles);
      return { ...p, api: 'http', proxy, tls, baseline: 'baseline', addedMs: null };
    } finally {
      await this.procs.stop(pair.a);
      await this.procs.stop(pair.b);
    }
  }

  async startEchoApp(): Promise<{ proc: Started; port: number }> {
    return this.startApp('echo-app', 'examples/echo-app.ts', { ECHO_NAME: 'testapp' });
  }

  /** The gRPC app, started on first use and kept for the rest of the run. */
  #grpcApp: Promise<{ proc: Started; port: number }> | null = null;
  grpcApp(): Promise<{ proc: Started; port: number }> {
    this.#grpcApp ??= this.startApp('grpc-echo-app', 'examples/grpc-echo-app.ts', {});
    return this.#grpcApp;
  }

  /** Each weft node's metrics port, by pid: its event loop and GC are read there around a phase. */
  readonly #metricsPorts = new Map<number, number>();
  /** With --alloc: an inspector session per weft node, by pid. */
  readonly #allocSamplers = new Map<number, AllocSampler>();

  /** The actor app, started on first use and kept for the rest of the run. */
  #actorApp: Promise<{ proc: Started; port: number }> | null = null;
  actorApp(): Promise<{ proc: Started; port: number }> {
    this.#actorApp ??= this.startApp('actor-app', 'examples/actor-app.ts', {});
    return this.#actorApp;
  }

  private async startApp(name: string, file: string, env: Record<string, string>): Promise<{ proc: Started; port: number }> {
    const proc = this.procs.startNode(name, [join(ROOT, file)], { APP_PORT: '0', ...env });
    const port = await proc.waitFor((line) => {
      const m = /^listening on (\d+)/.exec(line);
      return m ? Number(m[1]) : undefined;
    }, 15_000);
    return { proc, port };
  }

  /** Starts one weft node with `weft run ... --json` and waits for its ready line. */
  async startNode(name: string, appId: string, workers: number, registry: string, appPort: number | null, appProtocol = 'http', env: Record<string, string> = {}): Promise<{ proc: Started; http: number; grpc: number; metrics: number }> {
    const profile = this.settings.profileDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${join(this.settings.profileDir, name)}`];
    const inspectPort = this.settings.alloc ? await freePort() : null;
    const args = [
      ...this.settings.nodeArgs,
      ...profile,
      ...(inspectPort === null ? [] : [`--inspect=127.0.0.1:${inspectPort}`]),
      join(this.settings.nodesFrom, 'bin/weft.js'),
      'run',
      '--app-id', appId,
      ...(appPort === null ? [] : ['--app-port', String(appPort), '--app-protocol', appProtocol]),
      '--http-port', '0',
      '--grpc-port', '0',
      '--peer-port', '0',
      '--metrics-port', '0',
      '--workers', String(workers),
      '--resolver', 'local',
      '--registry', registry,
      ...this.peerTlsArgs(),
      '--log-level', this.settings.logLevel,
      '--json',
    ];
    const proc = this.procs.startNode(name, args, env, this.settings.nodesFrom);
    const ports = await proc.waitFor((line) => {
      if (!line.startsWith('{')) return undefined;
      try {
        const event = JSON.parse(line) as { event?: string; http?: number; grpc?: number; metrics?: number };
        return event.event === 'ready' && typeof event.http === 'number' ? { http: event.http, grpc: event.grpc ?? 0, metrics: event.metrics ?? 0 } : undefined;
      } catch {
        return undefined;
      }
    }, 30_000);
    this.#metricsPorts.set(proc.pid, ports.metrics);
    void proc.exited.then(() => this.#metricsPorts.delete(proc.pid));
    if (inspectPort !== null) {
      const sampler = await AllocSampler.connect(inspectPort);
      this.#allocSamplers.set(proc.pid, sampler);
      void proc.exited.then(() => {
        sampler.close();
        this.#allocSamplers.delete(proc.pid);
      });
    }
    return { proc, ...ports };
  }
}

/** CPU seconds by thread kind → µs per request. */
function perRequest(threads: Record<ThreadKind, number>, requests: number): Record<ThreadKind, number> {
  const out = { main: 0, workers: 0, v8: 0, libuv: 0, other: 0 };
  for (const kind of THREAD_KINDS) out[kind] = (threads[kind] * 1e6) / requests;
  return out;
}

/**
 * Polls the path until it answers 2xx (the resolver may need a moment; actor placement
 * waits for the app's `/dapr/config` and its announcement), or fails. `{id}` is probed as
 * `probe`, so that no id of the run is activated before it.
 */
async function untilRoutable(template: string, method: string, timeoutMs: number): Promise<void> {
  const url = template.replaceAll('{id}', 'probe');
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { method, body: method === 'GET' || method === 'HEAD' ? null : 'probe' });
      await res.arrayBuffer();
      if (res.ok) return;
      last = `status ${res.status}`;
    } catch (err) {
      last = (err as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not answer 2xx within ${timeoutMs} ms (last: ${last})`);
}

function gitCommit(dir = ROOT): { sha: string; dirty: boolean } {
  try {
    const sha = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: dir, encoding: 'utf8' }).trim();
    const status = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: dir, encoding: 'utf8' });
    return { sha, dirty: status.trim() !== '' };
  } catch {
    return { sha: 'unknown', dirty: false };
  }
}

/** An OTLP/HTTP collector stand-in: reads and drops what it is sent, counting requests and bytes. */
async function otlpSink(): Promise<{ server: Server; port: number; requests: () => number; bytes: () => number }> {
  let requests = 0;
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      requests++;
      res.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port, requests: () => requests, bytes: () => bytes };
}

/** Sum of a counter (all its series) on a node's metrics endpoint; null when unreadable. */
async function counter(metricsPort: number, name: string): Promise<number | null> {
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    return sum;
  } catch {
    return null;
  }
}

/** bench/tracing-cost.ts in a process of its own: the hooks' CPU per call per node, isolated. */
function tracingCost(calls: number, dir: string): TracingCost | null {
  try {
    const out = execFileSync(process.execPath, [join(dir, 'bench/tracing-cost.ts'), '--calls', String(calls), '--json'], { cwd: dir, encoding: 'utf8', timeout: 300_000 });
    return JSON.parse(out.trim().split('\n').pop() as string) as TracingCost;
  } catch (err) {
    say(`tracing cost: ${(err as Error).message}`);
    return null;
  }
}

/**
 * The tracing mode: the HTTP path with tracing off, at 1% and at 100% (OTEL_* in the nodes'
 * environment, exporting to a sink here), each with what the nodes exported and dropped. The
 * three pairs of nodes are started together and measured in turn, `--rounds` times over
 * (off, 1%, 100%, then 100%, 1%, off, ...): on shared cores the load from elsewhere drifts over a
 * run, and interleaving spreads it over the three alike. A step's report is its round with the
 * median CPU per request (both nodes); every round's figures are kept beside it (the spread).
 */
async function tracingPaths(bench: Bench, mode: string, workers: number, app: { proc: Started; port: number }, tmp: string): Promise<PathReport[]> {
  const sink = await otlpSink();
  const pairs: Array<{ step: { readonly suffix: string; readonly ratio: number | null }; name: string; a: Awaited<ReturnType<Bench['startNode']>>; b: Awaited<ReturnType<Bench['startNode']>>; url: string; rounds: PathReport[] }> = [];
  try {
    for (const step of tracingSteps(bench.settings.control)) {
      const name = `${mode}-${step.suffix}`;
      const env: Record<string, string> = step.ratio === null ? {} : {
        OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}`,
        OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
        OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
        OTEL_TRACES_SAMPLER_ARG: String(step.ratio),
      };
      const registry = join(tmp, `registry-${mode}-${step.suffix.replace('%', 'pct')}.sqlite`);
      const b = await bench.startNode(`${name}-node-B`, 'testapp', workers, registry, app.port, 'http', env);
      const a = await bench.startNode(`${name}-node-A`, 'loadgen', workers, registry, null, 'http', env);
      pairs.push({ step, name, a, b, url: `http://127.0.0.1:${a.http}${INVOKE_PATH}`, rounds: [] });
    }
    for (const pair of pairs) await untilRoutable(pair.url, bench.settings.method, 15_000);
    const rounds = bench.settings.rounds;
    for (let round = 1; round <= rounds; round++) {
      // every other round in reverse (100%, 1%, off), so no path always comes first after a pause
      for (const pair of round % 2 === 0 ? [...pairs].reverse() : pairs) {
        const { step, a, b } = pair;
        const sum = async (metric: string): Promise<number> => step.ratio === null ? 0 : ((await counter(a.metrics, metric)) ?? 0) + ((await counter(b.metrics, metric)) ?? 0);
        const requests = sink.requests();
        const bytes = sink.bytes();
        const exported = await sum('weft_tracing_spans_exported_total');
        const dropped = await sum('weft_tracing_spans_dropped_total');
        if (rounds > 1) say(`${pair.name}: round ${round} of ${rounds}`);
        const p = await bench.path(pair.name, workers, pair.url, bench.settings.method, [a.proc, b.proc, app.proc], ['node A', 'node B', 'app']);
        // the nodes export a batch that is not full every second: let the last spans go out before counting
        if (step.ratio !== null) await new Promise((r) => setTimeout(r, 1500));
        pair.rounds.push({
          ...p, api: 'http', tls: bench.settings.mtls ? 'mtls' : 'plain', addedMs: null,
          tracing: {
            ratio: step.ratio, tracingOff: `${mode}-off`,
            spansExported: (await sum('weft_tracing_spans_exported_total')) - exported, spansDropped: (await sum('weft_tracing_spans_dropped_total')) - dropped,
            otlpRequests: sink.requests() - requests, otlpBytes: sink.bytes() - bytes,
          },
        });
      }
    }
  } finally {
    // A node writes its CPU profiles as it exits.
    for (const pair of pairs) {
      await bench.procs.stop(pair.a.proc);
      await bench.procs.stop(pair.b.proc);
    }
    sink.server.close();
  }
  const out: PathReport[] = [];
  for (const pair of pairs) {
    const chosen = medianRound(pair.rounds);
    if (chosen === undefined) continue;
    const report: PathReport = pair.rounds.length > 1 ? { ...chosen, tracing: { ...(chosen.tracing as NonNullable<PathReport['tracing']>), rounds: pair.rounds.map(roundFigures) } } : chosen;
    if (bench.settings.profileDir !== null && chosen.measuredUs !== undefined) {
      report.profiles = [];
      for (const [role, dir] of [['node A', `${pair.name}-node-A`], ['node B', `${pair.name}-node-B`]] as const) {
        const summary = summariseNode(join(bench.settings.profileDir, dir), chosen.measuredUs);
        if (summary !== null) report.profiles.push({ role, dir: join(bench.settings.profileDir, dir), ...summary });
      }
    }
    out.push(report);
  }
  return out;
}

/**
 * The tracing mode with --paired (bench/paired.ts): ONE pair of nodes with tracing at 100%
 * (parent-based, exporting to a sink here); the generator sends a fresh `traceparent` on every
 * request, sampled or unsampled by window, through blocks of six windows (A B C C B A: B sampled,
 * A and C unsampled, C the A/A control). At each window's measured start and end the harness
 * reads every watched process's CPU from schedstat (ns), so a window's CPU per call per node
 * compares the same two processes under both conditions, minutes of drift cancelling in each block.
 */
async function tracingPaired(bench: Bench, mode: string, workers: number, app: { proc: Started; port: number }, tmp: string): Promise<PairedReport> {
  const s = bench.settings;
  const sink = await otlpSink();
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${sink.port}`,
    OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
    // parent-based: a sampled traceparent is traced, an unsampled one is not, whatever the ratio
    OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '1',
  };
  const name = `${mode}-paired`;
  const registry = join(tmp, `registry-${name}.sqlite`);
  const b = await bench.startNode(`${name}-node-B`, 'testapp', workers, registry, app.port, 'http', env);
  const a = await bench.startNode(`${name}-node-A`, 'loadgen', workers, registry, null, 'http', env);
  try {
    const url = `http://127.0.0.1:${a.http}${INVOKE_PATH}`;
    await untilRoutable(url, s.method, 15_000);
    const sum = async (metric: string): Promise<number | null> => {
      const x = await counter(a.metrics, metric);
      const y = await counter(b.metrics, metric);
      return x === null || y === null ? null : x + y;
    };
    const exported = await sum('weft_tracing_spans_exported_total');
    const dropped = await sum('weft_tracing_spans_dropped_total');
    const schedule = pairedSchedule(s.blocks);
    const roles = ['node A', 'node B', 'app'];
    const watch = [a.proc, b.proc, app.proc];
    say(`${name}: node A http :${a.http}, node B http :${b.http} (--workers ${workers}), tracing at 100%; ${schedule.length} windows of ${PAIRED_SETTLE_S} + ${s.windowS} s at ${s.rate}/s after ${s.warmupS} s of warm-up`);
    const gen = bench.procs.startNode(`load-${name}`, [
      join(ROOT, 'bench/load.ts'),
      '--url', url, '--method', s.method, '--ids', String(s.ids), '--body', String(s.bodyBytes), '--timeout', String(s.timeoutMs),
      '--connections', String(s.connections), '--rate', String(s.rate), '--pacer', s.pacer,
      '--warmup', String(s.warmupS), '--warmup-rate', String(s.warmupRate),
      '--mode', 'windows', '--windows', schedule.map((c) => CONDITION_LETTERS[c]).join(''), '--settle', String(PAIRED_SETTLE_S), '--duration', String(s.windowS),
      '--json',
    ]);
    // what every process of ours has run, to tell the rest of the machine's load from it
    const ours = [...watch.map((w) => w.pid), gen.pid, process.pid];
    type Snapshot = { cpu: Array<number | null>; threads: Array<Record<ThreadKind, number> | null>; ours: Array<number | null>; machine: ReturnType<typeof machineCpu>; at: number };
    const snapshot = (): Snapshot => ({
      cpu: watch.map((w) => runSeconds(w.pid)),
      // the nodes' threads by kind: where a difference between the conditions goes (the event loop, V8's GC and compiler threads, libuv)
      threads: watch.slice(0, 2).map((w) => threadCpuSeconds(w.pid, true)),
      ours: ours.map((pid) => runSeconds(pid)),
      machine: machineCpu(),
      at: performance.now(),
    });
    const windows: WindowFigures[] = [];
    let started: Snapshot | null = null;
    let result: WindowsResult | undefined;
    const loadAvg: [number, number] = [loadavg()[0] ?? 0, 0];
    gen.onLine((line) => {
      let event: { event?: string; phase?: string; index?: number; completed?: number; errors?: number; foreign?: number; result?: WindowsResult };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return;
      }
      if (event.event === 'window' && event.phase === 'start') started = snapshot();
      else if (event.event === 'window' && event.phase === 'end' && started !== null) {
        const end = snapshot();
        const from: Snapshot = started;
        started = null;
        const index = event.index ?? -1;
        const condition = schedule[index];
        if (condition === undefined) return;
        const wallS = (end.at - from.at) / 1000;
        const cpuS: Record<string, number | null> = {};
        roles.forEach((role, i) => {
          const x = from.cpu[i];
          const y = end.cpu[i];
          cpuS[role] = x === null || x === undefined || y === null || y === undefined ? null : y - x;
        });
        from.threads.forEach((x, i) => {
          const y = end.threads[i];
          // a thread that exited takes its time with it: never below 0
          for (const kind of THREAD_KINDS) cpuS[`${roles[i]} ${kind}`] = x === null || y === null || y === undefined ? null : Math.max(0, y[kind] - x[kind]);
        });
        // A process of ours whose threads are going (the generator's pacer thread exits first, after the last
        // window) takes their time with it, so its sum goes down: then the rest of the machine's share is unknown.
        const oursDeltas = from.ours.map((x, i) => (x === null || end.ours[i] === null || end.ours[i] === undefined ? null : (end.ours[i] as number) - x));
        const oursS = oursDeltas.some((d) => d === null || d < 0) ? null : oursDeltas.reduce<number>((t, d) => t + (d as number), 0);
        const otherVcpu = from.machine !== null && end.machine !== null && wallS > 0 && oursS !== null ? Math.max(0, (end.machine.busyS - from.machine.busyS - oursS) / wallS) : null;
        windows.push({
          index, block: index < LEAD_WINDOWS.length ? -1 : Math.floor((index - LEAD_WINDOWS.length) / 6), condition,
          calls: event.completed ?? 0, errors: event.errors ?? 0, foreign: event.foreign ?? 0, cpuS, wallS, otherVcpu,
        });
        const us = (role: string): string => f1(usPerCall(windows[windows.length - 1] as WindowFigures, role));
        say(`${name}: window ${index + 1}/${schedule.length} ${condition}: node A ${us('node A')} µs/call, node B ${us('node B')} µs/call, ${event.completed} calls`);
      } else if (event.event === 'result') result = event.result;
    });
    const code = await gen.exited;
    loadAvg[1] = loadavg()[0] ?? 0;
    if (code !== 0 || result === undefined) throw new Error(`load generator exited with ${code} without a result; see ${gen.logFile}`);
    // the nodes export a batch that is not full every second: let the last spans go out before counting
    await new Promise((r) => setTimeout(r, 1500));
    const exportedAfter = await sum('weft_tracing_spans_exported_total');
    const droppedAfter = await sum('weft_tracing_spans_dropped_total');
    const byCondition = (per: number[]): Record<Condition, number> => {
      const out: Record<Condition, number> = { sampled: 0, unsampled: 0, control: 0 };
      per.forEach((n, i) => {
        const c = schedule[i];
        if (c !== undefined) out[c] += n;
      });
      return out;
    };
    const lat = (h: WindowsResult['latencyUs']['sampled']): { p50: number; p99: number } | null => (h.count === 0 ? null : { p50: h.p50 / 1000, p99: h.p99 / 1000 });
    watch.forEach((w, i) => {
      const { exitCode, signalCode } = w.child;
      if (exitCode !== null || signalCode !== null) bench.fail(`${name}: ${roles[i]} exited during the run (${exitCode ?? signalCode}); see ${w.logFile}`);
    });
    return {
      mode, workers, rate: s.rate, settleS: PAIRED_SETTLE_S, measureS: s.windowS, blocks: s.blocks, confidence: 0.95,
      windows, nodes: analysePaired(windows, roles, 0.95),
      threads: analysePaired(windows, ['node A', 'node B'].flatMap((r) => THREAD_KINDS.filter((k) => k !== 'workers' || workers > 0).map((k) => `${r} ${k}`)), 0.95),
      errors: byCondition(result.failed), sent: byCondition(result.sent),
      spansExported: exported === null || exportedAfter === null ? null : exportedAfter - exported,
      spansDropped: dropped === null || droppedAfter === null ? null : droppedAfter - dropped,
      loadAvg,
      // the generator keeps one latency histogram for both unsampled conditions
      latencyMs: { sampled: lat(result.latencyUs.sampled), unsampled: lat(result.latencyUs.unsampled) },
    };
  } finally {
    await bench.procs.stop(a.proc);
    await bench.procs.stop(b.proc);
    sink.server.close();
  }
}

const f1 = (x: number | null): string => (x === null ? '—' : x.toFixed(1));

/** A tracing round's figures, for the spread beside the round reported. */
function roundFigures(p: PathReport): TracingRound {
  const cpu = (role: string): number | null => p.costs.find((c) => c.role === role)?.cpuUsPerRequest ?? null;
  return { nodeAUs: cpu('node A'), nodeBUs: cpu('node B'), p50Ms: p.latencyMs.p50, p99Ms: p.latencyMs.p99, errors: p.run.errors.total, spansDropped: p.tracing?.spansDropped ?? 0, otherVcpu: p.otherVcpu };
}

async function main(): Promise<void> {
  const settings = parseSettings(process.argv.slice(2));
  const startedAt = new Date();
  const tmp = mkdtempSync(join(tmpdir(), 'weft-bench-'));
  const bench = new Bench(settings, tmp);
  let stopping = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: stopping every process this run started`);
    void bench.procs.stopAll().finally(() => {
      rmSync(tmp, { recursive: true, force: true });
      process.exit(130);
    });
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
  process.on('exit', () => bench.procs.killAllNow());

  const machine = { cpuModel: cpus()[0]?.model.trim() ?? 'unknown', cores: cpus().length, platform: `${platform()} ${release()}`, loadAvg: loadavg() };
  const paths: PathReport[] = [];
  let hooks: TracingCost | null = null;
  const paired: PairedReport[] = [];
  const failures = bench.failures;
  try {
    say(`machine: ${machine.cpuModel}, ${machine.cores} cores; Node ${process.version}; logs in ${tmp}`);
    const app = await bench.startEchoApp();
    say(`echo app on :${app.port}`);
    const baselineUrl = `http://127.0.0.1:${app.port}/test`;
    const actorPath = `/${ACTOR_TYPE}/${ACTOR_ID}/method/${ACTOR_METHOD}`;
    for (const mode of settings.modes) {
      try {
        const spec = modeOf(mode)!;
        if (spec.api === 'baseline') {
          const baseline = await bench.path('baseline', null, baselineUrl, settings.method, [app.proc], ['app']);
          paths.push({ ...baseline, api: 'http', addedMs: null });
          continue;
        }
        if (spec.api === 'nginx') {
          paths.push(await bench.nginxPath(mode, spec.tls, app));
          continue;
        }
        if (spec.api === 'node-pair') {
          paths.push(await bench.nodePairPath(mode, spec.tls, app));
          continue;
        }
        if (spec.api === 'tracing') {
          if (hooks === null) {
            say('tracing: the hooks\' CPU per call per node, isolated (bench/tracing-cost.ts)');
            hooks = tracingCost(settings.quick ? 20_000 : 100_000, settings.nodesFrom);
          }
          if (settings.paired) paired.push(await tracingPaired(bench, mode, spec.workers, app, tmp));
          else paths.push(...await tracingPaths(bench, mode, spec.workers, app, tmp));
          continue;
        }
        const { api, workers } = spec;
        // Actor calls are PUTs (Dapr's verb for them), with the same body as the others.
        const method = api === 'actors' ? 'PUT' : settings.method;
        const grpcApp = api === 'grpc-app' || api === 'grpc-proxy';
        const target = api === 'actors' ? await bench.actorApp() : grpcApp ? await bench.grpcApp() : app;
        if (api === 'actors' && !paths.some((p) => p.name === 'actors-baseline')) {
          // The actor path's own baseline: the same calls, straight to the actor app.
          const direct = await bench.path('actors-baseline', null, `http://127.0.0.1:${target.port}/actors${actorPath}`, method, [target.proc], ['app']);
          paths.push({ ...direct, api: 'actors', addedMs: null });
        }
        if (grpcApp && !paths.some((p) => p.name === `${api}-baseline`)) {
          // The gRPC app's own baseline: the same call, straight to the app.
          const directUrl = api === 'grpc-app' ? `grpc+oninvoke://127.0.0.1:${target.port}` : `grpc+call://127.0.0.1:${target.port}${GRPC_ECHO_PATH}`;
          const direct = await bench.path(`${api}-baseline`, null, directUrl, method, [target.proc], ['app']);
          paths.push({ ...direct, api, addedMs: null });
        }
        const appId = api === 'actors' ? 'actorapp' : 'testapp';
        const registry = join(tmp, `registry-${mode}.sqlite`);
        const b = await bench.startNode(`${mode}-node-B`, appId, workers, registry, target.port, grpcApp ? 'grpc' : 'http');
        const a = await bench.startNode(`${mode}-node-A`, 'loadgen', workers, registry, null);
        say(`${mode}: node A http :${a.http} grpc :${a.grpc}, node B http :${b.http} (--workers ${workers})`);
        const httpUrl = `http://127.0.0.1:${a.http}${INVOKE_PATH}`;
        const url =
          api === 'actors' ? `http://127.0.0.1:${a.http}/v1.0/actors${actorPath}`
          : api === 'grpc' || api === 'grpc-app' ? `grpc://127.0.0.1:${a.grpc}/testapp/test`
          : api === 'grpc-proxy' ? `grpc+call://127.0.0.1:${a.grpc}${GRPC_ECHO_PATH}?dapr-app-id=testapp`
          : httpUrl;
        let measured: PathReport | undefined;
        try {
          // gRPC rides the same route as HTTP: once node A routes HTTP to testapp, InvokeService (and proxy mode) does too.
          await untilRoutable(api === 'grpc' || grpcApp ? httpUrl : url, method, api === 'actors' ? 30_000 : 15_000);
          const p = await bench.path(mode, workers, url, method, [a.proc, b.proc, target.proc], ['node A', 'node B', 'app']);
          const baseline = api === 'actors' ? 'actors-baseline' : grpcApp ? `${api}-baseline` : 'baseline';
          measured = { ...p, api, baseline, tls: settings.mtls ? 'mtls' : 'plain', addedMs: null };
          paths.push(measured);
        } finally {
          // A node writes its CPU profiles as it exits.
          await bench.procs.stop(a.proc);
          await bench.procs.stop(b.proc);
        }
        if (settings.profileDir !== null && measured?.measuredUs !== undefined) {
          measured.profiles = [];
          for (const [role, name] of [['node A', `${mode}-node-A`], ['node B', `${mode}-node-B`]] as const) {
            const dir = join(settings.profileDir, name);
            const summary = summariseNode(dir, measured.measuredUs);
            if (summary !== null) measured.profiles.push({ role, dir, ...summary });
          }
          say(`${mode}: CPU profiles in ${settings.profileDir}`);
        }
      } catch (err) {
        bench.fail(`${mode}: ${(err as Error).message}`);
      }
    }
    // Added latency needs the path's baseline, which may have been measured after it.
    for (const p of paths) {
      if (!hasBaseline(p)) continue;
      const base = paths.find((x) => x.name === baselineOf(p));
      if (base) p.addedMs = added(p.latencyMs, base.latencyMs);
    }
  } finally {
    await bench.procs.stopAll();
    // Errors under load are a failure of the method too (it wants 0): keep the logs that explain them.
    if (failures.length > 0 || paths.some((p) => p.run.errors.total > 0)) say(`logs kept in ${tmp}`);
    else rmSync(tmp, { recursive: true, force: true });
  }

  const mean = (xs: (number | null)[]): number | null => {
    const known = xs.filter((x): x is number => x !== null);
    return known.length > 0 ? known.reduce((a, b) => a + b, 0) / known.length : null;
  };
  const other = mean(paths.map((p) => p.otherVcpu));
  const steal = mean(paths.map((p) => p.stealVcpu));
  const otherText =
    other === null
      ? 'load from other processes unknown'
      : `other processes on the machine used ${other.toFixed(2)} vCPU on average during the measured phases` +
        (steal !== null && steal >= 0.01 ? `, and the hypervisor stole ${steal.toFixed(2)} vCPU` : '');
  const report: Report = {
    version: 1,
    startedAt: startedAt.toISOString(),
    machine,
    node: process.version,
    // the nodes' commit (--nodes-from names another checkout)
    commit: gitCommit(settings.nodesFrom),
    settings: {
      durationS: settings.durationS,
      rate: settings.rate,
      connections: settings.connections,
      bodyBytes: settings.bodyBytes,
      method: settings.method,
      warmupS: settings.warmupS,
      warmupRate: settings.warmupRate,
      modes: settings.modes,
      ids: settings.ids,
      maxConnections: settings.maxConnections,
      maxDurationS: settings.maxDurationS,
      searchSteps: settings.searchSteps,
      searchStepS: settings.searchStepS,
      rounds: settings.rounds,
      nodesFrom: settings.nodesFrom === ROOT ? null : settings.nodesFrom,
      control: settings.control,
      paired: settings.paired,
      ...(settings.paired ? { blocks: settings.blocks, windowS: settings.windowS } : {}),
      p99LimitMs: settings.p99LimitMs,
      pacer: settings.pacer,
      logLevel: settings.logLevel,
      nodeArgs: settings.nodeArgs,
      mtls: settings.mtls,
      quick: settings.quick,
      profile: settings.profileDir !== null,
      alloc: settings.alloc,
    },
    sharing:
      `all on the same ${machine.cores} cores: the load generator (with its pacer thread), the app (the echo app; the actor app on actor paths), and on weft paths node A and node B ` +
      `(and their worker threads)${paths.some((p) => p.proxy === 'nginx') ? ', on nginx paths the two nginx processes' : ''}` +
      `${paths.some((p) => p.proxy === 'node') ? ', on Node-pair paths the two Node proxies' : ''}; ${otherText}. Compare added latency and ratios, not absolute times.`,
    paths,
    peers: comparePeers(paths),
    tracingHooks: hooks,
    ...(paired.length > 0 ? { tracingPaired: paired } : {}),
    checks: checks(paths, settings.rate, settings.mtls, hooks, paired),
    failures,
  };

  const outDir = resolve(process.cwd(), settings.out);
  mkdirSync(outDir, { recursive: true });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  const markdown = toMarkdown(report);
  writeFileSync(join(outDir, `${stamp}.json`), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(join(outDir, `${stamp}.md`), markdown + '\n');
  say(`wrote ${join(outDir, `${stamp}.json`)} and .md`);
  process.stdout.write(settings.json ? JSON.stringify(report, null, 2) + '\n' : markdown + '\n');
  if (failures.length > 0) process.exitCode = 1;
}

main().catch((err: unknown) => {
  say(`error: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
});
