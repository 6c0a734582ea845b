/**
 * The benchmark's HTTP load generator.
 *
 * Three ways to drive a target:
 * - open loop (`runOpenLoop`): requests are scheduled at fixed times (constant arrival
 *   rate) whether or not earlier ones have answered, and latency is measured from the
 *   *scheduled* send time, so a stall in the target shows up in the percentiles instead
 *   of silently slowing the generator down (coordinated omission). The time from the
 *   actual send is kept too (`serviceUs`), and so is the generator's own lateness
 *   (`sendLagUs`), so a reader can tell the generator's floor from the target's.
 * - closed loop (`runClosedLoop`): C connections, each sending its next request as soon
 *   as the previous one answers, for T seconds: the maximum rate.
 * - search (`searchMaxRate`): a bounded bisection of short open-loop runs for the highest
 *   rate whose p99 stays under a limit with no errors.
 *
 * Targets: HTTP (`Target`: an undici pool; `{id}` in the URL spreads requests over `--ids`
 * values, e.g. actor ids) and gRPC (`GrpcTarget`: Dapr's InvokeService, pre-encoded, for a
 * `grpc://host:port/<appId>/<method>` URL).
 *
 * Every run is bounded in time (and open-loop runs in count); requests still unanswered
 * `timeoutMs` after the last send are counted as timeouts.
 *
 * Run as a program (`node bench/load.ts --help`), it prints JSON lines on stdout with
 * `--json` (phase events, then one result), which is how `bench/run.ts` drives it in a
 * process of its own.
 */
import { parseArgs } from 'node:util';
import { Histogram, type HistogramSummary } from './histogram.ts';
import { createPacer, createTimerPacer, type Pacer } from './pacer.ts';
import { ErrorTally, Target, type ErrorCounts, type LoadTarget } from './target.ts';
import { GrpcTarget } from './target-grpc.ts';
import { conditionOf } from './paired.ts';

export { Target, expandIds, type LoadTarget, type TargetOptions, type ErrorCounts } from './target.ts';
export { GrpcTarget, type GrpcTargetOptions } from './target-grpc.ts';

export interface RunResult {
  mode: 'open' | 'closed';
  /** Target rate (open loop), requests/s. */
  rate: number | null;
  connections: number;
  /** The scheduled (open) or timed (closed) duration, s. */
  durationS: number;
  /** From the first send to the last answer, s. */
  elapsedS: number;
  sent: number;
  /** Answers received (any status). */
  completed: number;
  ok: number;
  /** Answers per second of `durationS` (open) or `elapsedS` (closed). */
  achievedRps: number;
  errors: ErrorCounts;
  /** 2xx latencies in µs: from the scheduled time (open), from the send (closed). */
  latencyUs: HistogramSummary;
  /** 2xx latencies in µs from the actual send (open loop: not coordinated-omission safe). */
  serviceUs: HistogramSummary;
  /** How late the generator sent each request, µs (open loop). */
  sendLagUs: HistogramSummary | null;
  /** The generator's own CPU during the run, ms. */
  generatorCpuMs: number;
}
export interface OpenLoopOptions {
  /** Requests per second. */
  rate: number;
  durationS: number;
  /** Upper bound on requests (default: rate × duration). */
  maxRequests?: number;
  /** Requests allowed in flight at once before new ones are dropped (counted). Default 10,000. */
  maxInFlight?: number;
  /** Called every `progressEveryS` seconds with the run so far. */
  onProgress?: (elapsedS: number, sent: number, ok: number, errors: number, p99Us: number) => void;
  progressEveryS?: number;
  /**
   * Send times closer together than this share one wake-up of the generator, ms (default
   * 0.2). Each wake-up costs ~50-100 µs of CPU on a busy 2-core VM, so fast probes where a
   * fraction of a millisecond does not matter use a wider gap.
   */
  minGapMs?: number;
  /** What wakes the sender: a pacer thread (default, sub-ms precise) or Node's timers (1 ms ticks). */
  pacer?: 'thread' | 'timer';
  /** Called once, as the schedule begins, with its origin (`performance.now()` of the first send's due time). */
  onStart?: (start: number) => void;
}

/** Sends `rate` requests/s for `durationS` seconds on a fixed schedule; see the file comment. */
export async function runOpenLoop(target: LoadTarget, options: OpenLoopOptions): Promise<RunResult> {
  const { rate, durationS } = options;
  if (!(rate > 0) || !(durationS > 0)) throw new RangeError('rate and duration must be positive');
  const total = Math.max(1, Math.min(options.maxRequests ?? Infinity, Math.round(rate * durationS)));
  const maxInFlight = options.maxInFlight ?? 10_000;
  const intervalMs = 1000 / rate;
  const latency = new Histogram();
  const service = new Histogram();
  const lag = new Histogram();
  const errors = new ErrorTally();
  // The pacer's callbacks are bound once the run below exists; until start() none fire.
  let onTick: (due: number) => void = () => {};
  let onError: (err: Error) => void = () => {};
  const pacer: Pacer =
    options.pacer === 'timer'
      ? createTimerPacer(intervalMs, total, (due) => onTick(due))
      : await createPacer(intervalMs, total, (due) => onTick(due), (err) => onError(err), options.minGapMs ?? 0.2);
  const cpuBefore = process.cpuUsage();

  return new Promise((resolve, reject) => {
    const start = performance.now() + 1;
    let sent = 0;
    let completed = 0;
    let ok = 0;
    let inFlight = 0;
    let lastAnswer = start;
    let finished = false;
    let drainTimer: NodeJS.Timeout | undefined;
    let progressTimer: NodeJS.Timeout | undefined;
    let hardStop: NodeJS.Timeout | undefined;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      pacer.stop();
      clearTimeout(drainTimer);
      clearTimeout(hardStop);
      clearInterval(progressTimer);
      // Whatever is still out after the drain deadline never answered in time.
      if (inFlight > 0) errors.add('timeout', inFlight);
      const cpu = process.cpuUsage(cpuBefore);
      resolve({
        mode: 'open',
        rate,
        connections: target.connections,
        durationS: total / rate,
        elapsedS: (lastAnswer - start) / 1000,
        sent,
        completed,
        ok,
        achievedRps: completed / (total / rate),
        errors: errors.counts,
        latencyUs: latency.summary(),
        serviceUs: service.summary(),
        sendLagUs: lag.summary(),
        generatorCpuMs: (cpu.user + cpu.system) / 1000,
      });
    };

    const sendOne = (scheduled: number): void => {
      const sentAt = performance.now();
      lag.record((sentAt - scheduled) * 1000);
      inFlight++;
      target.send((status, err) => {
        if (finished) return;
        const now = performance.now();
        inFlight--;
        lastAnswer = now;
        if (err !== null) errors.error(err);
        else {
          completed++;
          if (status >= 200 && status < 300) {
            ok++;
            latency.record((now - scheduled) * 1000);
            service.record((now - sentAt) * 1000);
          } else errors.status(status);
        }
        if (sent === total && inFlight === 0) finish();
      });
    };

    const tick = (pacerDue: number): void => {
      if (finished) return;
      const due = Math.min(total, Math.max(pacerDue, Math.floor((performance.now() - start) / intervalMs) + 1));
      while (sent < due) {
        const scheduled = start + sent * intervalMs;
        sent++;
        if (inFlight >= maxInFlight) errors.add('dropped', 1);
        else sendOne(scheduled);
      }
      if (sent === total && drainTimer === undefined) {
        if (inFlight === 0) finish();
        else drainTimer = setTimeout(finish, target.timeoutMs + 1000);
      }
    };

    onTick = tick;
    onError = (err: Error): void => {
      if (finished) return;
      finish();
      reject(err);
    };
    options.onStart?.(start);
    pacer.start(start);
    // The run is bounded whatever happens to the pacer or the target; this timer also keeps
    // the process alive while the pool's idle sockets (unreferenced) would not.
    hardStop = setTimeout(() => {
      if (sent < total) errors.add('dropped', total - sent);
      finish();
    }, 20 + (total / rate) * 1000 + target.timeoutMs + 5000);
    if (options.onProgress !== undefined) {
      const report = options.onProgress;
      progressTimer = setInterval(
        () => report((performance.now() - start) / 1000, sent, ok, errors.counts.total, latency.percentile(99)),
        (options.progressEveryS ?? 5) * 1000,
      );
    }
  });
}

export interface WindowsOptions {
  /** Requests per second, kept through every window. */
  rate: number;
  /** Each window's condition: true sends sampled traceparents (`-01`), false unsampled (`-00`). */
  windows: readonly boolean[];
  /** Seconds at the start of each window that are not measured (the switch settles: calls in flight, spans of the last window exported). */
  settleS: number;
  /** Measured seconds per window, after the settling part. */
  measureS: number;
  /** Called at each measured part's start and end, as they happen (the harness reads CPU then). */
  onMark?: (mark: WindowMark) => void;
  pacer?: 'thread' | 'timer';
}

/** A measured part's start or end, with the calls that completed in it (at its end). */
export interface WindowMark {
  index: number;
  phase: 'start' | 'end';
  sampled: boolean;
  /** At 'end': calls that completed in its measured part (the work the nodes' CPU then went to), and how many of them failed. */
  completed: number;
  errors: number;
  /** Of `completed`, the calls sent in an earlier window (another condition, or the same one before the switch): 0 unless the target lags by more than the settling time. */
  foreign: number;
}

export interface WindowsResult {
  /** The whole run, every window together. */
  run: RunResult;
  /** Per window: requests sent in it and how many of them failed (status outside 2xx, no answer). */
  sent: number[];
  failed: number[];
  /** Latency (µs, from the send) of the calls completed in measured parts, by condition. */
  latencyUs: { sampled: HistogramSummary; unsampled: HistogramSummary };
}

/**
 * One open-loop run at a constant rate through a sequence of windows; in each, every request
 * carries a fresh `traceparent` whose flags are the window's condition (the target's `sampled`).
 * A window is `settleS` of settling, then `measureS` measured, announced by `onMark` at its start
 * and end so that a caller can read the processes' CPU there: the calls completed in a measured
 * part are what the CPU then went to; those of them sent in an earlier window are counted apart
 * (`foreign`: the settling time was shorter than the target's lag). Sends and failures are also
 * kept per window by the window a request was sent in.
 */
export async function runWindows(target: Target, options: WindowsOptions): Promise<WindowsResult> {
  const { windows, settleS, measureS } = options;
  if (windows.length === 0) throw new RangeError('no windows');
  if (!(settleS >= 0) || !(measureS > 0)) throw new RangeError('settle must be >= 0 and measure > 0');
  const windowMs = (settleS + measureS) * 1000;
  const sent = new Array<number>(windows.length).fill(0);
  const failed = new Array<number>(windows.length).fill(0);
  const latency = { sampled: new Histogram(), unsampled: new Histogram() };
  let current = 0;
  let measuring = -1;
  let completed = 0;
  let errors = 0;
  let foreign = 0;
  target.sampled = windows[0] as boolean;
  const counting: LoadTarget = {
    connections: target.connections,
    timeoutMs: target.timeoutMs,
    close: () => target.close(),
    send(done) {
      const w = current;
      const sentAt = performance.now();
      sent[w]!++;
      target.send((status, err) => {
        const bad = err !== null || status < 200 || status >= 300;
        if (bad) failed[w]!++;
        if (measuring !== -1) {
          completed++;
          if (bad) errors++;
          if (measuring !== w) foreign++;
          else if (!bad) latency[windows[w] ? 'sampled' : 'unsampled'].record((performance.now() - sentAt) * 1000);
        }
        done(status, err);
      });
    },
  };
  // The marks are timed from the schedule's origin, so they neither lead the sends nor drift with the timers' lateness.
  let origin = 0;
  let timer: NodeJS.Timeout | undefined;
  const events: Array<{ atMs: number; run: () => void }> = [];
  windows.forEach((sampled, i) => {
    const from = i * windowMs;
    if (i > 0) events.push({ atMs: from, run: () => { current = i; target.sampled = sampled; } });
    events.push({ atMs: from + settleS * 1000, run: () => { measuring = i; completed = 0; errors = 0; foreign = 0; options.onMark?.({ index: i, phase: 'start', sampled, completed: 0, errors: 0, foreign: 0 }); } });
    events.push({ atMs: from + windowMs, run: () => { measuring = -1; options.onMark?.({ index: i, phase: 'end', sampled, completed, errors, foreign }); } });
  });
  let nextEvent = 0;
  const fire = (): void => {
    while (nextEvent < events.length && (events[nextEvent] as { atMs: number }).atMs <= performance.now() - origin) (events[nextEvent++] as { run: () => void }).run();
    if (nextEvent < events.length) timer = setTimeout(fire, Math.max(0, (events[nextEvent] as { atMs: number }).atMs - (performance.now() - origin)));
  };
  const onStart = (start: number): void => {
    origin = start;
    timer = setTimeout(fire, Math.max(0, start - performance.now()));
  };
  try {
    const run = await runOpenLoop(counting, { rate: options.rate, durationS: (windows.length * windowMs) / 1000, pacer: options.pacer, onStart });
    // the last end mark is due as the last request is sent: let it fire if the answers came first
    while (nextEvent < events.length) {
      clearTimeout(timer);
      fire();
      if (nextEvent < events.length) await new Promise((r) => setTimeout(r, 1));
    }
    return { run, sent, failed, latencyUs: { sampled: latency.sampled.summary(), unsampled: latency.unsampled.summary() } };
  } finally {
    clearTimeout(timer);
    target.sampled = null;
  }
}

export interface ClosedLoopOptions {
  durationS: number;
}

/** Keeps every connection busy for `durationS` seconds: the maximum rate. */
export function runClosedLoop(target: LoadTarget, options: ClosedLoopOptions): Promise<RunResult> {
  const latency = new Histogram();
  const errors = new ErrorTally();
  const cpuBefore = process.cpuUsage();
  const lanes = target.connections;

  return new Promise((resolve) => {
    const start = performance.now();
    const end = start + options.durationS * 1000;
    let sent = 0;
    let completed = 0;
    let ok = 0;
    let inFlight = 0;
    let lastAnswer = start;
    let finished = false;

    const finish = (): void => {
      if (finished) return;
      finished = true;
      clearTimeout(deadline);
      if (inFlight > 0) errors.add('timeout', inFlight);
      const cpu = process.cpuUsage(cpuBefore);
      const elapsedS = (lastAnswer - start) / 1000;
      const summary = latency.summary();
      resolve({
        mode: 'closed',
        rate: null,
        connections: lanes,
        durationS: options.durationS,
        elapsedS,
        sent,
        completed,
        ok,
        achievedRps: elapsedS > 0 ? completed / elapsedS : 0,
        errors: errors.counts,
        latencyUs: summary,
        serviceUs: summary,
        sendLagUs: null,
        generatorCpuMs: (cpu.user + cpu.system) / 1000,
      });
    };

    const next = (): void => {
      const sentAt = performance.now();
      sent++;
      inFlight++;
      target.send((status, err) => {
        if (finished) return;
        const now = performance.now();
        inFlight--;
        lastAnswer = now;
        if (err !== null) errors.error(err);
        else {
          completed++;
          if (status >= 200 && status < 300) {
            ok++;
            latency.record((now - sentAt) * 1000);
          } else errors.status(status);
        }
        if (now < end) next();
        else if (inFlight === 0) finish();
      });
    };

    // Bounded even if the target stops answering.
    const deadline = setTimeout(finish, options.durationS * 1000 + target.timeoutMs + 1000);
    for (let i = 0; i < lanes; i++) next();
  });
}

export interface SearchOptions {
  /** Highest rate to try (e.g. the closed-loop maximum), requests/s. */
  maxRate: number;
  /** Probes (open-loop runs) in all. Default 5. */
  steps?: number;
  /** Seconds per probe. Default 3. */
  stepS?: number;
  /** The p99 limit, µs. Default 10 ms. */
  p99LimitUs?: number;
  /** Pause between probes so the target can settle, ms. Default 500. */
  pauseMs?: number;
  onStep?: (step: SearchStep) => void;
}

export interface SearchStep {
  rate: number;
  pass: boolean;
  p99Us: number;
  achievedRps: number;
  errors: number;
}

export interface SearchResult {
  /** The highest rate that passed, requests/s (0 if none did). */
  rate: number;
  /** The lowest rate that failed (null if none did): the answer lies in [rate, failedAt). */
  failedAt: number | null;
  p99LimitUs: number;
  steps: SearchStep[];
}

/**
 * Bisects (0, maxRate] with `steps` short open-loop runs, starting at maxRate / 2. A probe
 * passes with no errors, p99 under the limit and at least 97% of its rate achieved. The
 * answer is only as fine as maxRate / 2^steps, which is the price of staying bounded.
 */
export async function searchMaxRate(target: LoadTarget, options: SearchOptions): Promise<SearchResult> {
  const limit = options.p99LimitUs ?? 10_000;
  const stepS = options.stepS ?? 3;
  const pauseMs = options.pauseMs ?? 500;
  let lo = 0;
  let hi = options.maxRate;
  let failedAt: number | null = null;
  const steps: SearchStep[] = [];
  for (let i = 0; i < (options.steps ?? 5); i++) {
    const rate = Math.round((lo + hi) / 2);
    if (rate <= lo || rate < 1) break;
    const r = await runOpenLoop(target, { rate, durationS: stepS, minGapMs: 1 });
    const pass = r.errors.total === 0 && r.latencyUs.p99 < limit && r.achievedRps >= 0.97 * rate;
    const step = { rate, pass, p99Us: r.latencyUs.p99, achievedRps: r.achievedRps, errors: r.errors.total };
    steps.push(step);
    options.onStep?.(step);
    if (pass) lo = rate;
    else {
      hi = rate;
      failedAt = rate;
    }
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
  return { rate: lo, failedAt, p99LimitUs: limit, steps };
}

// ---------------------------------------------------------------------------------------
// The program: `node bench/load.ts --url URL [--mode open|closed|search] ...`

const USAGE = `usage: node bench/load.ts --url URL [options]
  --url URL         http://host:port/path: HTTP; grpc://host:port/<appId>/<method>: Dapr's InvokeService;
                    grpc+oninvoke://host:port: a gRPC app's OnInvoke; grpc+call://host:port/<pkg.Svc>/<Method>[?k=v]:
                    any unary method, the body raw, the query as metadata (bench/target-grpc.ts).
                    {id} in the path (or the gRPC method) takes the values 0 .. ids-1 in turn, one per request
  --ids N           how many values {id} takes (default 1000)
  --mode open|closed|search|windows   open: constant rate (default); closed: max rate; search: max rate with p99 < limit;
                    windows: open loop through --windows, each request with a fresh traceparent of its window's flags
  --windows LETTERS windows: one letter per window, S sampled (-01), U or C unsampled (-00)
  --settle S        windows: seconds of each window before its measured --duration (default 0.5)
  --rate N          requests/s (open; default 1000)
  --duration S      measured seconds (open, closed) or seconds per probe (search); default 10
  --warmup S        seconds of open-loop warm-up before any mode (default 0)
  --warmup-rate N   warm-up rate (default 100)
  --connections N   default 16
  --body N          body bytes (default 1024; 0 for none)
  --method M        default POST (gRPC: the HTTP verb the app sees)
  --header K:V      extra header (repeatable; gRPC: metadata)
  --timeout MS      per-request timeout (default 10000)
  --max-rate N      search: highest rate to try (required for search)
  --steps N         search: probes (default 5)
  --p99 MS          search: the p99 limit (default 10)
  --pacer thread|timer  open: what wakes the sender (default thread: sub-ms precise; timer: 1 ms ticks)
  --json            JSON lines on stdout (phase events, then {"event":"result",...})`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      url: { type: 'string' },
      mode: { type: 'string', default: 'open' },
      rate: { type: 'string', default: '1000' },
      duration: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '0' },
      'warmup-rate': { type: 'string', default: '100' },
      connections: { type: 'string', default: '16' },
      body: { type: 'string', default: '1024' },
      method: { type: 'string', default: 'POST' },
      header: { type: 'string', multiple: true, default: [] },
      ids: { type: 'string', default: '1000' },
      timeout: { type: 'string', default: '10000' },
      'max-rate': { type: 'string' },
      pacer: { type: 'string', default: 'thread' },
      windows: { type: 'string' },
      settle: { type: 'string', default: '0.5' },
      steps: { type: 'string', default: '5' },
      p99: { type: 'string', default: '10' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help || values.url === undefined) {
    process.stderr.write(USAGE + '\n');
    process.exitCode = values.help ? 0 : 2;
    return;
  }
  const num = (name: string, raw: string | undefined, min: number): number => {
    const n = Number(raw);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name} must be a number >= ${min} (got ${raw})`);
    return n;
  };
  const headers: Record<string, string> = {};
  for (const h of values.header) {
    const colon = h.indexOf(':');
    if (colon <= 0) throw new Error(`--header must be K:V (got ${h})`);
    headers[h.slice(0, colon).trim().toLowerCase()] = h.slice(colon + 1).trim();
  }
  const json = values.json;
  const emit = (event: Record<string, unknown>): void => {
    if (json) process.stdout.write(JSON.stringify(event) + '\n');
  };
  const say = (line: string): void => {
    process.stderr.write(`[load] ${line}\n`);
  };

  const ids = num('ids', values.ids, 1);
  if (!Number.isInteger(ids)) throw new Error(`--ids must be a whole number (got ${values.ids})`);
  const targetOptions = {
    url: values.url,
    method: values.method,
    bodySize: num('body', values.body, 0),
    connections: num('connections', values.connections, 1),
    timeoutMs: num('timeout', values.timeout, 1),
    headers,
    ids,
  };
  const target: LoadTarget = /^grpc(\+oninvoke|\+call)?:\/\//.test(values.url) ? new GrpcTarget(targetOptions) : new Target(targetOptions);
  const stop = (): void => {
    void target.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);

  const duration = num('duration', values.duration, 0.1);
  const progress = (phase: string) => (elapsedS: number, sent: number, ok: number, errs: number, p99Us: number) =>
    say(`${phase} ${elapsedS.toFixed(0)}s sent ${sent} ok ${ok} errors ${errs} p99 ${(p99Us / 1000).toFixed(2)} ms`);
  try {
    // Connections, JIT and the target's caches warm up at a low rate before any mode.
    const warmup = num('warmup', values.warmup, 0);
    if (warmup > 0) {
      const warmRate = num('warmup-rate', values['warmup-rate'], 1);
      emit({ event: 'phase', phase: 'warmup', rate: warmRate, durationS: warmup });
      // windows: both conditions' paths warm up, half a second of each in turn
      const alternate = Array.from({ length: Math.max(1, Math.round(warmup * 2)) }, (_, i) => i % 2 === 0);
      const w = values.mode === 'windows' && target instanceof Target
        ? (await runWindows(target, { rate: warmRate, windows: alternate, settleS: 0, measureS: warmup / alternate.length })).run
        : await runOpenLoop(target, { rate: warmRate, durationS: warmup });
      say(`warm-up done: ${w.ok}/${w.sent} ok, ${w.errors.total} errors`);
      emit({ event: 'warmup-result', result: w });
    }
    if (values.mode === 'open') {
      const rate = num('rate', values.rate, 0.001);
      emit({ event: 'phase', phase: 'measure', rate, durationS: duration });
      const pacer = values.pacer;
      if (pacer !== 'thread' && pacer !== 'timer') throw new Error(`--pacer must be thread or timer (got ${pacer})`);
      const result = await runOpenLoop(target, { rate, durationS: duration, onProgress: progress('measure'), pacer });
      emit({ event: 'result', result });
      if (!json) printResult(result);
    } else if (values.mode === 'closed') {
      emit({ event: 'phase', phase: 'measure', durationS: duration });
      const result = await runClosedLoop(target, { durationS: duration });
      emit({ event: 'result', result });
      if (!json) printResult(result);
    } else if (values.mode === 'windows') {
      // --windows SUCCSU...: one window per letter, S sampled traceparents, U and C unsampled.
      if (!(target instanceof Target)) throw new Error('--mode windows needs an HTTP URL');
      const letters = [...(values.windows ?? '')];
      if (letters.length === 0) throw new Error('--mode windows needs --windows (a letter per window: S sampled, U or C unsampled)');
      const windows = letters.map((l) => conditionOf(l) === 'sampled');
      const rate = num('rate', values.rate, 0.001);
      const settleS = num('settle', values.settle, 0);
      emit({ event: 'phase', phase: 'measure', rate, durationS: windows.length * (settleS + duration) });
      const result = await runWindows(target, {
        rate, windows, settleS, measureS: duration, pacer: values.pacer === 'timer' ? 'timer' : 'thread',
        onMark: (mark) => emit({ event: 'window', ...mark }),
      });
      emit({ event: 'result', result });
      if (!json) printResult(result.run);
    } else if (values.mode === 'search') {
      const maxRate = num('max-rate', values['max-rate'], 1);
      const result = await searchMaxRate(target, {
        maxRate,
        steps: num('steps', values.steps, 0),
        stepS: duration,
        p99LimitUs: num('p99', values.p99, 0.001) * 1000,
        onStep: (s) => {
          say(`probe ${s.rate}/s: ${s.pass ? 'pass' : 'fail'} p99 ${(s.p99Us / 1000).toFixed(2)} ms, ${s.achievedRps.toFixed(0)}/s, ${s.errors} errors`);
          emit({ event: 'step', step: s });
        },
      });
      emit({ event: 'result', result });
      if (!json) say(`max rate with p99 < ${values.p99} ms: ${result.rate}/s`);
    } else {
      throw new Error(`--mode must be open, closed or search (got ${values.mode})`);
    }
  } finally {
    await target.close();
  }
}

function printResult(r: RunResult): void {
  const ms = (us: number): string => (us / 1000).toFixed(3);
  const l = r.latencyUs;
  process.stdout.write(
    `${r.mode} loop, ${r.connections} connections: ${r.ok}/${r.sent} ok, ${r.achievedRps.toFixed(0)} req/s, ${r.errors.total} errors\n` +
      `latency ms: p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  p99.9 ${ms(l.p999)}  max ${ms(l.max)}\n` +
      (r.sendLagUs ? `generator send lag ms: p50 ${ms(r.sendLagUs.p50)}  p99 ${ms(r.sendLagUs.p99)}\n` : '') +
      `generator CPU ${r.generatorCpuMs.toFixed(0)} ms\n`,
  );
}

if (import.meta.main) {
  main().catch((err: unknown) => {
    process.stderr.write(`[load] ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
