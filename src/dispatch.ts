/**
 * Hands calls to the outbound side: a piscina pool of workers owning the gRPC channels, or,
 * with `workers: 0`, the same outbound code on the main thread.
 */
import { BroadcastChannel } from 'node:worker_threads';
import type { MessagePort, Transferable } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { randomUUID } from 'node:crypto';
import type { CallMessage, IdentitySet, InvokeResult, InvokeTask, MetricsBatch, OutboundSettings, ResultMessage, ResultTuple, RoutingMessage, RoutingSnapshot, SpanBatch, WireErrorShape, WorkerData, WorkerHello } from '../workers/protocol.ts';
import { CALL, CANCEL, ERROR, METRICS_CHANNEL, RESPONSE, ROUTING_CHANNEL, SPANS_CHANNEL, STREAM, TASK_FIELDS } from '../workers/protocol.ts';
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
   * A worker thread failed (an uncaught error, or it exited): its calls in flight failed with
   * WEFT_INTERNAL and piscina starts another in its place.
   */
  onWorkerError?(err: Error): void;
  /**
   * Tracing on: where the outbound side's finished spans go (the node's one exporter). Workers
   * send theirs in batches on the spans channel; inline, the outbound adds them directly.
   */
  readonly spans?: (SpanSink & { absorb(batch: SpanBatch): void }) | undefined;
}

/** The longest a node waits for its workers at start before it serves anyway. */
const WORKER_START_WAIT_MS = 10_000;
const WORKER_FILE = moduleUrl('workers/peer-worker.ts');

/** One call waiting for its result from a worker. */
interface Pending {
  resolve(result: InvokeResult): void;
  readonly signal: AbortSignal | undefined;
  readonly onAbort: (() => void) | undefined;
}

/** A worker's call port and the calls in flight on it. */
class WorkerPort {
  readonly port: MessagePort;
  readonly pending = new Map<number, Pending>();
  private lastId = 0;

  constructor(port: MessagePort) {
    this.port = port;
  }

  nextId(): number {
    this.lastId = this.lastId >= MAX_CALL_ID ? 1 : this.lastId + 1;
    return this.lastId;
  }
}

/** Call ids wrap here (per port: no two calls in flight on one port share one). */
const MAX_CALL_ID = 0x7fffffff;

/**
 * Calls go to the workers over a MessagePort per worker (protocol.ts: CallMessage), not as
 * piscina tasks. Why: at 1000 calls/s a `piscina.run` cost node A's main thread ~100 µs of CPU
 * per call (task bookkeeping, a Promise and TaskInfo per call, ref/unref of the port, an
 * Atomics notify, the task object's structured clone), as much as the outbound work it moved
 * off the thread; a bare message each way on a port of our own costs ~40 µs, most of it the
 * thread wake-ups themselves (docs/benchmark.md, "The worker pool"). piscina still starts,
 * keeps and restarts the workers.
 *
 * Why these pool settings: a worker owns long-lived channels, so piscina must never park its
 * event loop in Atomics.wait (that stalls gRPC keepalives); and it is handed no tasks at all.
 */
class PoolDispatcher implements Dispatcher {
  readonly mode = 'workers';
  private readonly pool: Piscina;
  private readonly routing: BroadcastChannel;
  private readonly metrics: BroadcastChannel;
  private readonly spans: BroadcastChannel | null = null;
  private readonly ports: WorkerPort[] = [];
  /** Calls made before any worker had handed over its port. */
  private waiting: Array<() => void> = [];
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
      atomics: 'disabled',
      workerData: { channel, settings } satisfies WorkerData,
    });
    // Without a listener piscina's 'error' (a worker failed with no piscina task on it, which is
    // always, here) would end the process.
    this.pool.on('error', (err: Error) => events.onWorkerError?.(err));
    // Each worker's call port, as it starts (and again when piscina replaces a worker that died).
    this.pool.on('message', (msg: WorkerHello) => {
      if (msg?.type === 'weft-worker-port') this.adopt(msg.port);
    });
  }

  private adopt(port: MessagePort): void {
    if (this.closed) {
      port.close();
      return;
    }
    const worker = new WorkerPort(port);
    this.ports.push(worker);
    port.on('message', (batch: ResultMessage) => {
      for (const r of batch) {
        const p = worker.pending.get(r[0]);
        if (p === undefined) continue;
        worker.pending.delete(r[0]);
        p.signal?.removeEventListener('abort', p.onAbort as () => void);
        p.resolve(resultOf(r));
      }
    });
    // The worker exited (it crashed, or the pool is closing): its calls fail; piscina starts another.
    port.on('close', () => {
      const i = this.ports.indexOf(worker);
      if (i >= 0) this.ports.splice(i, 1);
      const lost = [...worker.pending.values()];
      worker.pending.clear();
      for (const p of lost) {
        p.signal?.removeEventListener('abort', p.onAbort as () => void);
        p.resolve({ type: 'error', error: { code: 'WEFT_INTERNAL', message: 'the outbound worker thread exited during the call' }, attempts: 0, nodeId: null });
      }
    });
    port.unref();
    const waiting = this.waiting;
    this.waiting = [];
    for (const go of waiting) go();
  }

  /**
   * The worker with the fewest calls in flight, the first among equals (as piscina picks): calls
   * one at a time all go to one worker, so its round robin over instances is the node's.
   */
  private pick(): WorkerPort | undefined {
    let best = this.ports[0];
    for (let i = 1; i < this.ports.length && best !== undefined && best.pending.size > 0; i++) {
      const w = this.ports[i] as WorkerPort;
      if (w.pending.size < best.pending.size) best = w;
    }
    return best;
  }

  run(task: InvokeTask, transfer: Transferable[], signal?: AbortSignal): Promise<InvokeResult> {
    return new Promise((resolve) => {
      if (this.closed) {
        resolve({ type: 'error', error: { code: 'WEFT_SHUTTING_DOWN', message: 'the node is shutting down' }, attempts: 0, nodeId: null });
        return;
      }
      const worker = this.pick();
      if (worker === undefined) {
        // No worker is up yet (or all were replaced at once): the call goes with the first.
        this.waiting.push(() => void this.run(task, transfer, signal).then(resolve));
        return;
      }
      const id = worker.nextId();
      const msg: unknown[] = [CALL, id, signal === undefined ? 0 : 1];
      for (const field of TASK_FIELDS) msg.push(task[field]);
      if (signal === undefined) {
        worker.pending.set(id, { resolve, signal: undefined, onAbort: undefined });
        worker.port.postMessage(msg, transfer);
        return;
      }
      // Not piscina's own abort: it would end the worker thread, and every call on it.
      const onAbort = (): void => {
        if (!worker.pending.has(id)) return;
        const wire = wireOf(signal.reason);
        worker.port.postMessage([CANCEL, id, wire.code, wire.message] satisfies CallMessage);
      };
      worker.pending.set(id, { resolve, signal, onAbort });
      worker.port.postMessage(msg, transfer);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
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
    const waiting = this.waiting;
    this.waiting = [];
    for (const go of waiting) go();
    await this.pool.destroy();
    for (const w of this.ports.splice(0)) w.port.close();
    this.spans?.close();
  }
}

/** A worker's result tuple as the InvokeResult the callers read. */
function resultOf(r: ResultTuple): InvokeResult {
  switch (r[1]) {
    case RESPONSE:
      return { type: 'response', head: { status: r[2], headers: r[3] }, body: r[4], attempts: r[5], nodeId: r[6] };
    case STREAM:
      return { type: 'stream', port: r[2], attempts: r[3], nodeId: r[4] };
    case ERROR:
      return { type: 'error', error: { code: r[2], message: r[3] }, attempts: r[4], nodeId: r[5] };
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
  return new InlineDispatcher(new Outbound({ ...options, sameThread: true, spans: events.spans, onTlsFailure: (peer, message) => events.onTlsFailure?.(peer, message) }));
}
