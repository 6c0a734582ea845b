/**
 * The peer server: other nodes call it to reach the apps this node serves (weft.peer.v1.Peer).
 *
 * For each call it checks that this node serves the app (else WEFT_NOT_SERVING, which the
 * caller treats as "try another instance": the app never saw the call), asks the `authorize`
 * hook who is calling (with mTLS: from the verified client certificate, never the request head)
 * and whether they may (the target app's access policy), sets the caller and
 * callee headers itself (never trusting the caller's copies), calls the app through its app
 * channel under the call's gRPC deadline, and sends the answer back whole or streamed.
 */
import { randomUUID } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import type { ServerSurfaceCall } from '@grpc/grpc-js/build/src/server-call.js';
import type { Readable } from 'node:stream';
import { WeftError } from '../errors.ts';
import { normalizeMethod } from '../method-path.ts';
import { appAborted } from '../appchannel/http.ts';
import type { AppChannel, AppResponse } from '../appchannel/channel.ts';
import {
  type CallHead, type FetchBodyRequest, type InvokeRequest, type InvokeResponse, type MuxRequest, type MuxResponse, type StreamFrame,
  decodeMuxRequest, decodeMuxResponse, encodeMuxRequest, encodeMuxResponse,
  ERROR_APP_KEY, ERROR_CODE_KEY, PeerMethods,
  decodeFetchBodyRequest, decodeInvokeRequest, decodeStreamFrame,
  encodeInvokeResponse, encodeStreamFrame, encodeFetchBodyRequest, encodeInvokeRequest, decodeInvokeResponse,
} from './codec.ts';
import { WHOLE_BODY_LIMIT } from '../../workers/port-stream.ts';
import { GrpcAppChannel } from '../appchannel/grpc.ts';
import { identity, proxyHead, relayable, splice, type SpliceResult } from './proxy.ts';
import { ATTR, OFF, TRACEPARENT, TRACESTATE, logFields, type Span, type Tracer } from '../observability/tracing.ts';
import type { Logger } from '../observability/log.ts';
import { appCallSpan, endAppCall, endFailed, endGrpc, grpcAppCallSpan, peerServerSpan, propagate, proxyServerSpan, withTraceContext } from '../observability/tracing-spans.ts';

/** What the server knows about the caller once its transport identity is checked. */
export interface CallerIdentity {
  readonly appId: string;
  readonly namespace: string;
}

export interface PeerServerHooks {
  /** The app channel for an app this node serves, or undefined. */
  lookup(appId: string, namespace: string): AppChannel | undefined;
  /**
   * Decides who is calling (from the verified client certificate when TLS is on) and whether
   * they may; throws a WeftError to refuse. Without TLS the head's caller fields are used.
   */
  authorize(call: ServerSurfaceCall, head: CallHead): CallerIdentity;
  /**
   * Called once per finished call, for metrics. `caller` is who `authorize` said called;
   * undefined when the call failed before that.
   */
  onCall?(head: CallHead, status: number | WeftError, started: bigint, caller: CallerIdentity | undefined): void;
  /** Called once per finished proxied gRPC call (Proxy), for metrics: its gRPC status, or the WeftError that refused it. */
  onProxyCall?(head: CallHead, outcome: SpliceResult | WeftError, started: bigint, caller: CallerIdentity | undefined): void;
  /**
   * An actor call (the head names `actorType`/`actorId`): the node's actor runtime checks
   * ownership, takes the actor's turn and calls the app. Resolves with the app's answer
   * (whatever its status); throws a WeftError (WEFT_ACTOR_MOVED when this node is not the owner).
   */
  actor?(head: CallHead, headers: string[], body: Uint8Array, signal: AbortSignal, msLeft: number): Promise<{ status: number; headers: readonly string[]; body: Uint8Array }>;
  /** The node's tracer: a server span per call, a client span per app call (docs/tracing.md). */
  readonly tracer?: Tracer;
  /** Failed calls are logged at debug level, with the call's trace_id and span_id. */
  readonly log?: Logger;
}

/** Who called, once known (filled in by `begin`). */
interface Who {
  caller: CallerIdentity | undefined;
}

const TICKET_TTL_MS = 30_000;
const EMPTY = new Uint8Array(0);

function passThrough(b: Buffer): Buffer {
  return b;
}

const serviceDefinition: grpc.ServiceDefinition = {
  Invoke: {
    path: PeerMethods.invoke, requestStream: false, responseStream: false,
    requestSerialize: encodeInvokeRequest, requestDeserialize: decodeInvokeRequest,
    responseSerialize: encodeInvokeResponse, responseDeserialize: decodeInvokeResponse,
  },
  InvokeStream: {
    path: PeerMethods.invokeStream, requestStream: true, responseStream: true,
    requestSerialize: encodeStreamFrame, requestDeserialize: decodeStreamFrame,
    responseSerialize: encodeStreamFrame, responseDeserialize: decodeStreamFrame,
  },
  Mux: {
    path: PeerMethods.mux, requestStream: true, responseStream: true,
    requestSerialize: encodeMuxRequest, requestDeserialize: decodeMuxRequest,
    responseSerialize: encodeMuxResponse, responseDeserialize: decodeMuxResponse,
  },
  FetchBody: {
    path: PeerMethods.fetchBody, requestStream: false, responseStream: true,
    requestSerialize: encodeFetchBodyRequest, requestDeserialize: decodeFetchBodyRequest,
    responseSerialize: encodeStreamFrame, responseDeserialize: passThrough,
  },
  Proxy: {
    path: PeerMethods.proxy, requestStream: true, responseStream: true,
    requestSerialize: identity, requestDeserialize: identity,
    responseSerialize: identity, responseDeserialize: identity,
  },
};

/** A WeftError as a gRPC status with weft's code in the trailers. */
export function toServiceError(err: WeftError): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, err.code);
  if (err.appId !== undefined) metadata.set(ERROR_APP_KEY, err.appId);
  return { code: err.grpcStatus as number as grpc.status, details: err.message, metadata };
}

/** The unread rest of a large answer, waiting for FetchBody. */
interface Rest {
  readonly it: AsyncIterator<Buffer>;
  readonly stream: Readable;
}

interface Ticket extends Rest {
  readonly timer: NodeJS.Timeout;
}

export class PeerServer {
  private readonly hooks: PeerServerHooks;
  private readonly tickets = new Map<string, Ticket>();
  private readonly inflight = new Set<AbortController>();
  /** Open Mux streams: on close, each is ended once its running calls are answered. */
  private readonly muxes = new Set<() => void>();
  private closing = false;
  /** While closing: resolves the wait for calls and tickets (see close). */
  private onSettled: (() => void) | null = null;
  private readonly tracer: Tracer;
  readonly server: grpc.Server;

  constructor(hooks: PeerServerHooks, options: grpc.ServerOptions = {}) {
    this.hooks = hooks;
    this.tracer = hooks.tracer ?? OFF;
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': -1,
      'grpc.max_send_message_length': -1,
      'grpc.enable_channelz': 0,
      'grpc.keepalive_time_ms': 30_000,
      // gRPC's default: a starved caller can leave a PING unanswered for seconds, and a missed
      // one drops every call on the connection
      'grpc.keepalive_timeout_ms': 20_000,
      'grpc.keepalive_permit_without_calls': 1,
      // clients ping every 10 s to find dead connections; let them
      'grpc.http2.min_ping_interval_without_data_ms': 4_000,
      ...options,
    });
    this.server.addService(serviceDefinition, {
      Invoke: (call: grpc.ServerUnaryCall<InvokeRequest, InvokeResponse>, cb: grpc.sendUnaryData<InvokeResponse>) => {
        void this.invoke(call, cb);
      },
      InvokeStream: (call: grpc.ServerDuplexStream<StreamFrame, StreamFrame>) => {
        void this.invokeStream(call);
      },
      Mux: (call: grpc.ServerDuplexStream<MuxRequest, MuxResponse>) => {
        this.mux(call);
      },
      FetchBody: (call: grpc.ServerWritableStream<FetchBodyRequest, StreamFrame>) => {
        void this.fetchBody(call);
      },
      Proxy: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => {
        void this.proxy(call);
      },
    });
  }

  bind(host: string, port: number, credentials: grpc.ServerCredentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, credentials, (err, bound) => (err ? reject(err) : resolve(bound)));
    });
  }

  /**
   * Reports TLS handshakes that fail on the bound port (a peer whose certificate this node does
   * not trust, or that refused this node's): grpc-js does not surface them, so the listener is
   * attached to its http2 servers directly (grpc-js 1.14 keeps them in `http2Servers`; if a
   * later version does not, nothing is reported and nothing breaks).
   */
  onTlsClientError(listener: (remote: string, err: Error) => void): void {
    const servers = (this.server as unknown as { http2Servers?: unknown }).http2Servers;
    if (!(servers instanceof Map)) return;
    for (const http2Server of servers.keys() as Iterable<NodeJS.EventEmitter>) {
      http2Server.on('tlsClientError', (err: Error, socket: { remoteAddress?: string; remotePort?: number }) => {
        // A socket the peer already closed no longer knows its address.
        listener(socket.remoteAddress === undefined ? 'a peer that hung up' : `${socket.remoteAddress}:${socket.remotePort ?? '?'}`, err);
      });
    }
  }

  /**
   * Stops taking calls, lets those in flight finish for up to `graceMs`, then cancels the rest.
   * Resolves false when it had to.
   *
   * Two steps, both within the grace:
   * 1. New calls are refused (WEFT_SHUTTING_DOWN: retryable, they never reached the app) while
   *    the port stays open, until the calls in flight are answered and every ticket for the
   *    rest of an answer (FetchBody) is fetched or has expired. An answer whose head has gone
   *    to its caller cannot be retried anywhere: its rest must stay fetchable. (grpc-js's
   *    shutdown refuses every new call, FetchBody included, so it cannot come first.)
   * 2. grpc-js's graceful shutdown: the port closes, connections end once their streams (a
   *    FetchBody still sending) are done.
   */
  async close(graceMs: number): Promise<boolean> {
    // Mux streams live as long as their channel: without this, shutdown would always wait
    // its full grace for them. New calls on them are refused (retryable, never reached the app).
    this.closing = true;
    for (const endWhenIdle of this.muxes) endWhenIdle();
    const deadline = Date.now() + graceMs;
    const settled = await this.answersFetched(graceMs);
    const graceful = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        for (const c of this.inflight) c.abort(new WeftError('WEFT_SHUTTING_DOWN'));
        this.server.forceShutdown();
        resolve(false);
      }, Math.max(0, deadline - Date.now()));
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
    for (const t of this.tickets.values()) {
      clearTimeout(t.timer);
      t.stream.destroy();
    }
    this.tickets.clear();
    return settled && graceful;
  }

  /** The rest of an answer nobody will fetch: its ticket expired, or its caller went away before it learnt the ticket. */
  private dropTicket(id: string): void {
    const ticket = id === '' ? undefined : this.tickets.get(id);
    if (ticket === undefined) return;
    this.tickets.delete(id);
    clearTimeout(ticket.timer);
    ticket.stream.destroy();
    this.settle();
  }

  /** Resolves true once no call runs and no ticket waits, false if `ms` pass first. */
  private answersFetched(ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.onSettled = null;
        resolve(false);
      }, ms);
      timer.unref();
      this.onSettled = () => {
        clearTimeout(timer);
        resolve(true);
      };
      this.settle();
    });
  }

  /** Called whenever a call ends or a ticket goes: tells a closing server when all are done. */
  private settle(): void {
    const done = this.onSettled;
    if (done === null || this.inflight.size > 0 || this.tickets.size > 0) return;
    this.onSettled = null;
    done();
  }

  /**
   * Checks a call and ties an AbortController to its deadline (`msLeft`) and to the
   * cancellation of `cancelSource` (the gRPC call; a Mux stream cancels per call instead).
   * `release()` unties them: a large answer handed to a ticket outlives the call that started it.
   */
  private begin(call: ServerSurfaceCall, head: CallHead, msLeft: number, cancelSource: ServerSurfaceCall | null, who: Who): { channel: AppChannel; headers: string[]; controller: AbortController; caller: CallerIdentity; release: () => void } {
    if (this.closing) throw new WeftError('WEFT_SHUTTING_DOWN', 'the node is shutting down', { appId: head.appId });
    const channel = this.hooks.lookup(head.appId, head.namespace);
    if (channel === undefined) {
      throw new WeftError('WEFT_NOT_SERVING', `node does not serve app ${head.appId} in namespace ${head.namespace}`, { appId: head.appId });
    }
    // The policy and the app judge one path: the normalized one (a caller node sends it so already).
    if (head.actorType === undefined || head.actorType === '') {
      const method = normalizeMethod(head.method);
      if (method instanceof WeftError) throw new WeftError(method.code, method.message, { appId: head.appId });
      head.method = method.path;
    }
    const caller = this.hooks.authorize(call, head);
    who.caller = caller;
    const controller = new AbortController();
    let released = false;
    let timer: NodeJS.Timeout | undefined;
    if (Number.isFinite(msLeft)) {
      if (msLeft <= 0) throw new WeftError('WEFT_DEADLINE_EXCEEDED', `deadline passed before app ${head.appId} was called`, { appId: head.appId });
      timer = setTimeout(() => controller.abort(new WeftError('WEFT_DEADLINE_EXCEEDED', `app ${head.appId} did not answer before the deadline`, { appId: head.appId })), msLeft);
      timer.unref();
    }
    cancelSource?.on('cancelled', () => {
      if (!released) controller.abort(new WeftError('WEFT_CANCELLED', 'the caller cancelled the call', { appId: head.appId }));
    });
    const release = (): void => {
      released = true;
      clearTimeout(timer);
    };
    return { channel, headers: appHeaders(head, caller), controller, caller, release };
  }

  /**
   * The app call behind Invoke and Mux: the answer whole, or its first bytes and a ticket for
   * the rest. Throws a WeftError.
   */
  private async whole(call: ServerSurfaceCall, head: CallHead, body: Uint8Array, msLeft: number, cancelSource: ServerSurfaceCall | null, who: Who, onController?: (c: AbortController) => void): Promise<InvokeResponse> {
    let controller: AbortController | undefined;
    let release: (() => void) | undefined;
    // Tracing: this call's server span, and the app call's client span (whose context the app gets).
    const span = this.tracer.on ? peerServerSpan(this.tracer, head, cancelSource === null ? 'Mux' : 'Invoke') : undefined;
    let appSpan: Span | undefined;
    try {
      const ctx = this.begin(call, head, msLeft, cancelSource, who);
      controller = ctx.controller;
      release = ctx.release;
      onController?.(controller);
      this.inflight.add(controller);
      if (head.actorType !== undefined && head.actorType !== '') {
        if (this.hooks.actor === undefined) throw new WeftError('WEFT_ACTOR_MOVED', 'this node hosts no actors');
        // the turn's span is the child of this one: the app call is made (and traced) in the turn
        const answer = await this.hooks.actor(head, toApp(ctx.headers, head, span, undefined), body, controller.signal, msLeft);
        span?.set('http.response.status_code', answer.status).end();
        return { status: answer.status, headers: answer.headers as string[], body: answer.body, bodyTicket: '' };
      }
      appSpan = this.appSpan(span, head, ctx.channel);
      const res = await ctx.channel.call({
        method: head.method, verb: head.verb, query: head.query, headers: toApp(ctx.headers, head, span, appSpan),
        body: body.length === 0 ? null : body, signal: controller.signal,
      });
      const { body: first, rest } = await readUpTo(res, WHOLE_BODY_LIMIT, controller.signal);
      if (appSpan !== undefined) endAppCall(appSpan, res.status);
      span?.set('http.response.status_code', res.status).end();
      let bodyTicket = '';
      if (rest !== null) {
        bodyTicket = randomUUID();
        const timer = setTimeout(() => this.dropTicket(bodyTicket), TICKET_TTL_MS);
        timer.unref();
        this.tickets.set(bodyTicket, { ...rest, timer });
      }
      return { status: res.status, headers: res.headers, body: first, bodyTicket };
    } catch (err) {
      const e = controller === undefined ? WeftError.from(err, head.appId) : abortedOr(err, controller, head.appId);
      this.failed(head, e, span, appSpan);
      throw e;
    } finally {
      release?.();
      if (controller !== undefined) this.inflight.delete(controller);
      this.settle();
    }
  }

  /** The app call's client span, under this call's server span when it records. */
  private appSpan(span: Span | undefined, head: CallHead, channel: AppChannel): Span | undefined {
    return span !== undefined && span.recording ? appCallSpan(this.tracer, span, head.verb, channel.app.appHost, channel.app.appPort ?? 0, `/${head.method}`, head.appId) : undefined;
  }

  /** A failed call: its spans end with the error, and a debug line names the trace. */
  private failed(head: CallHead, e: WeftError, span: Span | undefined, appSpan: Span | undefined): void {
    if (appSpan !== undefined) endFailed(appSpan, e);
    if (span !== undefined) endFailed(span, e);
    this.hooks.log?.debug({ ...logFields(span), appId: head.appId, callerAppId: head.callerAppId, method: head.method, weftCode: e.code, err: e.message }, 'call from another node failed');
  }

  private async invoke(call: grpc.ServerUnaryCall<InvokeRequest, InvokeResponse>, cb: grpc.sendUnaryData<InvokeResponse>): Promise<void> {
    const started = process.hrtime.bigint();
    const head = call.request.head;
    const who: Who = { caller: undefined };
    try {
      const res = await this.whole(call, head, call.request.body, msUntil(call.getDeadline()), call, who);
      if (call.cancelled) this.dropTicket(res.bodyTicket);
      cb(null, res);
      this.hooks.onCall?.(head, res.status, started, who.caller);
    } catch (err) {
      const e = WeftError.from(err, head.appId);
      cb(toServiceError(e));
      this.hooks.onCall?.(head, e, started, who.caller);
    }
  }

  /** Many calls on one stream: each request frame is a whole call, answered by id. */
  private mux(call: grpc.ServerDuplexStream<MuxRequest, MuxResponse>): void {
    const running = new Map<number, AbortController>();
    let ending = false;
    let ended = false;
    // No more calls come (the caller ended the stream, or this server is closing): answer
    // those running, then end the stream.
    const endWhenIdle = (): void => {
      ending = true;
      if (ended || running.size > 0) return;
      ended = true;
      this.muxes.delete(endWhenIdle);
      call.end();
    };
    this.muxes.add(endWhenIdle);
    call.write({ id: 0, status: 0, headers: [], body: EMPTY, bodyTicket: '', errorCode: '', errorMessage: '' });
    call.on('data', (req: MuxRequest) => {
      if (req.cancel) {
        running.get(req.id)?.abort(new WeftError('WEFT_CANCELLED', 'the caller cancelled the call', { appId: req.head?.appId }));
        return;
      }
      const head = req.head;
      if (head === null || req.id === 0) return;
      if (ending) {
        if (!ended) call.write({ id: req.id, status: 0, headers: [], body: EMPTY, bodyTicket: '', errorCode: 'WEFT_SHUTTING_DOWN', errorMessage: 'the node is shutting down' });
        return;
      }
      const started = process.hrtime.bigint();
      const who: Who = { caller: undefined };
      const settled = (): void => {
        running.delete(req.id);
        if (ending) endWhenIdle();
      };
      this.whole(call, head, req.body, req.timeoutMs === 0 ? Infinity : req.timeoutMs, null, who, (c) => running.set(req.id, c)).then(
        (res) => {
          if (!ended) call.write({ id: req.id, status: res.status, headers: res.headers, body: res.body, bodyTicket: res.bodyTicket, errorCode: '', errorMessage: '' });
          else this.dropTicket(res.bodyTicket);
          settled();
          this.hooks.onCall?.(head, res.status, started, who.caller);
        },
        (err: unknown) => {
          const e = WeftError.from(err, head.appId);
          if (!ended) call.write({ id: req.id, status: 0, headers: [], body: EMPTY, bodyTicket: '', errorCode: e.code, errorMessage: e.message });
          settled();
          this.hooks.onCall?.(head, e, started, who.caller);
        },
      );
    });
    const stop = (): void => {
      ended = true;
      this.muxes.delete(endWhenIdle);
      for (const c of running.values()) c.abort(new WeftError('WEFT_CANCELLED', 'the caller closed the stream'));
      running.clear();
    };
    call.on('cancelled', stop);
    call.on('error', stop);
    call.on('end', endWhenIdle);
    if (this.closing) endWhenIdle();
  }

  private async invokeStream(call: grpc.ServerDuplexStream<StreamFrame, StreamFrame>): Promise<void> {
    const started = process.hrtime.bigint();
    const frames = call[Symbol.asyncIterator]() as AsyncIterator<StreamFrame>;
    let head: CallHead | null = null;
    let controller: AbortController | undefined;
    let release: (() => void) | undefined;
    const who: Who = { caller: undefined };
    // Tracing, as for a whole call; both spans last until the answer's last frame is written.
    let span: Span | undefined;
    let appSpan: Span | undefined;
    try {
      const first = await frames.next();
      if (first.done === true || first.value.call === null) throw new WeftError('WEFT_BAD_REQUEST', 'InvokeStream must start with a frame carrying the call');
      head = first.value.call;
      if (this.tracer.on) span = peerServerSpan(this.tracer, head, 'InvokeStream');
      const ctx = this.begin(call, head, msUntil(call.getDeadline()), call, who);
      controller = ctx.controller;
      release = ctx.release;
      this.inflight.add(controller);
      const body = requestBody(first.value, frames, controller, head.appId);
      appSpan = this.appSpan(span, head, ctx.channel);
      const res = await ctx.channel.call({ method: head.method, verb: head.verb, query: head.query, headers: toApp(ctx.headers, head, span, appSpan), body, signal: controller.signal });
      await writeFrames(call, res.status, res.headers, res.body, controller.signal);
      if (appSpan !== undefined) endAppCall(appSpan, res.status);
      span?.set('http.response.status_code', res.status).end();
      call.end();
      this.hooks.onCall?.(head, res.status, started, who.caller);
    } catch (err) {
      const e = controller === undefined ? WeftError.from(err, head?.appId) : abortedOr(err, controller, head?.appId);
      call.emit('error', toServiceError(e));
      if (head !== null) {
        this.failed(head, e, span, appSpan);
        this.hooks.onCall?.(head, e, started, who.caller);
      }
    } finally {
      release?.();
      if (controller !== undefined) this.inflight.delete(controller);
      this.settle();
    }
  }

  /**
   * A proxied gRPC call (src/peer/proxy.ts): checked like any call (served here, caller and
   * access policy from the certificate, with the method path as the operation and no verb),
   * then relayed to the app's own gRPC server under the same method path and deadline.
   */
  private async proxy(call: grpc.ServerDuplexStream<Buffer, Buffer>): Promise<void> {
    const started = process.hrtime.bigint();
    const p = proxyHead(call.metadata);
    const head: CallHead = {
      appId: p.appId, namespace: p.namespace, method: p.path.replace(/^\//, ''), verb: '', query: '', headers: [],
      callerAppId: p.callerAppId, callerNamespace: p.callerNamespace, actorType: '', actorId: '',
    };
    let caller: CallerIdentity | undefined;
    // Tracing: the hop's server span (parent node A's hop span, from the metadata) and the client
    // span of the call to the app, whose context the app's metadata carries.
    const span = this.tracer.on ? proxyServerSpan(this.tracer, call.metadata.get(TRACEPARENT)[0], call.metadata.get(TRACESTATE)[0], head.appId, p.path) : undefined;
    let appSpan: Span | undefined;
    try {
      if (this.closing) throw new WeftError('WEFT_SHUTTING_DOWN', 'the node is shutting down', { appId: head.appId });
      if (!/^\/[^/]+\/[^/]+$/.test(p.path)) throw new WeftError('WEFT_BAD_REQUEST', `"${p.path}" is not a gRPC method path`);
      const channel = this.hooks.lookup(head.appId, head.namespace);
      if (channel === undefined) throw new WeftError('WEFT_NOT_SERVING', `node does not serve app ${head.appId} in namespace ${head.namespace}`, { appId: head.appId });
      caller = this.hooks.authorize(call, head);
      span?.set(ATTR.CALLER_APP_ID, caller.appId);
      if (!(channel instanceof GrpcAppChannel)) {
        throw new WeftError('WEFT_APP_NOT_GRPC', `app ${head.appId} is on app protocol ${channel.app.appProtocol}: proxied gRPC calls need grpc or grpcs`, { appId: head.appId });
      }
      const md = relayable(call.metadata);
      md.set('dapr-caller-app-id', caller.appId);
      md.set('dapr-caller-namespace', caller.namespace);
      md.set('dapr-callee-app-id', head.appId);
      if (span !== undefined && span.recording) {
        appSpan = grpcAppCallSpan(this.tracer, span, p.path, channel.app.appHost, channel.app.appPort ?? 0);
        md.set(TRACEPARENT, appSpan.traceparent);
        if (appSpan.traceState !== '') md.set(TRACESTATE, appSpan.traceState);
      }
      const deadline = call.getDeadline();
      const app = channel.client.makeBidiStreamRequest(p.path, identity, identity, md, Number.isFinite(msUntil(deadline)) ? { deadline } : {});
      const result = await splice(call, app);
      if (span !== undefined) {
        const name = result.cancelled ? 'CANCELLED' : grpc.status[result.code] ?? String(result.code);
        if (appSpan !== undefined) endGrpc(appSpan, result.code, name, false);
        endGrpc(span, result.code, name, true);
      }
      this.hooks.onProxyCall?.(head, result, started, caller);
    } catch (err) {
      const e = WeftError.from(err, head.appId);
      call.emit('error', toServiceError(e));
      this.failed(head, e, span, appSpan);
      this.hooks.onProxyCall?.(head, e, started, caller);
    }
  }

  private async fetchBody(call: grpc.ServerWritableStream<FetchBodyRequest, StreamFrame>): Promise<void> {
    const ticket = this.tickets.get(call.request.ticket);
    if (ticket === undefined) {
      call.emit('error', toServiceError(new WeftError('WEFT_BAD_REQUEST', 'unknown or expired body ticket')));
      return;
    }
    this.tickets.delete(call.request.ticket);
    clearTimeout(ticket.timer);
    this.settle();
    const controller = new AbortController();
    // Either ends the app's request (its socket closes): the caller going away, or the deadline.
    const stop = (err: WeftError): void => {
      controller.abort(err);
      ticket.stream.destroy();
    };
    call.on('cancelled', () => stop(new WeftError('WEFT_CANCELLED', 'the caller stopped reading the answer')));
    const msLeft = msUntil(call.getDeadline());
    const timer = Number.isFinite(msLeft) ? setTimeout(() => stop(new WeftError('WEFT_DEADLINE_EXCEEDED', 'the answer did not end before the deadline')), Math.max(0, msLeft)) : undefined;
    timer?.unref();
    try {
      for (;;) {
        const { value, done } = await ticket.it.next();
        if (done === true) break;
        if (!call.write({ call: null, status: 0, headers: [], data: value })) await drained(call, controller.signal);
      }
      call.end();
    } catch (err) {
      ticket.stream.destroy();
      call.emit('error', toServiceError(controller.signal.aborted ? controller.signal.reason as WeftError : appAborted(err, undefined) ?? WeftError.from(err)));
    } finally {
      clearTimeout(timer);
    }
  }
}

/**
 * The request body of an InvokeStream call: the data of its frames up to the one marked `end`.
 *
 * A request stream that half-closes before that frame was cut short by its caller, and the
 * call is a cancellation, not a failure and never a shorter body: grpc-js cancels a call
 * with Node's Http2Stream.close(CANCEL), which ends the request side (an empty DATA frame with
 * END_STREAM) before it sends RST_STREAM. The half-close reaches this server first, and on a
 * busy host well before the reset: read as the body's end, it handed the app a truncated body
 * (a chunked one as if complete; one with a content-length failed as WEFT_APP_UNAVAILABLE),
 * and the call counted as a served error, not as cancelled. So the cut aborts the call with
 * WEFT_CANCELLED at once, whatever arrives next.
 *
 * That holds for callers whose first frame says they mark the end (`endMarked`). A caller
 * node from before `end` (the cluster is mid-upgrade) never marks it: its half-close still
 * ends the body, as it did then.
 */
export async function* requestBody(first: StreamFrame, frames: AsyncIterator<StreamFrame>, controller: AbortController, appId: string): AsyncGenerator<Uint8Array> {
  if (first.data.length > 0) yield first.data;
  if (first.end === true) return;
  for (;;) {
    const f = await frames.next();
    if (f.done === true) {
      // A caller from before `end` (a cluster mid-upgrade) ends its body by half-closing.
      if (first.endMarked !== true) return;
      const cut = new WeftError('WEFT_CANCELLED', 'the caller ended its stream before the request body was complete', { appId });
      controller.abort(cut);
      throw cut;
    }
    if (f.value.data.length > 0) yield f.value.data;
    if (f.value.end === true) return;
  }
}

/** ms from now to a gRPC deadline (Infinity when there is none). */
function msUntil(deadline: grpc.Deadline): number {
  if (deadline instanceof Date) return deadline.getTime() - Date.now();
  return deadline === Infinity ? Infinity : Number(deadline) - Date.now();
}

function abortedOr(err: unknown, controller: AbortController, appId: string | undefined): WeftError {
  const reason: unknown = controller.signal.reason;
  if (controller.signal.aborted && reason instanceof WeftError) return reason;
  // the app's connection closing while its answer was read
  return appAborted(err, appId) ?? WeftError.from(err, appId);
}

/**
 * The app's headers with the trace context it should see: the app call span's; for an actor
 * call, the server span's (the turn, and the app call in it, are its children); when this node
 * records nothing for the call (tracing off, or unsampled), the caller node's context as it came.
 */
function toApp(headers: string[], head: CallHead, span: Span | undefined, appSpan: Span | undefined): string[] {
  if (appSpan !== undefined) return propagate(headers, appSpan);
  if (span !== undefined && span.recording) return propagate(headers, span);
  return head.traceparent ? withTraceContext(headers, head.traceparent, head.tracestate ?? '') : headers;
}

/** The headers the app sees: the caller's, minus any weft sets itself, plus the verified caller and callee. */
function appHeaders(head: CallHead, caller: CallerIdentity): string[] {
  const src = head.headers;
  const out: string[] = [];
  for (let i = 0; i + 1 < src.length; i += 2) {
    const name = src[i] as string;
    if (name === 'dapr-caller-app-id' || name === 'dapr-caller-namespace' || name === 'dapr-callee-app-id') continue;
    out.push(name, src[i + 1] as string);
  }
  out.push('dapr-caller-app-id', caller.appId, 'dapr-caller-namespace', caller.namespace, 'dapr-callee-app-id', head.appId);
  return out;
}

/**
 * How long an answer without a content-length may keep the node waiting for its next chunk (or
 * its end) before what has come goes on and the rest streams. One turn of the event loop was
 * too short: an app writes its head with the first chunk and the terminating chunk a moment
 * later, in a segment of its own, so small chunked answers went out as streams (a follow-up
 * FetchBody, and an answer whose head had left could only be cut, not failed, if its node died).
 * An event stream's head waits at most this long (once: after it, chunks pass as they come).
 * 2 ms was too short on a busy machine, where an app's end chunk can lag by several.
 */
const NEXT_CHUNK_WAIT_MS = 10;
const NOT_YET = Symbol('not yet');
function nextChunkWait(): { promise: Promise<typeof NOT_YET>; cancel: () => void } {
  let timer: NodeJS.Timeout | undefined;
  const promise = new Promise<typeof NOT_YET>((resolve) => (timer = setTimeout(resolve, NEXT_CHUNK_WAIT_MS, NOT_YET)));
  return { promise, cancel: () => clearTimeout(timer) };
}

/**
 * Reads the app's answer into memory when it is small. A larger one (by content-length, or
 * found while reading) comes back as the bytes read so far plus the rest of the stream.
 *
 * An answer without a content-length (chunked: an event stream, a body made as it goes) is
 * waited for at most NEXT_CHUNK_WAIT_MS per chunk: what has arrived by then goes with the head,
 * the rest follows as it comes (so no chunk waits for the next longer than that). A small
 * chunked answer arrives whole.
 */
async function readUpTo(res: AppResponse, limit: number, signal: AbortSignal): Promise<{ body: Uint8Array; rest: Rest | null }> {
  // The common answer: the channel read it whole already.
  if (res.whole !== undefined && res.whole.length <= limit) return { body: res.whole, rest: null };
  const length = headerValue(res.headers, 'content-length');
  const it = res.body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  if (length !== undefined && Number(length) > limit) return { body: EMPTY, rest: { it, stream: res.body } };
  const chunks: Buffer[] = [];
  let total = 0;
  const collected = (): Buffer => (chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, total));
  for (;;) {
    if (signal.aborted) throw signal.reason;
    const next = it.next();
    let r: IteratorResult<Buffer> | typeof NOT_YET;
    if (length === undefined) {
      const wait = nextChunkWait();
      r = await Promise.race([next, wait.promise]);
      wait.cancel();
    } else {
      r = await next;
    }
    if (r === NOT_YET) return { body: collected(), rest: { it: resumed(next, it), stream: res.body } };
    if (r.done === true) break;
    chunks.push(r.value);
    total += r.value.length;
    if (total > limit) return { body: collected(), rest: { it, stream: res.body } };
  }
  return { body: collected(), rest: null };
}

/** `it`, whose next result is the already pending `first`. */
function resumed(first: Promise<IteratorResult<Buffer>>, it: AsyncIterator<Buffer>): AsyncIterator<Buffer> {
  // Handled here too: a stream that fails while its ticket waits must not be an unhandled rejection.
  first.catch(() => {});
  let pending: Promise<IteratorResult<Buffer>> | null = first;
  return {
    next: () => {
      const p = pending;
      pending = null;
      return p ?? it.next();
    },
  };
}

export function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) if (headers[i] === name) return headers[i + 1];
  return undefined;
}

/** The app's answer as frames: the head at once (an event stream may be long in sending its first byte), then each chunk as it comes. */
async function writeFrames(call: grpc.ServerDuplexStream<StreamFrame, StreamFrame>, status: number, headers: string[], body: Readable, signal: AbortSignal): Promise<void> {
  call.write({ call: null, status, headers, data: EMPTY });
  for await (const chunk of body) {
    if (!call.write({ call: null, status: 0, headers: [], data: chunk as Buffer })) await drained(call, signal);
  }
}

function drained(stream: NodeJS.EventEmitter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const done = (): void => {
      signal.removeEventListener('abort', abort);
      resolve();
    };
    const abort = (): void => {
      stream.off('drain', done);
      reject(signal.reason);
    };
    stream.once('drain', done);
    signal.addEventListener('abort', abort, { once: true });
  });
}
