/**
 * Tracing, the part every thread uses: W3C trace context (`traceparent`, `tracestate`), span
 * ids, the sampling decision and a small recording span whose finished data (`SpanData`, a
 * plain object) goes to a sink. The main thread's sink feeds the OTLP exporter
 * (tracing-export.ts); a worker's sink batches the data to the main thread, so a node exports
 * from one place and no worker runs an SDK of its own.
 *
 * Why not the SDK's tracer on the hot path: a call is a handful of spans on two nodes and the
 * budget is a few µs each (docs/tracing.md). Context travels explicitly with the call (a
 * field on the call, the task, the peer call head), never through AsyncLocalStorage, so with
 * tracing off a call pays one boolean check per stage and allocates nothing.
 *
 * Pure module (no SDK, no Node APIs but crypto and perf_hooks): safe on any thread.
 */
import { randomFillSync } from 'node:crypto';
import type { SpanData, SpanEventData, SpanAttributes } from '../../workers/protocol.ts';
import { SpanChunk } from './tracing-otlp.ts';

export type { SpanData, SpanAttributes };

/** OTel SpanKind numbers (api's enum: INTERNAL 0, SERVER 1, CLIENT 2, PRODUCER 3, CONSUMER 4). */
export const SpanKind = { INTERNAL: 0, SERVER: 1, CLIENT: 2 } as const;
/** OTel SpanStatusCode numbers. */
export const StatusCode = { UNSET: 0, OK: 1, ERROR: 2 } as const;

/** Semantic-convention names not in the stable set (rpc.*), and weft's own. Here, not in tracing-spans.ts, so the outbound threads never load @opentelemetry/semantic-conventions. */
export const ATTR = {
  RPC_SYSTEM: 'rpc.system',
  RPC_SERVICE: 'rpc.service',
  RPC_METHOD: 'rpc.method',
  RPC_GRPC_STATUS_CODE: 'rpc.grpc.status_code',
  /** The app the call is for, and its namespace. */
  APP_ID: 'weft.app_id',
  NAMESPACE: 'weft.namespace',
  /** The calling app. */
  CALLER_APP_ID: 'weft.caller.app_id',
  /** The method called on the app (or the actor). */
  METHOD: 'weft.method',
  NODE_ID: 'weft.node_id',
  PEER_NODE_ID: 'weft.peer.node_id',
  ATTEMPT: 'weft.attempt',
  ACTOR_TYPE: 'weft.actor.type',
  ACTOR_ID: 'weft.actor.id',
} as const;

export const TRACEPARENT = 'traceparent';
export const TRACESTATE = 'tracestate';

/** A parsed `traceparent` (plus its `tracestate`): the parent of a span made here. */
export interface TraceParent {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  readonly traceState: string;
}

// ---------------------------------------------------------------- ids

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
/** The pool's bytes as hex: ids are slices of it (one native conversion per 4 KiB, not one per id). */
let poolHex = '';
let poolAt = POOL_BYTES * 2;

/** `bytes` random bytes as lower-case hex, from a pooled buffer refilled 4 KiB at a time. */
function randomHex(bytes: number): string {
  const chars = bytes * 2;
  if (poolAt + chars > poolHex.length) {
    randomFillSync(pool);
    poolHex = pool.toString('hex');
    poolAt = 0;
  }
  const s = poolHex.slice(poolAt, poolAt + chars);
  poolAt += chars;
  return s;
}

export function newTraceId(): string {
  return randomHex(16);
}

export function newSpanId(): string {
  return randomHex(8);
}

const INVALID_TRACE = '00000000000000000000000000000000';
const INVALID_SPAN = '0000000000000000';

/** Whether `s[from, to)` is lower-case hex (W3C allows no other). */
function isHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return false;
  }
  return true;
}

/**
 * Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); undefined for anything else
 * (an invalid parent is ignored, as the W3C spec says: the call starts a new trace).
 * Versions above 00 are read by their first four fields, as the spec asks. (By hand, not by a
 * regular expression: every traced call on every node parses one.)
 */
export function parseTraceParent(value: string | undefined, traceState = ''): TraceParent | undefined {
  if (value === undefined || value.length < 55) return undefined;
  const v = value.length === 55 ? value : value.trim();
  if (v.length < 55 || v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return undefined;
  if (!isHex(v, 0, 2) || !isHex(v, 3, 35) || !isHex(v, 36, 52) || !isHex(v, 53, 55)) return undefined;
  const version = v.slice(0, 2);
  if (version === 'ff') return undefined;
  // more after the flags: only from a later version, and only after a '-'
  if (v.length > 55 && (version === '00' || v.charCodeAt(55) !== 45)) return undefined;
  const traceId = v.slice(3, 35);
  const spanId = v.slice(36, 52);
  if (traceId === INVALID_TRACE || spanId === INVALID_SPAN) return undefined;
  return { traceId, spanId, sampled: sampledFlag(v), traceState };
}

/**
 * The parent a traceparent this node made names (`formatTraceParent`: a task's context on its
 * way to the outbound side), read without checking it again.
 */
export function ownTraceParent(traceparent: string, traceState: string): TraceParent {
  return { traceId: traceparent.slice(3, 35), spanId: traceparent.slice(36, 52), sampled: sampledFlag(traceparent), traceState };
}

/** Whether a traceparent weft made (or checked) says sampled: the low bit of its flags. */
export function sampledFlag(traceparent: string): boolean {
  const c = traceparent.charCodeAt(54);
  // '1' '3' '5' '7' '9' 'b' 'd' 'f' are odd
  return c >= 97 ? ((c - 87) & 1) === 1 : ((c - 48) & 1) === 1;
}

export function formatTraceParent(traceId: string, spanId: string, sampled: boolean): string {
  return `00-${traceId}-${spanId}-${sampled ? '01' : '00'}`;
}

// ---------------------------------------------------------------- spans

/** Where finished spans go (the main thread's export queue, or a worker's batch). */
export interface SpanSink {
  add(span: SpanData): void;
}

/** Shared by spans made without attributes until one is set (never written to). */
const EMPTY_ATTRS: SpanAttributes = Object.freeze({}) as SpanAttributes;

/** Wall-clock ms since the epoch with sub-ms precision (performance.now on the epoch). */
const ORIGIN = performance.timeOrigin;
function nowMs(): number {
  return ORIGIN + performance.now();
}

/**
 * One span. Unsampled spans exist only to carry the trace id and the decision on to the next
 * hop: they record nothing and never reach the sink. A recording span is its own finished data
 * (`SpanData`): the sink takes the span itself, so a span is one object, not two.
 */
export class Span implements SpanData {
  readonly traceId: string;
  readonly spanId: string;
  readonly sampled: boolean;
  readonly traceState: string;
  /** Whether the span records (it was sampled): only then are the fields below kept up. */
  readonly recording: boolean;
  readonly parentSpanId: string;
  name: string;
  readonly kind: number;
  readonly start: number;
  endTime = 0;
  attributes: SpanAttributes;
  events: SpanEventData[] | null = null;
  status: number = StatusCode.UNSET;
  message = '';
  private readonly sink: SpanSink | null;
  private formatted: string | undefined;

  /**
   * An unsampled span under a parent keeps the parent's id: it records nothing, so the next hop
   * may as well name the parent (no id to make, and the decision travels on all the same).
   */
  constructor(sink: SpanSink | null, name: string, kind: number, traceId: string, parentSpanId: string, traceState: string, sampled: boolean, attributes: SpanAttributes | null) {
    this.traceId = traceId;
    this.spanId = sampled || parentSpanId === '' ? newSpanId() : parentSpanId;
    this.sampled = sampled;
    this.traceState = traceState;
    this.recording = sampled;
    this.parentSpanId = parentSpanId;
    this.name = name;
    this.kind = kind;
    this.start = sampled ? nowMs() : 0;
    this.attributes = sampled && attributes !== null ? attributes : EMPTY_ATTRS;
    this.sink = sampled ? sink : null;
  }

  /** This span as the parent of the next hop. */
  get traceparent(): string {
    return (this.formatted ??= formatTraceParent(this.traceId, this.spanId, this.sampled));
  }

  /** This span as the parent of a span made here. */
  get context(): TraceParent {
    return { traceId: this.traceId, spanId: this.spanId, sampled: this.sampled, traceState: this.traceState };
  }

  /** Sets the attributes at once (a span made with none): built only when the span records. */
  attrs(attributes: SpanAttributes): this {
    if (this.recording) this.attributes = attributes;
    return this;
  }

  set(key: string, value: string | number | boolean): this {
    if (this.recording) {
      if (this.attributes === EMPTY_ATTRS) this.attributes = {};
      this.attributes[key] = value;
    }
    return this;
  }

  setName(name: string): this {
    if (this.recording) this.name = name;
    return this;
  }

  event(name: string, attributes?: SpanAttributes): this {
    if (this.recording) {
      const e: SpanEventData = { name, time: nowMs(), attributes: attributes ?? null };
      (this.events ??= []).push(e);
    }
    return this;
  }

  /** Marks the span failed: OTel status ERROR, `error.type` the stable weft code. */
  fail(code: string, message: string): this {
    if (this.recording && this.endTime === 0) {
      this.status = StatusCode.ERROR;
      this.message = message;
      this.set('error.type', code);
    }
    return this;
  }

  /** Ends the span once; later calls do nothing. */
  end(): void {
    if (!this.recording || this.endTime !== 0) return;
    this.endTime = nowMs();
    this.sink?.add(this);
  }
}

/** `trace_id` and `span_id` for a log line about a call (pino fields). */
export function logFields(span: Span | undefined): { trace_id: string; span_id: string } | Record<string, never> {
  return span === undefined ? {} : { trace_id: span.traceId, span_id: span.spanId };
}

/**
 * The root sampling decision for a call with no parent: a ratio of trace ids, decided from
 * the trace id itself (so every node that sees the same id decides alike).
 */
export interface RootSampler {
  /** 0: never, 1: always, between: that share of trace ids. */
  readonly ratio: number;
  /** Follow a parent's decision (parentbased_*); false: decide every span by the ratio. */
  readonly parentBased: boolean;
}

/**
 * The trace id's decision at `ratio`: its last 8 bytes read as a number below the ratio's
 * share of 2^64 (the lower half of the id is the random part W3C level 2 promises).
 */
export function ratioSampled(traceId: string, ratio: number): boolean {
  if (ratio >= 1) return true;
  if (ratio <= 0) return false;
  // 56 bits keep the arithmetic exact in a double
  const x = parseInt(traceId.slice(18, 32), 16);
  return x < ratio * 2 ** 56;
}

/**
 * A thread's tracer: `on` is the one check the hot path makes. With `on` false, nothing else is
 * called. `start` makes a span under `parent` (or a new trace), deciding sampling the
 * parent-based way when the sampler says so.
 */
export class Tracer {
  readonly on: boolean;
  readonly sampler: RootSampler;
  private readonly sink: SpanSink | null;

  constructor(on: boolean, sampler: RootSampler, sink: SpanSink | null) {
    this.on = on;
    this.sampler = sampler;
    this.sink = sink;
  }

  start(name: string, kind: number, parent: TraceParent | undefined, attributes: SpanAttributes | null): Span {
    if (parent === undefined) {
      const traceId = newTraceId();
      return new Span(this.sink, name, kind, traceId, '', '', ratioSampled(traceId, this.sampler.ratio), attributes);
    }
    const sampled = this.sampler.parentBased ? parent.sampled : ratioSampled(parent.traceId, this.sampler.ratio);
    return new Span(this.sink, name, kind, parent.traceId, parent.spanId, parent.traceState, sampled, attributes);
  }

  /** A child of a span made here (same decision). */
  child(parent: Span, name: string, kind: number, attributes: SpanAttributes | null): Span {
    return new Span(this.sink, name, kind, parent.traceId, parent.spanId, parent.traceState, parent.sampled, attributes);
  }
}

/** The tracer of a node with tracing off: `on` is false and nothing is ever recorded. */
export const OFF = new Tracer(false, { ratio: 0, parentBased: true }, null);

/** Spans a sink encoded, as a batch: their OTLP bytes (a run of `ScopeSpans.spans` fields) and how many. */
export interface EncodedSpans {
  readonly bytes: Uint8Array;
  readonly count: number;
}

const NO_SPANS: EncodedSpans = { bytes: new Uint8Array(0), count: 0 };

/**
 * A sink that encodes each span as OTLP as it ends (tracing-otlp.ts) and hands the bytes on in
 * batches: a worker's, to the main thread, whose exporter adds them to its queue as they are.
 * A batch crosses the thread boundary as one byte array, not as a structured clone of every
 * span's objects, and the span objects die young on the thread that made them.
 */
export class BatchingSink implements SpanSink {
  private chunk: SpanChunk | null = null;
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  private readonly send: (spans: EncodedSpans, dropped: number) => void;
  private readonly max: number;
  private readonly delayMs: number;

  /** `max`: spans held at most (the rest are dropped and counted); a batch goes at 512 spans or after `delayMs`. */
  constructor(send: (spans: EncodedSpans, dropped: number) => void, max = 2048, delayMs = 200) {
    this.send = send;
    this.max = max;
    this.delayMs = delayMs;
  }

  add(span: SpanData): void {
    const chunk = (this.chunk ??= new SpanChunk(0));
    if (chunk.count >= this.max || !chunk.add(span)) {
      this.dropped++;
      return;
    }
    if (chunk.count >= 512) this.flush();
    else if (this.timer === undefined) {
      this.timer = setTimeout(() => this.flush(), this.delayMs);
      this.timer.unref();
    }
  }

  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const chunk = this.chunk;
    this.chunk = null;
    const count = chunk?.count ?? 0;
    if (count === 0 && this.dropped === 0) return;
    const dropped = this.dropped;
    this.dropped = 0;
    this.send(chunk === null || count === 0 ? NO_SPANS : { bytes: chunk.spans(), count }, dropped);
  }
}
