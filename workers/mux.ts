/**
 * The caller's end of the Peer service's Mux stream: many small calls as messages on one
 * long-lived gRPC stream per channel (one channel per caller identity and peer), instead of
 * one gRPC call each.
 *
 * Why: per call, grpc-js builds a chain of call objects, an HTTP/2 stream, header blocks and
 * trailers on both nodes; a CPU profile of a caller node at saturation put that at roughly a
 * third of its time. On the stream a call is one length-prefixed message each way.
 *
 * Contract:
 * - `invoke()` resolves with the peer's answer or rejects with a CallFailure. A call is
 *   `retryable` only if it surely never reached the peer: the stream failed before the
 *   peer's first frame (id 0) arrived, or the peer said it does not serve the app.
 * - Each call has its own deadline (sent as time left) and may be cancelled through its
 *   AbortSignal; a cancel frame tells the peer to abandon the app call.
 * - When the stream ends or fails, every call in flight fails, and the next call opens a new
 *   stream on the same channel.
 */
import * as grpc from '@grpc/grpc-js';
import type { CallHead, MuxRequest, MuxResponse } from '../src/peer/codec.ts';
import { PeerMethods, decodeMuxResponse, encodeMuxRequest } from '../src/peer/codec.ts';
import type { WireErrorShape } from './protocol.ts';
import { CallFailure, failure } from './failure.ts';

const EMPTY = new Uint8Array(0);
/** Ids wrap well before uint32 runs out; 0 is the peer's "stream open" frame. */
const MAX_ID = 0x7fffffff;

interface Pending {
  resolve(res: MuxResponse): void;
  reject(err: CallFailure): void;
  timer: NodeJS.Timeout | undefined;
}

/** One gRPC stream and the calls in flight on it. */
interface Stream {
  readonly call: grpc.ClientDuplexStream<MuxRequest, MuxResponse>;
  readonly pending: Map<number, Pending>;
  /** The peer's first frame arrived: anything sent since may have reached it. */
  open: boolean;
}

export class MuxStream {
  private readonly client: grpc.Client;
  private readonly where: string;
  private current: Stream | null = null;
  private nextId = 1;

  constructor(client: grpc.Client, where: string) {
    this.client = client;
    this.where = where;
  }

  invoke(head: CallHead, body: Uint8Array, deadline: number, signal: AbortSignal | null): Promise<MuxResponse> {
    const msLeft = Math.floor(deadline - Date.now());
    if (msLeft <= 0) return Promise.reject(new CallFailure({ code: 'WEFT_DEADLINE_EXCEEDED', message: `deadline passed before ${this.where} was called` }, false));
    const stream = this.stream();
    const id = this.nextId;
    this.nextId = id >= MAX_ID ? 1 : id + 1;
    const answer = new Promise<MuxResponse>((resolve, reject) => {
      const entry: Pending = { resolve, reject, timer: undefined };
      // The peer enforces the deadline too; this guards against a peer that never answers.
      entry.timer = setTimeout(() => this.abandon(stream, id, { code: 'WEFT_DEADLINE_EXCEEDED', message: `no answer from ${this.where} before the deadline` }), msLeft + 50);
      // (unreferenced, as the invoker's backstop is: no timer list made and dropped per call)
      entry.timer.unref();
      stream.pending.set(id, entry);
      stream.call.write({ id, head, body, timeoutMs: msLeft, cancel: false });
    });
    if (signal === null) return answer;
    const onAbort = (): void => {
      const r = signal.reason as { code?: unknown; message?: unknown } | undefined;
      this.abandon(stream, id, typeof r?.code === 'string' ? { code: r.code, message: String(r.message) } : { code: 'WEFT_CANCELLED', message: 'call cancelled' });
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const untie = (): void => signal.removeEventListener('abort', onAbort);
    answer.then(untie, untie);
    return answer;
  }

  /** Fails one call locally and tells the peer to stop working on it. */
  private abandon(stream: Stream, id: number, wire: WireErrorShape): void {
    const p = stream.pending.get(id);
    if (p === undefined) return;
    stream.pending.delete(id);
    clearTimeout(p.timer);
    if (stream.call.writable) stream.call.write({ id, head: null, body: EMPTY, timeoutMs: 0, cancel: true });
    p.reject(new CallFailure(wire, false));
  }

  private stream(): Stream {
    if (this.current !== null) return this.current;
    const call = this.client.makeBidiStreamRequest(PeerMethods.mux, encodeMuxRequest, decodeMuxResponse, new grpc.Metadata(), {});
    const stream: Stream = { call, pending: new Map(), open: false };
    this.current = stream;
    call.on('data', (res: MuxResponse) => {
      if (res.id === 0) {
        stream.open = true;
        return;
      }
      const p = stream.pending.get(res.id);
      if (p === undefined) return;
      stream.pending.delete(res.id);
      clearTimeout(p.timer);
      if (res.errorCode !== '') p.reject(failure(res.errorCode, res.errorMessage));
      else p.resolve(res);
    });
    const fail = (err: grpc.ServiceError | null): void => {
      if (this.current === stream) this.current = null;
      // Before the peer's first frame nothing on this stream reached it.
      const wire: WireErrorShape = stream.open
        ? { code: 'WEFT_PEER_FAILED', message: `the stream to ${this.where} failed: ${err?.details ?? 'closed'}` }
        : { code: 'WEFT_PEER_UNAVAILABLE', message: `${this.where} is unreachable: ${err?.details ?? 'stream closed'}` };
      const pending = [...stream.pending.values()];
      stream.pending.clear();
      for (const p of pending) {
        clearTimeout(p.timer);
        p.reject(new CallFailure(wire, !stream.open));
      }
    };
    // The peer ends its side cleanly (status OK) only once every call it ran is answered, and
    // its answers come before its end: a call still pending then was never run (the peer was
    // shutting down when it arrived), so it may go to another instance.
    call.on('status', (status: grpc.StatusObject) => {
      if (status.code !== grpc.status.OK || stream.pending.size === 0) return;
      if (this.current === stream) this.current = null;
      const pending = [...stream.pending.values()];
      stream.pending.clear();
      for (const p of pending) {
        clearTimeout(p.timer);
        p.reject(failure('WEFT_SHUTTING_DOWN', `${this.where} ended the stream before running the call: it is shutting down`));
      }
    });
    call.on('error', (err: grpc.ServiceError) => fail(err));
    call.on('end', () => fail(null));
    return stream;
  }

  /** Ends the stream once the calls in flight on it are answered; new calls open a new one. */
  close(): void {
    const stream = this.current;
    if (stream === null) return;
    this.current = null;
    stream.call.end();
  }
}
