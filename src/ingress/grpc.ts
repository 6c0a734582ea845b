/**
 * The Dapr-compatible gRPC API a local app calls (default 127.0.0.1:50001): the subset of
 * `dapr.proto.runtime.v1.Dapr` in proto/dapr/proto/runtime/v1/dapr.proto.
 *
 * - `InvokeService`: the same call as the HTTP API's `/v1.0/invoke/...`, through the same
 *   Invoker. The answer must be whole (unary), so a streamed answer is collected up to
 *   `maxBodySize`. An app's non-2xx answer becomes a gRPC error as Dapr makes it (status from
 *   the HTTP status, message the status text, a `google.rpc.ErrorInfo` detail with
 *   `http.code` and the start of the body); a failure of weft's own is its registry status with
 *   Dapr's `failed to invoke, id: X, err: ...` message and the `weft-code` trailer.
 * - `GetMetadata`: the facts of `GET /v1.0/metadata`; the SDKs poll it until the node is up.
 * - `InvokeActor`: the actor API's method call, routed to the actor's owner like
 *   `/v1.0/actors/{type}/{id}/method/{m}`; `metadata` entries reach the actor as headers. An
 *   app's non-2xx answer is Dapr's ErrorInfo status, as for InvokeService.
 * - `GetActorState`, `ExecuteActorStateTransaction`, `RegisterActorTimer`,
 *   `UnregisterActorTimer`, `RegisterActorReminder`, `UnregisterActorReminder`: the actor state,
 *   timer and reminder API (src/ingress/grpc-actors.ts).
 *
 * Every RPC needs the `dapr-api-token` metadata when an API token is configured.
 * Dapr's proxy mode (any other service, routed by `dapr-app-id` metadata) is not served:
 * grpc-js answers such calls UNIMPLEMENTED.
 */
import { timingSafeEqual } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { GrpcStatus, WeftError, type GrpcStatusCode } from '../errors.ts';
import type { Invoker, Outcome } from '../invoker.ts';
import { HOP_BY_HOP } from '../appchannel/http.ts';
import { TYPE_URL_HEADER } from '../appchannel/grpc.ts';
import { TIMEOUT_HEADER } from './http.ts';
import { ERROR_APP_KEY, ERROR_CODE_KEY } from '../peer/codec.ts';
import type { ActorApi } from './actors-http.ts';
import { ActorError } from '../actors/errors.ts';
import { parseTarget } from '../appid.ts';
import { normalizeMethod } from '../method-path.ts';
import { actorStateHandlers } from './grpc-actors.ts';
import type { Span, Tracer } from '../observability/tracing.ts';
import { endIngress, grpcIngressSpan } from '../observability/tracing-spans.ts';
import { PROTO_ROOT } from '../paths.ts';

export interface GrpcApiContext {
  /** The app whose calls this listener takes (the caller of every invocation). */
  readonly callerAppId: string;
  readonly namespace: string;
  readonly apiToken: string | undefined;
  readonly maxBodySize: number;
  readonly invokeTimeoutMs: number;
  readonly invoker: Invoker;
  ready(): boolean;
  /** The node's metadata, as `GET /v1.0/metadata` answers it. */
  metadata(): Record<string, unknown>;
  /** The node's actor runtime; undefined: InvokeActor answers UNIMPLEMENTED. */
  readonly actors?: ActorApi | undefined;
  /** The node's tracer (docs/tracing.md); absent or `on: false`: no spans. */
  readonly tracer?: Tracer | undefined;
}

interface InvokeActorRequest {
  actor_type?: string;
  actor_id?: string;
  method?: string;
  data?: Buffer;
  metadata?: Record<string, string>;
}

const DAPR_PROTO = 'dapr/proto/runtime/v1/dapr.proto';
const SERVICE = 'dapr.proto.runtime.v1.Dapr';

/** HTTPExtension.Verb by number; NONE is sent as POST, as Dapr does. */
const VERBS = ['POST', 'GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH'] as const;

/** Metadata the API consumes, or that is gRPC's own: never forwarded to the target app. */
const CONSUMED = new Set([
  'dapr-app-id', 'dapr-api-token', 'dapr-caller-app-id', 'dapr-caller-namespace', 'dapr-callee-app-id', TIMEOUT_HEADER,
  'content-type', 'content-length', 'accept-encoding', 'grpc-accept-encoding', 'grpc-encoding', 'grpc-timeout',
]);

/**
 * HTTP headers that Dapr renames with a `dapr-` prefix when it returns an app's answer headers
 * as gRPC metadata (they mean something else, or are forbidden, in HTTP/2 metadata).
 */
const PREFIXED = new Set([
  'accept', 'accept-charset', 'accept-language', 'accept-ranges', 'cache-control', 'content-type', 'content-length',
  'cookie', 'date', 'expect', 'from', 'if-match', 'if-modified-since', 'if-none-match', 'if-schedule-tag-match',
  'if-unmodified-since', 'max-forwards', 'origin', 'pragma', 'referer', 'via', 'warning',
]);

/** Dapr's ErrorInfo for an app's non-2xx answer: its domain, metadata keys and value limit. */
const ERROR_INFO_DOMAIN = 'dapr.io';
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';
const ERROR_INFO_VALUE_MAX = 63;
/** Response metadata naming the app's HTTP status when it was not 2xx (Dapr's). */
const HTTP_STATUS_KEY = 'dapr-http-status';
/** Room for the rest of InvokeServiceRequest next to a body of maxBodySize. */
const ENVELOPE_SLACK = 64 * 1024;

interface AnyMessage {
  type_url?: string;
  value?: Buffer;
}
interface InvokeServiceRequest {
  id?: string;
  message?: {
    method?: string;
    data?: AnyMessage | null;
    content_type?: string;
    http_extension?: { verb?: number; querystring?: string } | null;
  } | null;
}
interface InvokeResponse {
  data: { type_url: string; value: Buffer };
  content_type: string;
}

let loaded: grpc.ServiceDefinition | undefined;

/** The service definition from proto/, loaded on first use. */
function daprService(): grpc.ServiceDefinition {
  loaded ??= protoLoader.loadSync(DAPR_PROTO, {
    includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: Number, defaults: false, oneofs: true,
  })[SERVICE] as grpc.ServiceDefinition;
  return loaded;
}

export class GrpcApi {
  readonly server: grpc.Server;
  private readonly ctx: GrpcApiContext;

  constructor(ctx: GrpcApiContext) {
    this.ctx = ctx;
    const service = daprService();
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': ctx.maxBodySize + ENVELOPE_SLACK,
      // Answers are bounded by maxBodySize here, before they are encoded.
      'grpc.max_send_message_length': -1,
    });
    this.server.addService(service, {
      ...actorStateHandlers({
        actors: ctx.actors, invokeTimeoutMs: ctx.invokeTimeoutMs,
        authenticate: (md) => this.authenticate(md), status: (err) => weftStatus(err),
      }),
      InvokeService: (call: grpc.ServerUnaryCall<InvokeServiceRequest, InvokeResponse>, cb: grpc.sendUnaryData<InvokeResponse>) => {
        this.invokeService(call).then(
          (res) => cb(null, res),
          // An app's error answer is a status object already; anything thrown is weft's.
          (err: unknown) => cb(err instanceof Error ? weftStatus(WeftError.from(err)) : (err as Partial<grpc.StatusObject>)),
        ).catch((err: unknown) => {
          // cb itself threw: answer with what can surely be sent (a no-op if the call is gone).
          try {
            cb({ code: grpc.status.INTERNAL, details: `weft could not send its answer: ${(err as Error).message}` });
          } catch {
            // the call is gone
          }
        });
      },
      GetMetadata: (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        try {
          this.authenticate(call.metadata);
          if (!this.ctx.ready()) throw new WeftError('WEFT_HEALTH_NOT_READY', 'the node is not ready');
          cb(null, metadataResponse(this.ctx.metadata()));
        } catch (err) {
          cb(weftStatus(WeftError.from(err)));
        }
      },
      InvokeActor: (call: grpc.ServerUnaryCall<InvokeActorRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
        try {
          this.authenticate(call.metadata);
          const actors = this.ctx.actors;
          if (actors === undefined) throw new ActorError('WEFT_ACTOR_NOT_SUPPORTED', 'this node serves no actors');
          const r = call.request;
          const headers: string[] = [];
          for (const [k, v] of Object.entries(r.metadata ?? {})) headers.push(k.toLowerCase(), v);
          let deadline = Date.now() + this.ctx.invokeTimeoutMs;
          const asked = call.getDeadline();
          const askedMs = asked instanceof Date ? asked.getTime() : asked;
          if (Number.isFinite(askedMs)) deadline = Math.min(deadline, askedMs);
          const tracer = this.ctx.tracer;
          const span = tracer?.on === true ? grpcIngressSpan(tracer, call.metadata.get('traceparent')[0], call.metadata.get('tracestate')[0], 'InvokeActor', { appId: r.actor_type ?? '', method: r.method ?? '', callerAppId: this.ctx.callerAppId }) : undefined;
          actors.invoke({
            type: r.actor_type ?? '', id: r.actor_id ?? '', method: r.method ?? '', headers,
            body: r.data === undefined || r.data.length === 0 ? null : r.data, deadline,
            callerAppId: this.ctx.callerAppId, callerNamespace: this.ctx.namespace, trace: span,
          }).then((outcome) => {
            if (span !== undefined) endIngress(span, outcome.ok ? outcome.status : 0, outcome.ok ? undefined : outcome.error);
            if (!outcome.ok) return cb(weftStatus(outcome.error));
            if (outcome.status < 200 || outcome.status >= 300) return cb(appErrorStatus(outcome.status, Buffer.from(outcome.body)));
            cb(null, { data: Buffer.from(outcome.body) });
          }).catch((err: unknown) => {
            try {
              cb(weftStatus(WeftError.from(err)));
            } catch {
              // the call is gone
            }
          });
        } catch (err) {
          cb(weftStatus(WeftError.from(err)));
        }
      },
    });
  }

  /** Listens on host:port (0 picks a free port) and resolves with the bound port. */
  bind(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const address = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
      this.server.bindAsync(address, grpc.ServerCredentials.createInsecure(), (err, bound) => {
        if (err !== null) reject(new WeftError('WEFT_INTERNAL', `grpc: cannot listen on ${address}: ${err.message}`, { cause: err }));
        else resolve(bound);
      });
    });
  }

  /** Stops taking calls, lets those in flight finish for up to `graceMs`, then cuts the rest. */
  close(graceMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private authenticate(md: grpc.Metadata): void {
    checkApiToken(md, this.ctx.apiToken);
  }

  private async invokeService(call: grpc.ServerUnaryCall<InvokeServiceRequest, InvokeResponse>): Promise<InvokeResponse> {
    const { ctx } = this;
    this.authenticate(call.metadata);
    const req = call.request;
    const target = parseTarget(req.id ?? '', ctx.namespace);
    if (target instanceof WeftError) throw target;
    const { appId, namespace } = target;
    const message = req.message ?? {};
    const ext = message.http_extension ?? {};
    const verb = VERBS[ext.verb ?? 0];
    if (verb === undefined) throw new WeftError('WEFT_BAD_REQUEST', `unknown http_extension.verb ${String(ext.verb)}`);
    if (verb === 'CONNECT') throw new WeftError('WEFT_METHOD_NOT_ALLOWED', 'CONNECT cannot be invoked on an app');
    // A query string written into the method (as the SDK lets one do) goes where it belongs.
    let method = message.method ?? '';
    let query = ext.querystring ?? '';
    if (query.startsWith('?')) query = query.slice(1);
    const q = method.indexOf('?');
    if (q !== -1) {
      const inMethod = method.slice(q + 1);
      method = method.slice(0, q);
      query = query === '' ? inMethod : inMethod === '' ? query : `${inMethod}&${query}`;
    }
    const normalized = normalizeMethod(method);
    if (normalized instanceof WeftError) throw normalized;
    method = normalized.path;
    // A query string is sent as URL text: what cannot stand raw in a URL (spaces, non-ASCII,
    // control characters) is percent-encoded here rather than refused by the app channel.
    if (/[^\x21-\x7e]/.test(query)) {
      if (/\p{Surrogate}/u.test(query)) throw new WeftError('WEFT_BAD_REQUEST', 'http_extension.querystring is not valid Unicode (a lone surrogate)');
      query = query.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
    }

    const data = message.data?.value;
    if (data !== undefined && data.length > ctx.maxBodySize) {
      throw new WeftError('WEFT_BODY_TOO_LARGE', `request body of ${data.length} bytes is over the limit of ${ctx.maxBodySize} bytes`);
    }
    let body: ArrayBuffer | null = null;
    if (data !== undefined && data.length > 0) {
      // An exact-size buffer of its own, so it can be transferred to the outbound side.
      body = new ArrayBuffer(data.length);
      new Uint8Array(body).set(data);
    }

    const headers = forwardHeaders(call);
    const contentType = message.content_type ?? '';
    if (contentType !== '') headers.push('content-type', contentType);
    // For a gRPC app: the Any's type URL reaches it unchanged (an HTTP app ignores the header).
    const typeUrl = message.data?.type_url ?? '';
    if (typeUrl !== '') headers.push(TYPE_URL_HEADER, typeUrl);

    let deadline = Date.now() + ctx.invokeTimeoutMs;
    const asked = call.getDeadline();
    const askedMs = asked instanceof Date ? asked.getTime() : asked;
    if (Number.isFinite(askedMs)) deadline = Math.min(deadline, askedMs);

    const span = ctx.tracer?.on === true ? grpcIngressSpan(ctx.tracer, call.metadata.get('traceparent')[0], call.metadata.get('tracestate')[0], 'InvokeService', { appId, method, callerAppId: ctx.callerAppId }) : undefined;
    const gone = callerCancelled(call);
    const outcome = await ctx.invoker.invoke({
      appId, namespace, callerAppId: ctx.callerAppId, callerNamespace: ctx.namespace,
      method, verb, query, headers, body, deadline, trace: span, signal: gone,
    });
    if (span !== undefined) endIngress(span, outcome.type === 'error' ? 0 : outcome.head.status, outcome.type === 'error' ? outcome.error : undefined);
    return this.answer(call, outcome, appId, span);
  }

  private async answer(call: grpc.ServerUnaryCall<InvokeServiceRequest, InvokeResponse>, outcome: Outcome, appId: string, span?: Span): Promise<InvokeResponse> {
    if (outcome.type === 'error') throw outcome.error;
    const { head } = outcome;
    const ok = head.status >= 200 && head.status < 300;
    let body: Buffer;
    if (outcome.type === 'response') {
      body = outcome.body ?? Buffer.alloc(0);
      if (ok && body.length > this.ctx.maxBodySize) throw answerTooLarge(this.ctx.maxBodySize);
    } else {
      // A unary answer is whole: collect the stream, but never past the limit.
      const chunks: Buffer[] = [];
      let size = 0;
      let over = false;
      try {
        for (;;) {
          if (call.cancelled) throw new WeftError('WEFT_CANCELLED', 'the caller went away before the call finished', { appId });
          const e = await outcome.reader.next();
          if (e.type === 'data') {
            size += e.chunk.length;
            if (size > this.ctx.maxBodySize) {
              over = true;
              break;
            }
            chunks.push(e.chunk);
          } else if (e.type === 'end') {
            break;
          } else if (e.type === 'error') {
            throw WeftError.from(e.error, appId);
          }
        }
      } finally {
        outcome.reader.close();
      }
      // Of an error answer only the start is kept, so a large one is no failure.
      if (over && ok) throw answerTooLarge(this.ctx.maxBodySize);
      body = chunks.length === 1 ? chunks[0] as Buffer : Buffer.concat(chunks);
    }

    // A gRPC app's own status (src/appchannel/grpc.ts): back to the caller unchanged.
    const grpcStatus = headerValue(head.headers, 'grpc-status');
    if (!ok && grpcStatus !== undefined && /^\d+$/.test(grpcStatus)) {
      call.sendMetadata(new grpc.Metadata());
      throw appGrpcStatus(Number(grpcStatus), head.headers);
    }
    const md = responseMetadata(head.headers);
    // As Dapr answers: the trace context of this call's span on this node.
    if (span !== undefined) md.set('traceparent', span.traceparent);
    if (!ok) {
      md.set(HTTP_STATUS_KEY, String(head.status));
      call.sendMetadata(md);
      throw appErrorStatus(head.status, body);
    }
    call.sendMetadata(md);
    return { data: { type_url: headerValue(head.headers, TYPE_URL_HEADER) ?? '', value: body }, content_type: headerValue(head.headers, 'content-type') ?? '' };
  }
}

/** Throws WEFT_UNAUTHORIZED unless `md` carries the API token (when one is configured). */
export function checkApiToken(md: grpc.Metadata, expected: string | undefined): void {
  if (expected === undefined) return;
  const given = md.get('dapr-api-token')[0];
  if (typeof given === 'string') {
    const a = Buffer.from(given);
    const b = Buffer.from(expected);
    if (a.length === b.length && timingSafeEqual(a, b)) return;
  }
  throw new WeftError('WEFT_UNAUTHORIZED', 'invalid api token');
}

export function createGrpcApi(ctx: GrpcApiContext): GrpcApi {
  return new GrpcApi(ctx);
}

function answerTooLarge(max: number): WeftError {
  return new WeftError('WEFT_BODY_TOO_LARGE', `the answer is over the limit of ${max} bytes (a gRPC answer is whole; use the HTTP API for large answers)`);
}

/** The caller's metadata as HTTP headers for the target app. */
function forwardHeaders(call: { readonly metadata: grpc.Metadata; getPeer(): string }): string[] {
  const out: string[] = [];
  let forwardedFor: string | undefined;
  for (const key of Object.keys(call.metadata.getMap())) {
    if (key.startsWith(':') || key.startsWith('grpc-') || key.endsWith('-bin') || HOP_BY_HOP.has(key) || CONSUMED.has(key)) continue;
    for (const v of call.metadata.get(key)) {
      if (typeof v !== 'string') continue;
      if (key === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? v : `${forwardedFor}, ${v}`;
      else out.push(key, v);
    }
  }
  const client = peerAddress(call.getPeer());
  if (client !== '') {
    out.push('x-forwarded-for', forwardedFor === undefined ? client : `${forwardedFor}, ${client}`);
    out.push('forwarded', `for=${client.includes(':') ? `"[${client}]"` : client}`);
  }
  return out;
}

/** "127.0.0.1:5000" or "[::1]:5000" (grpc-js's getPeer) to the address alone. */
function peerAddress(peer: string): string {
  if (peer.startsWith('[')) return peer.slice(1, Math.max(1, peer.indexOf(']')));
  const colon = peer.lastIndexOf(':');
  return colon === -1 ? peer : peer.slice(0, colon);
}

/** The app's answer headers as gRPC response metadata, renamed the way Dapr does. */
function responseMetadata(headers: readonly string[]): grpc.Metadata {
  const md = new grpc.Metadata();
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = (headers[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(name) || name.endsWith('-bin') || name.startsWith('grpc-') || !/^[0-9a-z_.-]+$/.test(name)) continue;
    const value = headers[i + 1] as string;
    if (!/^[ -~]*$/.test(value)) continue;
    md.add(PREFIXED.has(name) ? `dapr-${name}` : name, value);
  }
  return md;
}

function headerValue(headers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < headers.length; i += 2) {
    if ((headers[i] as string).toLowerCase() === name) return headers[i + 1];
  }
  return undefined;
}

/**
 * gRPC status for an app's HTTP status: Dapr's mapping, except that 400 is INVALID_ARGUMENT
 * (Dapr says INTERNAL, which reads as a failure of the node rather than of the request).
 */
export function grpcStatusFromHttp(status: number): GrpcStatusCode {
  switch (status) {
    case 400: return GrpcStatus.INVALID_ARGUMENT;
    case 401: return GrpcStatus.UNAUTHENTICATED;
    case 403: return GrpcStatus.PERMISSION_DENIED;
    case 404: return GrpcStatus.NOT_FOUND;
    case 408: return GrpcStatus.CANCELLED;
    case 409: return GrpcStatus.ALREADY_EXISTS;
    case 429: return GrpcStatus.RESOURCE_EXHAUSTED;
    case 501: return GrpcStatus.UNIMPLEMENTED;
    case 503: return GrpcStatus.UNAVAILABLE;
    case 504: return GrpcStatus.DEADLINE_EXCEEDED;
    default: return GrpcStatus.UNKNOWN;
  }
}

/** An app's non-2xx answer as Dapr sends it: status text as message, an ErrorInfo detail. */
function appErrorStatus(status: number, body: Buffer): Partial<grpc.StatusObject> {
  const code = grpcStatusFromHttp(status);
  const text = STATUS_CODES[status] ?? `HTTP ${status}`;
  // Dapr keeps at most 63 characters of the body (an ErrorInfo metadata value limit).
  let detail = body.subarray(0, ERROR_INFO_VALUE_MAX * 4).toString('utf8');
  if (detail.length > ERROR_INFO_VALUE_MAX) detail = detail.slice(0, ERROR_INFO_VALUE_MAX);
  const info = encodeErrorInfo(text, ERROR_INFO_DOMAIN, { 'http.code': String(status), 'http.error_message': detail });
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', encodeStatus(code, text, [{ typeUrl: ERROR_INFO_TYPE, value: info }]));
  return { code: code as number as grpc.status, details: text, metadata };
}

/**
 * A gRPC app's non-OK status as it sent it: code, message, and its trailers (the details in
 * `grpc-status-details-bin` among them, base64 on the way through, as on the wire).
 */
function appGrpcStatus(code: number, headers: readonly string[]): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  let details = '';
  for (let i = 0; i + 1 < headers.length; i += 2) {
    const name = (headers[i] as string).toLowerCase();
    const value = headers[i + 1] as string;
    if (name === 'grpc-message') {
      try {
        details = decodeURIComponent(value);
      } catch {
        details = value;
      }
      continue;
    }
    if (name === 'grpc-status' || name === 'content-type' || name === TYPE_URL_HEADER || HOP_BY_HOP.has(name) || !/^[0-9a-z_.-]+$/.test(name)) continue;
    if (name.endsWith('-bin')) metadata.add(name, Buffer.from(value, 'base64'));
    else if (!name.startsWith('grpc-') && /^[ -~]*$/.test(value)) metadata.add(name, value);
  }
  return { code: code as grpc.status, details, metadata };
}

/**
 * A weft failure: its registry status, Dapr's message, weft's code in the trailers. Never throws:
 * a value grpc-js would refuse as metadata (an app id with non-ASCII or control characters) is
 * left out, so that every call gets its status.
 */
export function weftStatus(err: WeftError): Partial<grpc.StatusObject> {
  const metadata = new grpc.Metadata();
  metadata.set(ERROR_CODE_KEY, err.code);
  if (err.appId !== undefined && /^[ -~]*$/.test(err.appId)) metadata.set(ERROR_APP_KEY, err.appId);
  return { code: err.grpcStatus as number as grpc.status, details: err.publicMessage, metadata };
}

/**
 * Aborts when the gRPC caller cancels its call or its deadline passes (grpc-js reports both
 * as 'cancelled'): the invoker then cancels the onward call and the app's request.
 */
function callerCancelled(call: grpc.ServerUnaryCall<unknown, unknown>): AbortSignal {
  const controller = new AbortController();
  if (call.cancelled) controller.abort();
  else call.once('cancelled', () => controller.abort());
  return controller.signal;
}

/** `GET /v1.0/metadata`'s facts in GetMetadataResponse's shape (`extended` as strings). */
function metadataResponse(md: Record<string, unknown>): Record<string, unknown> {
  const extended: Record<string, string> = {};
  const ext = md['extended'];
  if (typeof ext === 'object' && ext !== null) {
    for (const [k, v] of Object.entries(ext)) {
      if (v !== undefined) extended[k] = typeof v === 'string' ? v : JSON.stringify(v);
    }
  }
  const actors = Array.isArray(md['actors']) ? (md['actors'] as Array<{ type?: unknown; count?: unknown }>) : [];
  const conn = (md['appConnectionProperties'] ?? {}) as Record<string, unknown>;
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const int = (v: unknown): number => (typeof v === 'number' && Number.isInteger(v) ? v : 0);
  return {
    id: str(md['id']),
    runtime_version: str(md['runtimeVersion']),
    enabled_features: Array.isArray(md['enabledFeatures']) ? md['enabledFeatures'].filter((f): f is string => typeof f === 'string') : [],
    active_actors_count: actors.map((a) => ({ type: str(a.type), count: int(a.count) })),
    registered_components: [],
    extended_metadata: extended,
    http_endpoints: [],
    app_connection_properties: {
      port: int(conn['port']), protocol: str(conn['protocol']), channel_address: str(conn['channelAddress']), max_concurrency: int(conn['maxConcurrency']),
    },
  };
}

// --- google.rpc.Status and google.rpc.ErrorInfo, encoded by hand (two small messages) ---

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** A length-delimited field (wire type 2). */
function field(num: number, value: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...varint((num << 3) | 2), ...varint(value.length)]), value]);
}

/** ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; } */
function encodeErrorInfo(reason: string, domain: string, metadata: Record<string, string>): Buffer {
  const parts = [field(1, Buffer.from(reason)), field(2, Buffer.from(domain))];
  for (const [k, v] of Object.entries(metadata)) parts.push(field(3, Buffer.concat([field(1, Buffer.from(k)), field(2, Buffer.from(v))])));
  return Buffer.concat(parts);
}

/** Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; } */
function encodeStatus(code: number, message: string, details: ReadonlyArray<{ typeUrl: string; value: Uint8Array }>): Buffer {
  const parts = [Buffer.from([0x08, ...varint(code)]), field(2, Buffer.from(message))];
  for (const d of details) parts.push(field(3, Buffer.concat([field(1, Buffer.from(d.typeUrl)), field(2, d.value)])));
  return Buffer.concat(parts);
}
