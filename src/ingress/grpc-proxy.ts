/**
 * Dapr's gRPC proxy mode on the node's gRPC API port: a call to any method the port does not
 * serve itself, with metadata `dapr-app-id: <appId>` (or `appId.namespace`), goes to that app's
 * own gRPC server on its node, method path, metadata and messages unchanged (src/peer/proxy.ts
 * tells how the relay works). A call without `dapr-app-id` is UNIMPLEMENTED, as before.
 *
 * Every kind of call (unary, client, server and bidirectional streaming) is the same on the wire,
 * so all are relayed as bidirectional streams. Rules, Dapr's where it has them:
 * - the API token is checked as for every RPC; the caller is the app this port speaks for;
 * - an instance is picked round robin; the call is never retried (once a stream has started,
 *   Dapr does not retry it, and a unary call's request may already have reached the app);
 * - no default deadline (streams may be long-lived): the client's deadline, if any, applies to
 *   every hop; its cancellation reaches the app;
 * - mTLS and the target's access policy apply as for invocation (the operation is the method
 *   path, with no verb), and so do the invocation metrics, by gRPC status name (a client that
 *   cancelled counts as CANCELLED, apart from failures).
 */
import * as grpc from '@grpc/grpc-js';
import { WeftError } from '../errors.ts';
import type { Metrics } from '../observability/metrics.ts';
import type { RoutingTable } from '../routing/table.ts';
import type { PeerAddress } from '../../workers/protocol.ts';
import { PeerMethods } from '../peer/codec.ts';
import {
  PROXY_APP_KEY, PROXY_CALLER_KEY, PROXY_CALLER_NAMESPACE_KEY, PROXY_NAMESPACE_KEY, PROXY_PATH_KEY,
  identity, relayable, splice,
} from '../peer/proxy.ts';
import { checkApiToken, weftStatus } from './grpc.ts';
import { TRACEPARENT, TRACESTATE, type Span, type Tracer } from '../observability/tracing.ts';
import { endFailed, endGrpc, proxyHopSpan, proxyIngressSpan } from '../observability/tracing-spans.ts';

export interface GrpcProxyContext {
  /** The app whose calls this port takes (the caller of every proxied call). */
  readonly callerAppId: string;
  readonly namespace: string;
  readonly apiToken: string | undefined;
  readonly routing: RoutingTable;
  /** The pooled peer channel presenting the caller's identity (throws when there is none). */
  channel(peer: PeerAddress, callerAppId: string, callerNamespace: string): grpc.Client;
  /** No TLS between nodes: the head names the caller (the far node has no certificate to read). */
  readonly plaintext: boolean;
  readonly metrics: Metrics;
  /** The node's tracer (docs/tracing.md); absent or `on: false`: no spans. */
  readonly tracer?: Tracer;
}

type UntypedHandler = {
  func: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => void;
  serialize: (b: Buffer) => Buffer;
  deserialize: (b: Buffer) => Buffer;
  type: 'bidi';
  path: string;
};

/**
 * Makes `server` hand every call to a path it has no handler for to `handler`.
 *
 * grpc-js has no catch-all: each call's path is looked up in the server's `handlers` Map, and a
 * miss is answered UNIMPLEMENTED. The alternatives are worse: registering per path needs the
 * paths in advance; listening to the http2 servers' 'stream' events races grpc-js's own
 * listener and means redoing gRPC framing, compression, deadlines and status by hand. Giving
 * the Map a fallback keeps grpc-js doing all of that (the call is an ordinary bidi call with
 * identity serializers) and relies on one private field; if a grpc-js version drops it, this
 * returns false (proxy mode off, logged by the node) and the proxy tests fail.
 */
export function installFallback(server: grpc.Server, handler: (call: grpc.ServerDuplexStream<Buffer, Buffer>) => void): boolean {
  const holder = server as unknown as { handlers?: unknown };
  const current = holder.handlers;
  if (!(current instanceof Map)) return false;
  class WithFallback extends Map<string, unknown> {
    override get(path: string): unknown {
      return super.get(path) ?? ({ func: handler, serialize: identity, deserialize: identity, type: 'bidi', path } satisfies UntypedHandler);
    }
  }
  holder.handlers = new WithFallback(current as Map<string, unknown>);
  return true;
}

/** A gRPC status code's name: the metrics' status label of a proxied call. */
export function grpcStatusName(code: number): string {
  return grpc.status[code] ?? String(code);
}

/** The handler of proxied calls on node A. */
export function proxyHandler(ctx: GrpcProxyContext): (call: grpc.ServerDuplexStream<Buffer, Buffer>) => void {
  const cursors = new Map<string, number>();
  return (call) => {
    const path = call.getPath();
    const target = call.metadata.get('dapr-app-id')[0];
    if (typeof target !== 'string' || target === '') {
      // what grpc-js answers for a method nobody serves
      call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: `The server does not implement the method ${path}` });
      return;
    }
    void relay(ctx, cursors, call, path, target);
  };
}

async function relay(ctx: GrpcProxyContext, cursors: Map<string, number>, call: grpc.ServerDuplexStream<Buffer, Buffer>, path: string, target: string): Promise<void> {
  const started = performance.now();
  const parts = target.split('.');
  const appId = parts[0] as string;
  const { metrics } = ctx;
  metrics.sent(ctx.callerAppId, appId);
  metrics.inflight.inc();
  let status: string;
  // Tracing: this node's server span, and the client span of the hop to node B (whose context
  // the hop's metadata carries); the answer's metadata names the server span, as Dapr's does.
  const tracer = ctx.tracer;
  const span = tracer?.on === true ? proxyIngressSpan(tracer, call.metadata.get(TRACEPARENT)[0], call.metadata.get(TRACESTATE)[0], path, { appId, method: path, callerAppId: ctx.callerAppId }) : undefined;
  let hop: Span | undefined;
  try {
    checkApiToken(call.metadata, ctx.apiToken);
    if (parts.length > 2 || parts.some((p) => p === '')) throw new WeftError('WEFT_BAD_APP_ID', `invalid app id "${target}": use appId or appId.namespace`);
    const namespace = parts[1] ?? ctx.namespace;
    const v = ctx.routing.route(appId, namespace);
    if (typeof v !== 'number') await v;
    const instances = ctx.routing.instances(appId, namespace);
    if (instances.length === 0) throw new WeftError('WEFT_APP_NOT_FOUND', `no instance of app ${appId} in namespace ${namespace} is known`, { appId });
    const key = `${namespace}/${appId}`;
    const n = cursors.get(key) ?? 0;
    cursors.set(key, (n + 1) % 1_000_000_007);
    const peer = instances[n % instances.length] as PeerAddress;
    let client: grpc.Client;
    try {
      client = ctx.channel(peer, ctx.callerAppId, ctx.namespace);
    } catch (err) {
      throw WeftError.from((err as { wire?: unknown }).wire ?? err, appId);
    }
    const md = relayable(call.metadata);
    md.set(PROXY_APP_KEY, appId);
    md.set(PROXY_NAMESPACE_KEY, namespace);
    md.set(PROXY_PATH_KEY, path);
    if (ctx.plaintext) {
      md.set(PROXY_CALLER_KEY, ctx.callerAppId);
      md.set(PROXY_CALLER_NAMESPACE_KEY, ctx.namespace);
    }
    const deadline = call.getDeadline();
    const finite = deadline instanceof Date || Number.isFinite(deadline);
    if (call.cancelled) throw new WeftError('WEFT_CANCELLED', 'the caller cancelled the call', { appId });
    if (span !== undefined) {
      hop = proxyHopSpan(tracer as Tracer, span, peer);
      md.set(TRACEPARENT, hop.traceparent);
      if (hop.traceState !== '') md.set(TRACESTATE, hop.traceState);
      else md.remove(TRACESTATE);
    }
    const peerCall = client.makeBidiStreamRequest(PeerMethods.proxy, identity, identity, md, finite ? { deadline } : {});
    const result = await splice(call, peerCall, span === undefined ? relayable : (answer) => {
      const out = relayable(answer);
      out.set(TRACEPARENT, span.traceparent);
      return out;
    });
    status = result.cancelled ? 'CANCELLED' : grpcStatusName(result.code);
    if (hop !== undefined) endGrpc(hop, result.code, status, false);
    if (span !== undefined) endGrpc(span, result.code, status, true);
  } catch (err) {
    const e = WeftError.from(err, appId);
    call.emit('error', weftStatus(e));
    status = e.code;
    if (hop !== undefined) endFailed(hop, e);
    if (span !== undefined) endFailed(span, e);
  }
  metrics.inflight.dec();
  metrics.received(ctx.callerAppId, appId, status, performance.now() - started);
}
