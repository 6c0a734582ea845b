/**
 * The caller's side of one service invocation, independent of the API it came in on
 * (HTTP now, Dapr gRPC later): route it, hand it to the outbound side, and give back an
 * outcome the ingress writes out. Results inside, exceptions at the edge: failures come
 * back as WeftErrors in the outcome, never thrown.
 */
import { MessageChannel, type Transferable } from 'node:worker_threads';
import type { Readable } from 'node:stream';
import { WeftError } from './errors.ts';
import type { Dispatcher } from './dispatch.ts';
import type { RoutingTable } from './routing/table.ts';
import { UNKNOWN_TARGET, type Metrics } from './observability/metrics.ts';
import { bodyBuffer, type InvokeResult, type InvokeTask, type ResponseHead } from '../workers/protocol.ts';
import { PortReader, PortWriter, transferable } from '../workers/port-stream.ts';
import { logFields, type Span } from './observability/tracing.ts';
import type { Logger } from './observability/log.ts';

export interface OutboundCall {
  readonly appId: string;
  readonly namespace: string;
  readonly callerAppId: string;
  readonly callerNamespace: string;
  readonly method: string;
  readonly verb: string;
  readonly query: string;
  readonly headers: readonly string[];
  /**
   * A whole body, a stream, or nothing. A whole body is an exact-size (transferable) ArrayBuffer,
   * or a view of bytes already read, which goes to a pool's worker as a copy of its own and to
   * an inline outbound as it is.
   */
  readonly body: ArrayBuffer | Uint8Array | Readable | null;
  readonly deadline: number;
  /**
   * Aborts when the caller goes away (its HTTP connection closed, its gRPC call was cancelled):
   * the call is cancelled downstream, up to the app's request on the far node.
   */
  readonly signal?: AbortSignal | undefined;
  /** The span the outbound attempts are children of (tracing on), e.g. the ingress span. */
  readonly trace?: Span | undefined;
}

/**
 * What a call gives back. A `stream` outcome's call lasts until its reader is done: the ingress
 * reads it to its end or error, or closes it (which cancels what is left of the call).
 */
export type Outcome =
  | { readonly type: 'response'; readonly head: ResponseHead; readonly body: Buffer | null }
  | { readonly type: 'stream'; readonly head: ResponseHead; readonly reader: PortReader }
  | { readonly type: 'error'; readonly error: WeftError };

/**
 * How long after its deadline the calling node gives up on a call by itself. The outbound side
 * and the far node enforce the same deadline exactly (gRPC deadlines, the app request's abort)
 * and say more precisely what ran out; this is the backstop for when nothing downstream ends
 * the call at all, loose enough not to race them on a busy machine.
 */
const DEADLINE_BACKSTOP_MS = 1000;

/**
 * One call's life on the calling node, from the request until its answer's last byte: counted
 * in flight all along, and ended early, whatever the far side does, when the caller goes away
 * (counted as cancelled, not failed) or the deadline passes (the backstop).
 */
class Exchange {
  readonly controller = new AbortController();
  private readonly metrics: Metrics;
  private readonly call: OutboundCall;
  private readonly timer: NodeJS.Timeout;
  private readonly onCallerGone: () => void;
  /** The port the answer (or the whole exchange) streams over, once there is one. */
  private reader: PortReader | null = null;
  /** A request body still streaming. */
  private body: Readable | null = null;
  private ended = false;
  private callerGone = false;
  /** Routing knows instances of the target app (its series is its own, not UNKNOWN_TARGET's). */
  routed = false;

  constructor(metrics: Metrics, call: OutboundCall) {
    this.metrics = metrics;
    this.call = call;
    metrics.inflight.inc();
    this.timer = setTimeout(() => this.abort(new WeftError('WEFT_DEADLINE_EXCEEDED', `no answer from app ${call.appId} before the deadline`, { appId: call.appId })),
      Math.max(0, call.deadline - Date.now()) + DEADLINE_BACKSTOP_MS);
    // Unreferenced: clearing the last referenced timer of a duration makes Node drop that
    // duration's timer list, and the next call's timer makes a new one (a list, a place in the
    // timers' priority queue, a key in their map): per call when calls come one at a time. The
    // call's sockets keep the process alive.
    this.timer.unref();
    this.onCallerGone = () => {
      if (this.ended) return;
      this.callerGone = true;
      const dst = this.routed ? call.appId : UNKNOWN_TARGET;
      metrics.sent(call.callerAppId, dst);
      metrics.cancelled(call.callerAppId, dst);
      this.abort(new WeftError('WEFT_CANCELLED', 'the caller went away before the call finished', { appId: call.appId }));
    };
    if (call.signal !== undefined) {
      if (call.signal.aborted) this.onCallerGone();
      else call.signal.addEventListener('abort', this.onCallerGone, { once: true });
    }
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** The reason the call was given up, if it was. */
  get reason(): WeftError | undefined {
    return this.controller.signal.aborted ? this.controller.signal.reason as WeftError : undefined;
  }

  /** The call now streams over `reader`: giving up on the call cancels it. */
  streams(reader: PortReader, body: Readable | null = null): void {
    this.reader = reader;
    this.body = body;
    const reason = this.reason;
    if (reason !== undefined) this.cancelStreams(reason);
  }

  private abort(err: WeftError): void {
    if (this.ended || this.controller.signal.aborted) return;
    this.controller.abort(err);
    this.cancelStreams(err);
    // Before the answer's head, `answered` ends the exchange; after it, the reader's end does.
  }

  private cancelStreams(err: WeftError): void {
    this.reader?.cancel(err.toWire());
    this.body?.destroy();
  }

  /** The outcome is known (head or error): counted, and the exchange ends now or with the answer's body. */
  answered(outcome: Outcome, started: number): void {
    const { call } = this;
    // A caller that went away was counted as a cancellation, not as a failure. Targets no
    // instance is known of share one series, so callers naming any number of unknown ids add
    // no series.
    if (!this.callerGone) {
      const status = outcome.type === 'error' ? outcome.error.code : String(outcome.head.status);
      const dst = status === 'WEFT_APP_NOT_FOUND' ? UNKNOWN_TARGET : call.appId;
      this.metrics.sent(call.callerAppId, dst);
      this.metrics.received(call.callerAppId, dst, status, performance.now() - started);
    }
    if (outcome.type === 'stream' && !this.controller.signal.aborted) {
      this.reader = outcome.reader;
      outcome.reader.onDone(() => this.end());
    } else {
      this.end();
    }
  }

  private end(): void {
    if (this.ended) return;
    this.ended = true;
    clearTimeout(this.timer);
    this.call.signal?.removeEventListener('abort', this.onCallerGone);
    this.metrics.inflight.dec();
  }
}

export class Invoker {
  private readonly routing: RoutingTable;
  private readonly dispatcher: Dispatcher;
  private readonly metrics: Metrics;
  private readonly log: Logger | undefined;

  constructor(routing: RoutingTable, dispatcher: Dispatcher, metrics: Metrics, log?: Logger) {
    this.routing = routing;
    this.dispatcher = dispatcher;
    this.metrics = metrics;
    this.log = log;
  }

  /**
   * Runs one call to its outcome. Never throws, and always settles by the call's deadline (plus
   * the backstop) or as soon as the caller goes away, whatever the far side does.
   */
  async invoke(call: OutboundCall): Promise<Outcome> {
    const started = performance.now();
    const exchange = new Exchange(this.metrics, call);
    const outcome = await this.run(call, exchange);
    exchange.answered(outcome, started);
    // A log line about a call names its trace (and the caller node's span), so logs and traces join.
    if (outcome.type === 'error') this.log?.debug({ ...logFields(call.trace), appId: call.appId, callerAppId: call.callerAppId, method: call.method, weftCode: outcome.error.code, err: outcome.error.message }, 'call failed');
    return outcome;
  }

  private async run(call: OutboundCall, exchange: Exchange): Promise<Outcome> {
    try {
      const v = this.routing.route(call.appId, call.namespace);
      const routingVersion = typeof v === 'number' ? v : await untilAborted(v, exchange.signal);
      if (routingVersion === ABORTED) return gaveUp(exchange, call.body);
      exchange.routed = this.routing.instances(call.appId, call.namespace).length > 0;
      const whole = isWhole(call.body);
      const channel = whole ? null : new MessageChannel();
      // a view crosses to a worker as a buffer of its own; inline it is used where it is
      const wholeBody = !whole || call.body === null ? null
        : call.body instanceof Uint8Array && this.dispatcher.mode === 'workers' ? transferable(call.body) : call.body as ArrayBuffer | Uint8Array;
      const task: InvokeTask = {
        type: 'invoke', routingVersion, appId: call.appId, namespace: call.namespace,
        callerAppId: call.callerAppId, callerNamespace: call.callerNamespace,
        method: call.method, verb: call.verb, query: call.query, headers: call.headers,
        body: wholeBody,
        port: channel === null ? null : channel.port2,
        deadline: call.deadline,
        trace: call.trace?.traceparent, traceState: call.trace?.traceState,
      };
      const transfer: Transferable[] = [];
      if (task.body instanceof ArrayBuffer) transfer.push(task.body);
      if (channel !== null) transfer.push(channel.port2);
      if (channel === null) {
        const running = this.dispatcher.run(task, transfer, exchange.signal);
        const result = await untilAborted(running, exchange.signal);
        if (result === ABORTED) {
          // The outbound side cancels its call; an answer that streams anyway is let go.
          running.then((late) => (late.type === 'stream' ? late.port?.close() : undefined), () => {});
          return gaveUp(exchange, null);
        }
        return await this.settle(result, call.appId, exchange);
      }
      // The body streams over our end of the port while the outbound side sends it on.
      const reader = new PortReader(channel.port1);
      const writer = new PortWriter(channel.port1);
      const body = call.body as Readable;
      exchange.streams(reader, body);
      void pump(body, writer);
      // The task ends only when the whole exchange has, so the answer is read meanwhile.
      this.dispatcher.run(task, transfer, exchange.signal).then(
        (result) => {
          if (result.type === 'error') reader.fail(result.error);
        },
        (err: unknown) => reader.fail(WeftError.from(err, call.appId).toWire()),
      );
      return await this.headOf(reader, call.appId);
    } catch (err) {
      return { type: 'error', error: WeftError.from(err, call.appId) };
    }
  }

  private async settle(result: InvokeResult, appId: string, exchange: Exchange): Promise<Outcome> {
    switch (result.type) {
      case 'response':
        return { type: 'response', head: result.head, body: result.body === null ? null : bodyBuffer(result.body) };
      case 'error':
        return { type: 'error', error: WeftError.from(result.error, appId) };
      case 'stream': {
        if (result.port === null) return { type: 'error', error: new WeftError('WEFT_INTERNAL', 'a stream without a port', { appId }) };
        const reader = new PortReader(result.port);
        exchange.streams(reader);
        return this.headOf(reader, appId);
      }
    }
  }

  /** Waits for the head of a streamed answer (or its failure, or the exchange being given up). */
  private async headOf(reader: PortReader, appId: string): Promise<Outcome> {
    const first = await reader.next();
    if (first.type === 'head') return { type: 'stream', head: first.head, reader };
    reader.close();
    if (first.type === 'error') return { type: 'error', error: WeftError.from(first.error, appId) };
    return { type: 'error', error: new WeftError('WEFT_PEER_FAILED', 'the answer ended before its head', { appId }) };
  }
}

const ABORTED = Symbol('aborted');

/** `p`, or ABORTED as soon as `signal` aborts (`p` is left to settle on its own). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** The outcome of a call given up before its answer: why it was. */
function gaveUp(exchange: Exchange, body: OutboundCall['body']): Outcome {
  if (!isWhole(body)) (body as Readable).destroy();
  return { type: 'error', error: exchange.reason ?? new WeftError('WEFT_CANCELLED', 'the call was cancelled') };
}

/** The body is whole (or absent), not a stream. */
function isWhole(body: OutboundCall['body']): body is ArrayBuffer | Uint8Array | null {
  return body === null || body instanceof ArrayBuffer || body instanceof Uint8Array;
}

/** Sends a request body over a port; a failure of the body ends the stream with an error. */
async function pump(body: Readable, writer: PortWriter): Promise<void> {
  try {
    for await (const chunk of body) await writer.write(chunk as Buffer);
    writer.end();
  } catch (err) {
    if (!writer.isClosed) writer.error(WeftError.from(err).toWire());
    body.destroy();
  }
}
