/**
 * The spans of one call, stage by stage, named and attributed after the OTel semantic
 * conventions (HTTP server/client, RPC over gRPC) plus weft's app ids and method. Each stage's
 * hook in the call path is a line: `tracer.on ? <helper>(...) : undefined`, then `span?.end()`.
 *
 * - ingress (HTTP or gRPC API): a SERVER span, parent the caller's `traceparent`;
 * - each outbound attempt: a CLIENT span (tracing-outbound.ts, on the outbound thread);
 * - the peer server on the target node: a SERVER span, parent the attempt;
 * - the app call: a CLIENT span, whose context the app receives as `traceparent`;
 * - actors: the routing on the caller's node (an INTERNAL span, "moved" retries as events)
 *   and the turn on the owner's (INTERNAL, waiting for the turn as an event).
 */
import type { IncomingMessage } from 'node:http';
import { ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_RESPONSE_STATUS_CODE, ATTR_SERVER_ADDRESS, ATTR_SERVER_PORT, ATTR_URL_FULL } from '@opentelemetry/semantic-conventions';
import { ATTR, SpanKind, TRACEPARENT, TRACESTATE, parseTraceParent, type Span, type SpanAttributes, type TraceParent, type Tracer } from './tracing.ts';

export { ATTR };


const DAPR_SERVICE = 'dapr.proto.runtime.v1.Dapr';
const PEER_MUX = 'weft.peer.v1.Peer/Mux';

export interface CallTarget {
  readonly appId: string;
  readonly method: string;
  readonly callerAppId: string;
}

/**
 * `<verb> <route>`, the HTTP server span's name, made once per pair: the routes are weft's own
 * and Node's parser takes only the methods it knows, so the pairs are few.
 */
const ingressNames = new Map<string, Map<string, string>>();
function ingressName(verb: string, route: string): string {
  let byVerb = ingressNames.get(route);
  if (byVerb === undefined) ingressNames.set(route, (byVerb = new Map()));
  let name = byVerb.get(verb);
  if (name === undefined) byVerb.set(verb, (name = `${verb} ${route}`));
  return name;
}

/** The HTTP API's server span for one call; the caller's traceparent (if valid) is its parent. */
export function httpIngressSpan(tracer: Tracer, req: IncomingMessage, route: string, target: CallTarget): Span {
  const h = req.headers;
  const tp = h.traceparent;
  const ts = h.tracestate;
  const parent = typeof tp === 'string' ? parseTraceParent(tp, typeof ts === 'string' ? ts : '') : undefined;
  const span = tracer.start(route, SpanKind.SERVER, parent, null);
  if (!span.recording) return span;
  const verb = req.method ?? 'GET';
  const url = req.url ?? '/';
  const q = url.indexOf('?');
  // Literal keys (the names of ATTR_* and ATTR, test/unit/tracing.test.ts checks them): an object
  // literal with computed keys is built key by key at run time, this one from a template.
  return span.setName(ingressName(verb, route)).attrs({
    'http.request.method': verb,
    'http.route': route,
    'url.path': q === -1 ? url : url.slice(0, q),
    'url.scheme': 'http',
    'client.address': req.socket.remoteAddress ?? '',
    'weft.app_id': target.appId,
    'weft.method': target.method,
    'weft.caller.app_id': target.callerAppId,
  });
}

/** The parent a gRPC call's metadata names (`traceparent`, `tracestate`), if valid. */
function metadataParent(traceparent: unknown, tracestate: unknown): TraceParent | undefined {
  return typeof traceparent === 'string' ? parseTraceParent(traceparent, typeof tracestate === 'string' ? tracestate : '') : undefined;
}

/** The gRPC API's server span (`dapr.proto.runtime.v1.Dapr/<rpc>`), parent from the metadata. */
export function grpcIngressSpan(tracer: Tracer, traceparent: unknown, tracestate: unknown, rpc: string, target: CallTarget): Span {
  const span = tracer.start(`${DAPR_SERVICE}/${rpc}`, SpanKind.SERVER, metadataParent(traceparent, tracestate), null);
  if (!span.recording) return span;
  return span.attrs({
    [ATTR.RPC_SYSTEM]: 'grpc',
    [ATTR.RPC_SERVICE]: DAPR_SERVICE,
    [ATTR.RPC_METHOD]: rpc,
    [ATTR.APP_ID]: target.appId,
    [ATTR.METHOD]: target.method,
    [ATTR.CALLER_APP_ID]: target.callerAppId,
  });
}

/** Ends an ingress span with the answer's HTTP status, or weft's failure. */
export function endIngress(span: Span, status: number, error?: { readonly code: string; readonly message: string; readonly httpStatus?: number }): void {
  if (error !== undefined) {
    span.set(ATTR_HTTP_RESPONSE_STATUS_CODE, error.httpStatus ?? 500).fail(error.code, error.message);
  } else {
    span.set('http.response.status_code', status);
    if (status >= 500) span.fail(`HTTP_${status}`, `the app answered ${status}`);
  }
  span.end();
}

/**
 * The answer's headers with `traceparent` set to the ingress span (as Dapr answers). The list is
 * the call's own (decoded for this answer), so it is extended in place unless the app sent a
 * traceparent of its own, which is replaced in a copy.
 */
export function answerHeaders(headers: readonly string[], span: Span): string[] {
  for (let i = 0; i < headers.length; i += 2) {
    if ((headers[i] as string).toLowerCase() !== TRACEPARENT) continue;
    const out: string[] = [];
    for (let j = 0; j + 1 < headers.length; j += 2) {
      if ((headers[j] as string).toLowerCase() !== TRACEPARENT) out.push(headers[j] as string, headers[j + 1] as string);
    }
    out.push(TRACEPARENT, span.traceparent);
    return out;
  }
  const out = headers as string[];
  out.push(TRACEPARENT, span.traceparent);
  return out;
}

/**
 * The peer server's span for a call from another node: parent the head's traceparent (the
 * caller node's attempt), else a traceparent among the headers (a caller node without tracing
 * that passed the app's on).
 */
export function peerServerSpan(tracer: Tracer, head: { appId: string; method: string; callerAppId: string; headers: readonly string[]; traceparent?: string | undefined; tracestate?: string | undefined; actorType?: string | undefined; actorId?: string | undefined }, rpcMethod: string): Span {
  let tp = head.traceparent ?? '';
  let ts = head.tracestate ?? '';
  if (tp === '') {
    for (let i = 0; i + 1 < head.headers.length; i += 2) {
      if (head.headers[i] === TRACEPARENT) tp = head.headers[i + 1] as string;
      else if (head.headers[i] === TRACESTATE) ts = head.headers[i + 1] as string;
    }
  }
  const span = tracer.start(rpcMethod === 'Mux' ? PEER_MUX : `weft.peer.v1.Peer/${rpcMethod}`, SpanKind.SERVER, parseTraceParent(tp, ts), null);
  if (!span.recording) return span;
  span.attrs({
    'rpc.system': 'grpc',
    'rpc.service': 'weft.peer.v1.Peer',
    'rpc.method': rpcMethod,
    'weft.app_id': head.appId,
    'weft.method': head.method,
    'weft.caller.app_id': head.callerAppId,
  });
  if (head.actorType !== undefined && head.actorType !== '') span.set(ATTR.ACTOR_TYPE, head.actorType).set(ATTR.ACTOR_ID, head.actorId ?? '');
  return span;
}

/** The CLIENT span of a call from the node to its app over HTTP. */
export function appCallSpan(tracer: Tracer, parent: Span, verb: string, host: string, port: number, path: string, appId: string): Span {
  return tracer.child(parent, verb, SpanKind.CLIENT, {
    'http.request.method': verb,
    'server.address': host,
    'server.port': port,
    'url.full': `http://${host}:${port}${path}`,
  });
}

/** Ends an app call span with the app's status (5xx is an error, as for HTTP client spans). */
export function endAppCall(span: Span, status: number): void {
  span.set('http.response.status_code', status);
  if (status >= 500) span.fail(`HTTP_${status}`, `the app answered ${status}`);
  span.end();
}

/** Ends a span with a failure (a WeftError or anything thrown). */
export function endFailed(span: Span, err: unknown): void {
  const e = err as { code?: unknown; message?: unknown };
  span.fail(typeof e?.code === 'string' ? e.code : 'WEFT_INTERNAL', typeof e?.message === 'string' ? e.message : String(err)).end();
}

/**
 * The headers the app receives: the caller's, with `traceparent`/`tracestate` replaced by
 * `span`'s context (the app call span), so the app's own spans are its children.
 */
export function propagate(headers: readonly string[], span: Span): string[] {
  return withTraceContext(headers, span.traceparent, span.traceState);
}

/** `headers` with `traceparent`/`tracestate` replaced (a node that does not trace passes the caller node's on). */
export function withTraceContext(headers: readonly string[], traceparent: string, tracestate: string): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = headers[i] as string;
    if (name === TRACEPARENT || name === TRACESTATE) continue;
    out.push(name, headers[i + 1] as string);
  }
  out.push(TRACEPARENT, traceparent);
  if (tracestate !== '') out.push(TRACESTATE, tracestate);
  return out;
}

/** The traceparent among flat headers (lower-case names), if any. */
export function traceParentOf(headers: readonly string[]): { tp: string; ts: string } | undefined {
  let tp: string | undefined;
  let ts = '';
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if (headers[i] === TRACEPARENT) tp = headers[i + 1];
    else if (headers[i] === TRACESTATE) ts = headers[i + 1] as string;
  }
  return tp === undefined ? undefined : { tp, ts };
}

/** The actor routing span on the caller's node (INTERNAL); "moved" retries become events. */
export function actorRouteSpan(tracer: Tracer, parent: Span | undefined, type: string, id: string, method: string, callerAppId: string): Span {
  const attrs = { [ATTR.ACTOR_TYPE]: type, [ATTR.ACTOR_ID]: id, [ATTR.METHOD]: method, [ATTR.CALLER_APP_ID]: callerAppId };
  return parent === undefined ? tracer.start(`actor route ${type}.${method}`, SpanKind.INTERNAL, undefined, attrs) : tracer.child(parent, `actor route ${type}.${method}`, SpanKind.INTERNAL, attrs);
}

/**
 * The actor turn span on the owner's node (INTERNAL): under the routing span when the owner is
 * the caller's own node, else under the traceparent the peer server put in the headers. It
 * covers the ownership check, the wait for the turn and the app call (its child).
 */
export function actorTurnSpan(tracer: Tracer, parent: Span | undefined, headers: readonly string[], appId: string, type: string, id: string, method: string): Span {
  const attrs = { [ATTR.APP_ID]: appId, [ATTR.ACTOR_TYPE]: type, [ATTR.ACTOR_ID]: id, [ATTR.METHOD]: method };
  if (parent !== undefined) return tracer.child(parent, `actor turn ${type}.${method}`, SpanKind.INTERNAL, attrs);
  const found = traceParentOf(headers);
  return tracer.start(`actor turn ${type}.${method}`, SpanKind.INTERNAL, found === undefined ? undefined : parseTraceParent(found.tp, found.ts), attrs);
}

/** Ends an actor span with the call's outcome (an app's answer, or weft's failure) and hands the outcome on. */
export function endActorSpan<T extends { readonly ok: boolean; readonly status?: number; readonly error?: { readonly code: string; readonly message: string } }>(span: Span, outcome: T): T {
  if (outcome.ok) span.set(ATTR_HTTP_RESPONSE_STATUS_CODE, outcome.status ?? 0);
  else if (outcome.error !== undefined) span.fail(outcome.error.code, outcome.error.message);
  span.end();
  return outcome;
}

/**
 * The app call span for a request whose headers carry the parent's traceparent (actor method
 * calls in a turn); undefined for the node's own calls (`/dapr/config`, deactivations), which
 * belong to no call's trace.
 */
export function appCallSpanFromHeaders(tracer: Tracer, headers: readonly string[], verb: string, host: string, port: number, path: string, appId: string): Span | undefined {
  const found = traceParentOf(headers);
  const parent = found === undefined ? undefined : parseTraceParent(found.tp, found.ts);
  if (parent === undefined || !parent.sampled) return undefined;
  return tracer.start(verb, SpanKind.CLIENT, parent, {
    [ATTR_HTTP_REQUEST_METHOD]: verb,
    [ATTR_SERVER_ADDRESS]: host,
    [ATTR_SERVER_PORT]: port,
    [ATTR_URL_FULL]: `http://${host}:${port}${path}`,
    [ATTR.APP_ID]: appId,
  });
}

// ---------------------------------------------------------------- gRPC proxy mode

/*
 * A proxied gRPC call (src/ingress/grpc-proxy.ts, then src/peer/server.ts) is four spans, as an
 * invocation is: node A's SERVER span named after the proxied method (`package.Service/Method`,
 * the RPC conventions' name), the CLIENT span of its one hop to node B (`weft.peer.v1.Peer/Proxy`,
 * never retried), node B's SERVER span for that hop, and its CLIENT span to the app (the method
 * again). The context travels in each call's `traceparent`/`tracestate` metadata.
 */

const PEER_PROXY = 'weft.peer.v1.Peer/Proxy';

/** `rpc.*` of a gRPC method path (`/package.Service/Method`). */
function rpcOf(path: string): SpanAttributes {
  const slash = path.lastIndexOf('/');
  return { [ATTR.RPC_SYSTEM]: 'grpc', [ATTR.RPC_SERVICE]: path.slice(1, slash), [ATTR.RPC_METHOD]: path.slice(slash + 1) };
}

/** Node A's SERVER span of a proxied call; parent the client's metadata. */
export function proxyIngressSpan(tracer: Tracer, traceparent: unknown, tracestate: unknown, path: string, target: CallTarget): Span {
  const span = tracer.start(path.slice(1), SpanKind.SERVER, metadataParent(traceparent, tracestate), null);
  if (!span.recording) return span;
  const attrs = rpcOf(path);
  attrs[ATTR.APP_ID] = target.appId;
  attrs[ATTR.METHOD] = target.method;
  attrs[ATTR.CALLER_APP_ID] = target.callerAppId;
  return span.attrs(attrs);
}

/** The CLIENT span of node A's hop to node B (`Peer/Proxy`). */
export function proxyHopSpan(tracer: Tracer, parent: Span, peer: { readonly nodeId: string; readonly address: string; readonly port: number }): Span {
  return tracer.child(parent, PEER_PROXY, SpanKind.CLIENT, parent.recording ? {
    ...rpcOf(`/${PEER_PROXY}`),
    [ATTR_SERVER_ADDRESS]: peer.address,
    [ATTR_SERVER_PORT]: peer.port,
    [ATTR.PEER_NODE_ID]: peer.nodeId,
    [ATTR.ATTEMPT]: 1,
  } : null);
}

/**
 * Node B's SERVER span of a proxied call; parent node A's hop (the call's metadata). The caller
 * is set once known (with mTLS, from its certificate).
 */
export function proxyServerSpan(tracer: Tracer, traceparent: unknown, tracestate: unknown, appId: string, path: string): Span {
  const span = tracer.start(PEER_PROXY, SpanKind.SERVER, metadataParent(traceparent, tracestate), null);
  if (!span.recording) return span;
  const attrs = rpcOf(`/${PEER_PROXY}`);
  attrs[ATTR.APP_ID] = appId;
  attrs[ATTR.METHOD] = path;
  return span.attrs(attrs);
}

/** Node B's CLIENT span of the proxied call to the app's gRPC server. */
export function grpcAppCallSpan(tracer: Tracer, parent: Span, path: string, host: string, port: number): Span {
  const attrs = rpcOf(path);
  attrs[ATTR_SERVER_ADDRESS] = host;
  attrs[ATTR_SERVER_PORT] = port;
  return tracer.child(parent, path.slice(1), SpanKind.CLIENT, attrs);
}

/** gRPC codes a SERVER span counts as its own failure (the RPC conventions' list); a CLIENT span fails on any code but OK. */
const SERVER_FAULTS = new Set([2, 4, 12, 13, 14, 15]);

/** Ends a gRPC span with the call's status (`name`: the code's name, the span's `error.type`). */
export function endGrpc(span: Span, code: number, name: string, server: boolean): void {
  span.set(ATTR.RPC_GRPC_STATUS_CODE, code);
  if (code !== 0 && (!server || SERVER_FAULTS.has(code))) span.fail(name, `gRPC status ${name}`);
  span.end();
}
