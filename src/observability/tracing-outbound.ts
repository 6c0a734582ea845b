/**
 * The outbound side's spans (a worker thread, or the main thread with `--workers 0`): one
 * CLIENT span per attempt of a call, child of the span the task names (`task.trace`), carrying
 * the resiliency decisions as events:
 *
 * - `weft.retry` (on the failed attempt): the backoff chosen (`weft.retry.delay_ms`) and why;
 * - `weft.retry.stopped`: no retry after this failure, and why (budget, deadline, not-retryable);
 * - `weft.circuit_breaker.refused`: the breaker refused the attempt (no request was sent);
 * - `weft.outlier.ejected`: this failure took the instance out of the rotation.
 *
 * Built only for a task that carries a trace; with tracing off the outbound never touches this.
 */
import type { InvokeTask, PeerAddress } from '../../workers/protocol.ts';
import type { AttemptResult, Step } from '../resiliency/compose.ts';
import type { Failure } from '../resiliency/backoff.ts';
import type { OutlierDetector } from '../resiliency/outlier.ts';
import { ATTR, SpanKind, ownTraceParent, type Span, type TraceParent, type Tracer } from './tracing.ts';

/** A step that does nothing: the place of the tracing step when a call is not traced. */
export function untraced<I, T>(next: Parameters<Step<I, T>>[0]): ReturnType<Step<I, T>> {
  return next;
}

/** The attempt span's name for each peer call method (constants: no name is built per attempt). */
const ATTEMPT_NAMES: Readonly<Record<string, string>> = {
  Mux: 'weft.peer.v1.Peer/Mux',
  Invoke: 'weft.peer.v1.Peer/Invoke',
  InvokeStream: 'weft.peer.v1.Peer/InvokeStream',
};

export class OutboundTrace {
  private readonly tracer: Tracer;
  private readonly parent: TraceParent | undefined;
  private readonly task: InvokeTask;
  private readonly outlier: OutlierDetector | undefined;
  /** The peer call method every attempt of this call uses (`Mux`, `Invoke`, `InvokeStream`). */
  private readonly rpcMethod: string;
  private readonly name: string;
  /** The attempt running, or the last one until the retry decision about it is known. */
  private open: Span | undefined;
  /** The running attempt's peer, and whether the outlier detector had it ejected when it began. */
  private peer: PeerAddress | undefined;
  private wasEjected = false;

  constructor(tracer: Tracer, task: InvokeTask, outlier: OutlierDetector | undefined, rpcMethod = 'Mux') {
    this.tracer = tracer;
    this.task = task;
    // the task's context was made by this node's ingress (checked there, or formatted by it)
    this.parent = task.trace === undefined ? undefined : ownTraceParent(task.trace, task.traceState ?? '');
    this.outlier = outlier;
    this.rpcMethod = rpcMethod;
    this.name = ATTEMPT_NAMES[rpcMethod] ?? `weft.peer.v1.Peer/${rpcMethod}`;
  }

  /** The attempt span in flight (its context goes into the peer call head). */
  get current(): Span | undefined {
    return this.open;
  }

  /**
   * The outermost resiliency step: one span per attempt. Attempts of a call run one after
   * another, so the one running is kept here and settled by two callbacks made once per call
   * (no async frame, no closures per attempt).
   */
  readonly step = <T>(next: Parameters<Step<PeerAddress, T>>[0]): ReturnType<Step<PeerAddress, T>> => {
    return (peer, attemptNo, signal) => {
      this.open?.end();
      const t = this.task;
      // The app, caller and method are on the parent (ingress) span; an attempt says where it went.
      // literal keys (ATTR's names): the object is made from a template, not key by key
      const span = this.tracer.start(this.name, SpanKind.CLIENT, this.parent, {
        'rpc.system': 'grpc',
        'rpc.service': 'weft.peer.v1.Peer',
        'rpc.method': this.rpcMethod,
        'server.address': peer.address,
        'server.port': peer.port,
        'weft.peer.node_id': peer.nodeId,
        'weft.attempt': attemptNo,
      });
      if (t.actorType !== undefined) span.set(ATTR.ACTOR_TYPE, t.actorType).set(ATTR.ACTOR_ID, t.actorId ?? '');
      this.open = span;
      this.peer = peer;
      this.wasEjected = this.outlier?.isEjected(peer.nodeId) ?? false;
      let running: Promise<AttemptResult<T>>;
      try {
        running = next(peer, attemptNo, signal);
      } catch (err) {
        this.settled(undefined);
        return Promise.reject(err);
      }
      return running.then(this.onResult as (r: AttemptResult<T>) => AttemptResult<T>, this.onThrow);
    };
  };

  private readonly onResult = <T>(result: AttemptResult<T>): AttemptResult<T> => {
    this.settled(result);
    return result;
  };

  private readonly onThrow = (err: unknown): never => {
    this.settled(undefined);
    throw err;
  };

  /** The running attempt is over (`result` undefined: it threw): what it came to goes on its span. */
  private settled<T>(result: AttemptResult<T> | undefined): void {
    const span = this.open;
    const peer = this.peer;
    if (span === undefined || peer === undefined) return;
    this.record(span, result);
    if (!this.wasEjected && this.outlier?.isEjected(peer.nodeId) === true) span.event('weft.outlier.ejected', { [ATTR.PEER_NODE_ID]: peer.nodeId });
  }

  private record<T>(span: Span, result: AttemptResult<T> | undefined): void {
    if (result === undefined) {
      span.fail('WEFT_PEER_FAILED', 'the attempt threw');
      return;
    }
    const f = result.failure;
    if (result.error !== undefined) {
      if (result.error.code === 'WEFT_CIRCUIT_OPEN') span.event('weft.circuit_breaker.refused', { 'exception.message': result.error.message });
      span.fail(result.error.code, result.error.message);
    } else if (f !== undefined && f.kind === 'http') {
      span.set('http.response.status_code', f.status);
      if (f.status >= 500) span.fail(`HTTP_${f.status}`, `the app answered ${f.status}`);
    } else if (f === undefined) {
      span.set('http.response.status_code', statusOf(result.value));
    }
  }

  /** The retry loop decided to try again after `delayMs`: said on the failed attempt, which ends. */
  retry(attemptNo: number, delayMs: number, failure: Failure, reason: string): void {
    const span = this.open;
    this.open = undefined;
    span?.event('weft.retry', { [ATTR.ATTEMPT]: attemptNo, 'weft.retry.delay_ms': Math.round(delayMs), 'weft.retry.reason': reason, 'weft.retry.never_reached_app': failure.neverReachedApp }).end();
  }

  /** The call is over: ends the last attempt, saying why it was not retried if it failed. */
  finish(stop: string | undefined, failed: boolean): void {
    const span = this.open;
    this.open = undefined;
    if (span === undefined) return;
    if (failed && stop !== undefined && stop !== 'success') span.event('weft.retry.stopped', { 'weft.retry.stop': stop });
    span.end();
  }
}

function statusOf(value: unknown): number {
  const v = value as { head?: { status?: unknown } } | undefined;
  return typeof v?.head?.status === 'number' ? v.head.status : 200;
}
