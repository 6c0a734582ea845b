/**
 * Hands calls to the outbound side: a piscina pool of workers owning the gRPC channels, or,
 * with `workers: 0`, the same outbound code on the main thread.
 */
import { BroadcastChannel } from 'node:worker_threads';
import type { Transferable } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { randomUUID } from 'node:crypto';
import type { CancelMessage, IdentitySet, InvokeResult, InvokeTask, MetricsBatch, OutboundSettings, RoutingMessage, RoutingSnapshot, SpanBatch, WireErrorShape, WorkerData } from '../workers/protocol.ts';
import { CANCEL_CHANNEL, METRICS_CHANNEL, ROUTING_CHANNEL, SPANS_CHANNEL } from '../workers/protocol.ts';
import type { SpanSink } from './observability/tracing.ts';
import { moduleUrl } from './paths.ts';

export interface Dispatcher {
  readonly mode: 'workers' | 'inline';
  /**
   * Runs one call on the outbound side. When `signal` aborts (the caller went away, or the
   * deadline passed) the outbound side cancels the peer call; the task still settles (with an
   * error, or a streamed result whose port the caller must close).
   */
  run(task: InvokeTask, transfer: Transferable[], signal?: AbortSignal): Promise<InvokeResult>;
  publish(snapshot: RoutingSnapshot): void;
  /** The TLS identities the outbound side presents; publish them before any snapshot needing them. */
  setIdentities(identities: IdentitySet): void;
  close(): Promise<void>;
}

/** Things the outbound side tells the main thread about, outside any one call. */
export interface DispatchEvents {
  /** A peer's certificate was refused (wrong node, wrong trust domain). */
  onTlsFailure?(peer: string, message: string): void;
  /**
   * Tracing on: where the outbound side's finished spans go (the node's one exporter). Workers
   * send theirs in batches on the spans channel; inline, the outbound adds them directly.
   */
  readonly spans?: (SpanSink & { absorb(batch: SpanBatch): void }) | undefined;
}

/** The longest a node waits for its workers at start before it serves anyway. */
const WORKER_START_WAIT_MS = 10_000;
const WORKER_FILE = moduleUrl('workers/peer-worker.ts');

/**
 * Why these settings: a worker owns long-lived channels, so it takes many tasks at once
 * (the default of 1 cost two thirds of the throughput in measurements, perf.md) and never
 * parks its event loop in Atomics.wait (that stalls gRPC keepalives).
 */
class PoolDispatcher implements Dispatcher {
  readonly mode = 'workers';
  private readonly pool: Piscina;
  private readonly routing: BroadcastChannel;
  private readonly metrics: BroadcastChannel;
  private readonly cancels: BroadcastChannel;
  private lastCallId = 0;
  private readonly spans: BroadcastChannel | null = null;
  private snapshot: RoutingSnapshot = { version: 0, apps: {} };
  private identities: IdentitySet | null = null;
  private closed = false;
  private loaded = 0;
  private onLoaded: () => void = () => {};
  /** Resolves when every worker has loaded (so the first calls do not pay for thread start-up). */
  readonly ready: Promise<void>;

  constructor(threads: number, onMetrics: (batch: MetricsBatch) => void, settings: OutboundSettings, events: DispatchEvents) {
    this.ready = new Promise((resolve) => (this.onLoaded = resolve));
    const channel = randomUUID();
    this.routing = new BroadcastChannel(`${ROUTING_CHANNEL}:${channel}`);
    this.routing.unref();
    this.routing.onmessage = (event: unknown) => {
      const msg = (event as { data: RoutingMessage }).data;
      if (msg.type === 'tls-failure') {
        events.onTlsFailure?.(msg.peer, msg.message);
        return;
      }
      if (msg.type !== 'snapshot-request') return;
      // Each worker asks once its module has loaded: that is also how we know it is up.
      this.loaded++;
      if (this.loaded >= threads) this.onLoaded();
      // Identities first: a worker holding a snapshot must hold the certificates it routes with.
      if (this.identities !== null) this.postIdentities();
      if (this.snapshot.version > 0) this.post();
    };
    this.metrics = new BroadcastChannel(`${METRICS_CHANNEL}:${channel}`);
    this.metrics.unref();
    this.metrics.onmessage = (event: unknown) => onMetrics((event as { data: MetricsBatch }).data);
    this.cancels = new BroadcastChannel(`${CANCEL_CHANNEL}:${channel}`);
    this.cancels.unref();
    const sink = events.spans;
    if (sink !== undefined) {
      this.spans = new BroadcastChannel(`${SPANS_CHANNEL}:${channel}`);
      this.spans.unref();
      this.spans.onmessage = (event: unknown) => sink.absorb((event as { data: SpanBatch }).data);
    }
    this.pool = new Piscina({
      filename: WORKER_FILE,
      minThreads: threads,
      maxThreads: threads,
      idleTimeout: Number.POSITIVE_INFINITY,
      concurrentTasksPerWorker: 256,
      atomics: 'disabled',
      maxQueue: 'auto',
      workerData: { channel, settings } satisfies WorkerData,
    });
  }

  run(task: InvokeTask, transfer: Transferable[], signal?: AbortSignal): Promise<InvokeResult> {
    if (signal === undefined) return this.pool.run(task, { transferList: transfer as never }) as Promise<InvokeResult>;
    // Not piscina's own abort: it would end the worker thread, and every call on it.
    const callId = (this.lastCallId = this.lastCallId >= Number.MAX_SAFE_INTEGER ? 1 : this.lastCallId + 1);
    const onAbort = (): void => {
      if (!this.closed) this.cancels.postMessage({ type: 'cancel', callId, error: wireOf(signal.reason) } satisfies CancelMessage);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const running = this.pool.run({ ...task, callId }, { transferList: transfer as never }) as Promise<InvokeResult>;
    const untie = (): void => signal.removeEventListener('abort', onAbort);
    running.then(untie, untie);
    if (signal.aborted) onAbort();
    return running;
  }

  publish(snapshot: RoutingSnapshot): void {
    this.snapshot = snapshot;
    this.post();
  }

  private post(): void {
    if (this.closed) return;
    this.routing.postMessage({ type: 'snapshot', snapshot: this.snapshot } satisfies RoutingMessage);
  }

  setIdentities(identities: IdentitySet): void {
    this.identities = identities;
    this.postIdentities();
  }

  private postIdentities(): void {
    if (this.closed || this.identities === null) return;
    this.routing.postMessage({ type: 'identities', identities: this.identities } satisfies RoutingMessage);
  }

  async close(): Promise<void> {
    this.closed = true;
    this.routing.close();
    this.metrics.close();
    this.cancels.close();
    await this.pool.destroy();
    this.spans?.close();
  }
}

/** An abort reason as it crosses the thread boundary. */
function wireOf(reason: unknown): WireErrorShape {
  const r = reason as { code?: unknown; message?: unknown } | undefined;
  return typeof r?.code === 'string' ? { code: r.code, message: String(r.message) } : { code: 'WEFT_CANCELLED', message: 'the call was cancelled' };
}

interface OutboundLike {
  invoke(task: InvokeTask, signal?: AbortSignal): Promise<InvokeResult>;
  setSnapshot(snapshot: RoutingSnapshot): void;
  setIdentities(identities: IdentitySet): void;
  close(): void;
}

class InlineDispatcher implements Dispatcher {
  readonly mode = 'inline';
  private readonly outbound: OutboundLike;

  constructor(outbound: OutboundLike) {
    this.outbound = outbound;
  }

  run(task: InvokeTask, _transfer: Transferable[], signal?: AbortSignal): Promise<InvokeResult> {
    return this.outbound.invoke(task, signal);
  }

  publish(snapshot: RoutingSnapshot): void {
    this.outbound.setSnapshot(snapshot);
  }

  setIdentities(identities: IdentitySet): void {
    this.outbound.setIdentities(identities);
  }

  async close(): Promise<void> {
    this.outbound.close();
  }
}

export async function createDispatcher(threads: number, onMetrics: (batch: MetricsBatch) => void, settings: OutboundSettings, events: DispatchEvents = {}): Promise<Dispatcher> {
  if (threads > 0) {
    const pool = new PoolDispatcher(threads, onMetrics, settings, events);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((resolve) => (timer = setTimeout(resolve, WORKER_START_WAIT_MS)));
    await Promise.race([pool.ready, late]);
    clearTimeout(timer);
    return pool;
  }
  // The same outbound code on the main thread; loaded only in this mode.
  const [{ Outbound, optionsFrom }, { CounterBatcher }] = await Promise.all([import('../workers/outbound.ts'), import('../workers/counters.ts')]);
  const counters = new CounterBatcher(0, onMetrics);
  const options = optionsFrom(settings, counters.count);
  return new InlineDispatcher(new Outbound({ ...options, spans: events.spans, onTlsFailure: (peer, message) => events.onTlsFailure?.(peer, message) }));
}
