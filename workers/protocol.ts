/**
 * The wire protocol between the main thread and the outbound workers. Types only: `src/`
 * and `workers/` share nothing else across the thread boundary.
 *
 * - Each worker (started and kept by piscina) hands the main thread a MessagePort of its own at
 *   start (`WorkerHello` on piscina's channel). A call is one `CallMessage` on that port, its
 *   result one `ResultMessage` back on it: compact arrays, not piscina tasks (see the header
 *   of src/dispatch.ts for why). A cancel travels on the same port after its call.
 * - Bodies travel as exact-size ArrayBuffers in the transfer list (never a view of Node's
 *   shared 64 KiB pool, which would clone the whole pool).
 * - A body too large to hold whole (request or response) streams over a MessagePort of its
 *   own (`StreamMessage`) with credit-based flow control.
 * - Routing snapshots, TLS identities, metric batches and cancellations travel on
 *   BroadcastChannels named below.
 * - Errors cross as `{code, message}` and are rebuilt with `WeftError.from`.
 */

import type { MessagePort } from 'node:worker_threads';

export const ROUTING_CHANNEL = 'weft:routing';
export const METRICS_CHANNEL = 'weft:metrics';
/** Finished spans a worker made, in batches, for the main thread's one exporter. */
export const SPANS_CHANNEL = 'weft:spans';

/** The outbound side's fixed settings, from the node's config. */
export interface OutboundSettings {
  /**
   * mTLS to peer nodes: each channel presents the calling app's certificate (`IdentitySet`)
   * and accepts only the node the routing snapshot names. False: plaintext (explicit only).
   */
  readonly tls: boolean;
  /** Texts of the node's Dapr Resiliency documents (validated on the main thread). */
  readonly resiliency: readonly string[];
  readonly budget: { readonly ratio: number; readonly minPerSecond: number };
  readonly outlier: {
    readonly consecutiveFailures: number;
    readonly baseEjectionMs: number;
    readonly maxEjectionMs: number;
    readonly maxEjectionPercent: number;
  };
}

/** What each worker is started with (piscina `workerData`). */
export interface WorkerData {
  /** Suffix of this node's BroadcastChannel names. */
  readonly channel: string;
  readonly settings: OutboundSettings;
}

export interface PeerAddress {
  readonly nodeId: string;
  readonly address: string;
  readonly port: number;
}

/** Immutable, versioned routing state, built on the main thread and published to workers. */
export interface RoutingSnapshot {
  readonly version: number;
  /** Instances per `namespace/appId`. */
  readonly apps: Readonly<Record<string, readonly PeerAddress[]>>;
}

/** One local app's TLS identity, as an outbound thread needs it (plain PEM text). */
export interface WorkloadIdentity {
  readonly keyPem: string;
  /** The leaf, then its issuer. */
  readonly certPem: string;
  /** Bumped whenever this identity (or the roots) change; part of the channel key. */
  readonly version: number;
}

/**
 * The certificates the outbound side presents, one per local app, and the roots it trusts.
 * Sent whole on every change (there are few apps per node), on the routing channel and before
 * any snapshot that could route a call needing it, so a thread that has a snapshot also has them.
 */
export interface IdentitySet {
  /** Increases with every change; older sets are ignored. */
  readonly version: number;
  readonly trustDomain: string;
  readonly rootsPem: string;
  /** By `namespace/appId`. */
  readonly identities: Readonly<Record<string, WorkloadIdentity>>;
}

export type RoutingMessage =
  | { readonly type: 'snapshot'; readonly snapshot: RoutingSnapshot }
  | { readonly type: 'identities'; readonly identities: IdentitySet }
  /** A worker that has no snapshot yet asks for the current one (and the identities). */
  | { readonly type: 'snapshot-request' }
  /** A worker refused a peer's certificate (or could not check it): the main thread logs it. */
  | { readonly type: 'tls-failure'; readonly peer: string; readonly message: string };

export interface InvokeTask {
  readonly type: 'invoke';
  /** Routing snapshot version the main thread saw; the worker waits until it has caught up. */
  readonly routingVersion: number;
  readonly appId: string;
  readonly namespace: string;
  readonly callerAppId: string;
  readonly callerNamespace: string;
  readonly method: string;
  readonly verb: string;
  /** Query string without the leading `?`, or ''. */
  readonly query: string;
  /** Flat list: name, value, name, value... (lower-case names). */
  readonly headers: readonly string[];
  /**
   * The whole request body, or null when there is none or it streams over `port`. To a pool's
   * worker an ArrayBuffer of its own (transferred); inline it may be a view of the bytes as the
   * ingress read them.
   */
  readonly body: ArrayBuffer | Uint8Array | null;
  /** Present when the request body streams (or the caller wants the response streamed). */
  readonly port: MessagePort | null;
  /** Absolute deadline, ms since the epoch. */
  readonly deadline: number;
  /**
   * An actor call: placement on the main thread chose this one node, so no other instance is
   * tried, and the routing snapshot is not consulted (`routingVersion` may be 0).
   */
  readonly target?: PeerAddress;
  /** An actor call's type and id, sent in the call head (`method` is the actor method). */
  readonly actorType?: string;
  readonly actorId?: string;
  /**
   * The call's trace context (tracing on): the W3C `traceparent` of the span the outbound
   * attempts are children of, and its `tracestate`. Absent with tracing off.
   */
  readonly trace?: string;
  readonly traceState?: string;
}

/** What a worker posts on piscina's channel (`parentPort`) once its module has loaded. */
export interface WorkerHello {
  readonly type: 'weft-worker-port';
  /** The worker's end of the call channel is kept by the worker; this is the main thread's. */
  readonly port: MessagePort;
}

/**
 * Main thread → worker, on the worker's call port. Arrays, not objects: the structured clone
 * then carries no property names. `id` is unique per port (1 … 2^31, wrapping).
 * - a call: `CALL`, id, cancellable (1 when a `CANCEL` may follow), then the InvokeTask's fields
 *   in the order of `TASK_FIELDS`;
 * - `CANCEL`, id, code, message: abandon call `id` (the worker cancels its peer call, and the
 *   far node the app's request). It follows its call on the same port, so it never overtakes it.
 */
export const CALL = 0;
export const CANCEL = 1;
/** The InvokeTask fields a `CALL` carries after its first three cells, in this order. */
export const TASK_FIELDS = [
  'routingVersion', 'appId', 'namespace', 'callerAppId', 'callerNamespace', 'method', 'verb', 'query',
  'headers', 'body', 'port', 'deadline', 'target', 'actorType', 'actorId', 'trace', 'traceState',
] as const satisfies ReadonlyArray<Exclude<keyof InvokeTask, 'type'>>;
export type CallMessage = readonly [typeof CALL, number, 0 | 1, ...unknown[]] | readonly [typeof CANCEL, number, string, string];

/**
 * Worker → main thread, on the call port: a batch of results (those finished in one turn of the
 * worker's loop), each `[id, kind, ...]`:
 * - `RESPONSE`: status, headers, body (ArrayBuffer, transferred, or null), attempts, nodeId;
 * - `STREAM`: port (transferred, or null), attempts, nodeId;
 * - `ERROR`: code, message, attempts, nodeId.
 */
export const RESPONSE = 0;
export const STREAM = 1;
export const ERROR = 2;
export type ResultTuple =
  | readonly [number, typeof RESPONSE, number, readonly string[], ArrayBuffer | null, number, string]
  | readonly [number, typeof STREAM, MessagePort | null, number, string | null]
  | readonly [number, typeof ERROR, string, string, number, string | null];
export type ResultMessage = readonly ResultTuple[];

export interface ResponseHead {
  readonly status: number;
  readonly headers: readonly string[];
}

export interface WireErrorShape {
  readonly code: string;
  readonly message: string;
}

export type InvokeResult =
  /**
   * The whole response. From a pool's worker the body is an ArrayBuffer of its own, transferred;
   * inline (the outbound side on the calling thread) it is a view of the bytes as they came.
   */
  | { readonly type: 'response'; readonly head: ResponseHead; readonly body: ArrayBuffer | Uint8Array | null; readonly attempts: number; readonly nodeId: string }
  /** The response streams: its head and chunks come over the task's port, or the port returned here. */
  | { readonly type: 'stream'; readonly port: MessagePort | null; readonly attempts: number; readonly nodeId: string | null }
  | { readonly type: 'error'; readonly error: WireErrorShape; readonly attempts: number; readonly nodeId: string | null };

/**
 * Messages on a stream port, both ways. Data chunks are transferred ArrayBuffers.
 * The receiver grants `credit` (bytes) so the sender never runs far ahead of a slow reader.
 */
export type StreamMessage =
  | { readonly type: 'head'; readonly head: ResponseHead }
  | { readonly type: 'data'; readonly chunk: ArrayBuffer }
  | { readonly type: 'end' }
  | { readonly type: 'error'; readonly error: WireErrorShape }
  | { readonly type: 'credit'; readonly bytes: number };

/** Counters and histogram samples a worker batches up for the main thread's registry. */
export interface MetricsBatch {
  readonly type: 'metrics';
  readonly threadId: number;
  /** `name|label=value,label=value` → increment. */
  readonly counters: Readonly<Record<string, number>>;
}

/** Span attributes: OTel's primitive values. */
export type SpanAttributes = Record<string, string | number | boolean>;

export interface SpanEventData {
  readonly name: string;
  /** ms since the epoch (fractional). */
  readonly time: number;
  readonly attributes: SpanAttributes | null;
}

/**
 * One finished span as plain data (src/observability/tracing.ts makes it; the main thread turns
 * it into OTLP protobuf for the exporter). Times are ms since the epoch (fractional).
 */
export interface SpanData {
  readonly traceId: string;
  readonly spanId: string;
  /** '' for a root span. */
  readonly parentSpanId: string;
  readonly traceState: string;
  name: string;
  /** OTel SpanKind: INTERNAL 0, SERVER 1, CLIENT 2. */
  readonly kind: number;
  readonly start: number;
  /** 0 until the span ends. */
  endTime: number;
  attributes: SpanAttributes;
  events: SpanEventData[] | null;
  /** OTel SpanStatusCode: UNSET 0, OK 1, ERROR 2. */
  status: number;
  message: string;
}

/**
 * A worker's finished spans, sent on the spans channel: OTLP-encoded (a run of
 * `ScopeSpans.spans` fields, src/observability/tracing-otlp.ts), `count` of them; `dropped`
 * spans did not fit its buffer.
 */
export interface SpanBatch {
  readonly type: 'spans';
  readonly bytes: Uint8Array;
  readonly count: number;
  readonly dropped: number;
}

/** A whole body as bytes over the same memory (never a copy). */
export function bodyBytes(body: ArrayBuffer | Uint8Array): Uint8Array {
  return body instanceof ArrayBuffer ? new Uint8Array(body) : body;
}

/** A whole answer's body as a Buffer over the same bytes (never a copy). */
export function bodyBuffer(body: ArrayBuffer | Uint8Array): Buffer {
  return body instanceof ArrayBuffer ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
}
