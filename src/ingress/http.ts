/**
 * The Dapr-compatible HTTP API a local app calls (default 127.0.0.1:3500).
 *
 * Routes: `/v1.0/invoke/{appId}/method/{method...}` (and the `dapr-app-id` header and basic
 * auth forms), `/v1.0/healthz`, `/v1.0/healthz/outbound`, `/v1.0/metadata`. Every failure is
 * Dapr's error JSON with a stable code; a malformed request is a 4xx, never a crash.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Transform, type Duplex, type Readable, type TransformCallback } from 'node:stream';
import type { Socket } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { WeftError } from '../errors.ts';
import { parseTarget } from '../appid.ts';
import { normalizeMethod } from '../method-path.ts';
import { parseDuration } from '../duration.ts';
import type { Invoker, Outcome } from '../invoker.ts';
import { HOP_BY_HOP } from '../appchannel/http.ts';
import { WHOLE_BODY_LIMIT } from '../../workers/port-stream.ts';
import { ACTORS_PREFIX, handleActors, type ActorApi } from './actors-http.ts';
import type { Span, Tracer } from '../observability/tracing.ts';
import { answerHeaders, endIngress, httpIngressSpan } from '../observability/tracing-spans.ts';

export interface HttpApiContext {
  /** The app whose calls this listener takes (the caller of every invocation). */
  readonly callerAppId: string;
  readonly namespace: string;
  readonly apiToken: string | undefined;
  readonly maxBodySize: number;
  readonly invokeTimeoutMs: number;
  /** How long a client may take to send a request head (`timeouts.headers`); past it, 408. */
  readonly headersTimeoutMs?: number | undefined;
  /** Connections open at once (`http.maxConnections`, default 1024); one more is answered 503 WEFT_OVERLOADED and closed. */
  readonly maxConnections?: number | undefined;
  readonly invoker: Invoker;
  ready(): boolean;
  outboundReady(): boolean;
  servesApp(appId: string): boolean;
  /** Why a served app is failing its health checks (`/v1.0/healthz?appid=` answers it), or undefined. */
  appUnhealthy?(appId: string): string | undefined;
  metadata(): unknown;
  /** The node's actor runtime (`/v1.0/actors/...`); undefined answers 501. */
  readonly actors?: ActorApi | undefined;
  /** The node's tracer (docs/tracing.md); absent or `on: false`: no spans. */
  readonly tracer?: Tracer | undefined;
}

const INVOKE_PREFIX = '/v1.0/invoke/';
/** A caller's own deadline for one call (`2s`, `500ms`, or ms); it can shorten the node's, never lengthen it. */
export const TIMEOUT_HEADER = 'weft-timeout';
const JSON_TYPE = 'application/json';
/** Headers the ingress consumes and never forwards. */
const CONSUMED = new Set(['dapr-app-id', 'dapr-api-token', 'dapr-caller-app-id', 'dapr-caller-namespace', 'dapr-callee-app-id', TIMEOUT_HEADER]);
/** The longest request URL taken (414 past it). */
export const MAX_URL_LENGTH = 8 * 1024;
/** The largest request head (request line and headers) the parser takes (431 past it; 414 when the URL alone is that long). */
export const MAX_HEAD_BYTES = 16 * 1024;
const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
const DEFAULT_MAX_CONNECTIONS = 1024;

/**
 * A URL character past ASCII (Node reads URLs as latin1). Node's strict parser refuses such bytes with a 400 before
 * any handler runs (invoke.test.ts); only a lenient one (`--insecure-http-parser`) lets them through, so this is tested first.
 */
const LATIN1_HIGH = /[\u0080-\u00ff]/;
const LATIN1_HIGH_ALL = /[\u0080-\u00ff]/g;

/** Requests that asked `Expect: 100-continue` and have not been told to go on yet. */
const awaitingContinue = new WeakSet<IncomingMessage>();

export function createHttpApi(ctx: HttpApiContext): Server {
  const headersTimeout = ctx.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const refused = new WeakSet<object>();
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    // a connection past the cap was answered and is closing: nothing on it is served
    if (refused.has(req.socket)) return void req.resume();
    handle(ctx, req, res).catch((err: unknown) => sendError(res, WeftError.from(err)));
  };
  const server = createServer({
    keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout, maxHeaderSize: MAX_HEAD_BYTES,
    // How often Node looks for heads past headersTimeout (its default, 30 s, would let a short timeout run long).
    connectionsCheckingInterval: Math.max(50, Math.min(30_000, Math.floor(headersTimeout / 4))),
  }, onRequest);
  // At most `maxConnections` open at once: each connection holds a file descriptor and buffers,
  // and a client could otherwise open them without end. One past the cap is answered at once
  // (503 WEFT_OVERLOADED, which says the call was never run, so a client may retry it) and
  // closed, and a request already sent on it is not served; Node's own `maxConnections` would
  // drop it with no answer. Counted here, per listener, as connections open and close.
  const maxConnections = ctx.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  let open = 0;
  server.on('connection', (socket: Socket) => {
    if (open >= maxConnections) {
      refused.add(socket);
      rawAnswer(socket, new WeftError('WEFT_OVERLOADED', `this listener already has ${maxConnections} connections open (http.maxConnections); try again once one closes`));
      return;
    }
    open++;
    socket.once('close', () => {
      open--;
    });
  });
  // `Expect: 100-continue`: the body is asked for only once the request is known to be taken
  // (token, target, method path and declared size checked); a refusal is the final answer.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    awaitingContinue.add(req);
    onRequest(req, res);
  });
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
    sendError(res, new WeftError('WEFT_EXPECTATION_FAILED', `expectation ${JSON.stringify(String(req.headers.expect).slice(0, 64))} is not supported (only 100-continue)`), true);
  });
  // CONNECT is not a route here: answer it instead of dropping the socket.
  server.on('connect', (req: IncomingMessage, socket: Duplex) => {
    rawAnswer(socket, new WeftError('WEFT_METHOD_NOT_ALLOWED', `CONNECT is not supported (${String(req.url).length > 64 ? 'target' : JSON.stringify(req.url)})`), { allow: 'GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE' });
  });
  server.on('clientError', (err: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => {
    // A client that stops sending a body weft already answered (e.g. with a 413) ends up
    // here too: its answer is on the wire, so close gently (no 400 after it, and no reset
    // that could destroy the answer before the client reads it).
    const answered = (socket as { _httpMessage?: ServerResponse | null })._httpMessage?.headersSent === true;
    if (answered) {
      socket.end();
      setTimeout(() => socket.destroy(), 1000).unref();
    } else if (socket.writable && err.code !== 'ECONNRESET') {
      rawAnswer(socket, clientErrorOf(err));
    } else {
      socket.destroy();
    }
  });
  return server;
}

/** What a request the parser refused gets: 408, 414, 431, or 400. */
function clientErrorOf(err: NodeJS.ErrnoException & { rawPacket?: Buffer }): WeftError {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return new WeftError('WEFT_REQUEST_TIMEOUT', 'the request head did not arrive in time');
    case 'HPE_HEADER_OVERFLOW': {
      // The parser says only "head too large"; a request line with no end in sight is a long URL.
      const packet = err.rawPacket;
      const eol = packet === undefined ? -1 : packet.indexOf('\r\n');
      const line = packet === undefined ? 0 : eol === -1 ? packet.length : eol;
      if (line > MAX_URL_LENGTH) return new WeftError('WEFT_URI_TOO_LONG', `the request URL is longer than ${MAX_URL_LENGTH} bytes`);
      return new WeftError('WEFT_HEADERS_TOO_LARGE', `the request head is larger than ${MAX_HEAD_BYTES} bytes`);
    }
    default:
      return new WeftError('WEFT_BAD_REQUEST', `malformed HTTP request (${err.code ?? 'parse error'})`);
  }
}

/** An answer written straight to a socket the HTTP server has given up on; the connection closes. */
function rawAnswer(socket: Duplex, err: WeftError, extra: Record<string, string> = {}): void {
  const body = JSON.stringify(err);
  let head = `HTTP/1.1 ${err.httpStatus} ${STATUS_CODES[err.httpStatus] ?? ''}\r\ncontent-type: ${JSON_TYPE}\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n`;
  for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
  socket.end(`${head}\r\n${body}`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

async function handle(ctx: HttpApiContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = req.url ?? '/';
  if (url.length > MAX_URL_LENGTH) return reject(req, res, new WeftError('WEFT_URI_TOO_LONG', `the request URL is longer than ${MAX_URL_LENGTH} bytes`));
  // Origin form only: an absolute URL (`GET http://host/...`) or `*` names no route here.
  if (!url.startsWith('/')) return reject(req, res, new WeftError('WEFT_BAD_REQUEST', 'the request target must be a path (origin form)'));
  const q = url.indexOf('?');
  const path = q === -1 ? url : url.slice(0, q);
  const query = q === -1 ? '' : url.slice(q + 1);

  // Health endpoints need no token (Dapr's rule).
  if (path === '/v1.0/healthz') return health(ctx, req, res, query);
  if (path === '/v1.0/healthz/outbound') return ctx.outboundReady() ? noContent(req, res) : sendError(res, new WeftError('WEFT_HEALTH_NOT_READY', 'outbound not ready'));

  if (ctx.apiToken !== undefined && !tokenMatches(req.headers['dapr-api-token'], ctx.apiToken)) {
    req.resume();
    return sendError(res, new WeftError('WEFT_UNAUTHORIZED', 'invalid api token'));
  }

  const headerAppId = req.headers['dapr-app-id'];
  if (typeof headerAppId === 'string' && headerAppId !== '') return invoke(ctx, req, res, headerAppId, path.slice(1), query, 'header');
  const basicAppId = basicAuthAppId(req.headers.authorization);
  if (basicAppId !== undefined) return invoke(ctx, req, res, basicAppId, path.slice(1), query, 'basic');

  if (path.startsWith(INVOKE_PREFIX)) {
    const rest = path.slice(INVOKE_PREFIX.length);
    const slash = rest.indexOf('/');
    const appId = decodeSegment(slash === -1 ? rest : rest.slice(0, slash));
    const after = slash === -1 ? '' : rest.slice(slash);
    if (appId === '' ) return reject(req, res, new WeftError('WEFT_NO_APP_ID', 'no app id in the request'));
    if (appId === null) return reject(req, res, new WeftError('WEFT_BAD_REQUEST', 'the app id is not valid URL encoding'));
    if (!after.startsWith('/method/') && after !== '/method') {
      return reject(req, res, new WeftError('WEFT_BAD_REQUEST', 'expected /v1.0/invoke/<appId>/method/<method>'));
    }
    return invoke(ctx, req, res, appId, after.slice('/method/'.length), query, 'path');
  }
  if (path.startsWith(ACTORS_PREFIX)) {
    if (awaitingContinue.delete(req)) res.writeContinue();
    return handleActors(ctx, req, res, path);
  }
  if (path === '/v1.0/invoke' || path === '/v1.0/invoke/') return reject(req, res, new WeftError('WEFT_NO_APP_ID', 'no app id in the request'));
  if (path === '/v1.0/metadata') {
    if (req.method !== 'GET') return reject(req, res, new WeftError('WEFT_METHOD_NOT_ALLOWED', `${req.method} is not allowed on /v1.0/metadata`));
    return sendJson(req, res, 200, ctx.metadata());
  }
  return reject(req, res, new WeftError('WEFT_ROUTE_NOT_FOUND', `no route ${req.method} ${path}`));
}

function health(ctx: HttpApiContext, req: IncomingMessage, res: ServerResponse, query: string): void {
  const appId = new URLSearchParams(query).get('appid');
  if (appId !== null && !ctx.servesApp(appId)) return sendError(res, new WeftError('WEFT_HEALTH_APPID_MISMATCH', `app id ${appId} is not served by this node`));
  if (!ctx.ready()) return sendError(res, new WeftError('WEFT_HEALTH_NOT_READY', 'dapr is not ready'));
  const unhealthy = appId === null ? undefined : ctx.appUnhealthy?.(appId);
  if (appId !== null && unhealthy !== undefined) return sendError(res, new WeftError('WEFT_APP_UNHEALTHY', `app ${appId} failed its health checks: ${unhealthy}`, { appId }));
  noContent(req, res);
}

async function invoke(ctx: HttpApiContext, req: IncomingMessage, res: ServerResponse, rawTarget: string, rawMethod: string, query: string, form: 'header' | 'basic' | 'path'): Promise<void> {
  const target = parseTarget(rawTarget, ctx.namespace);
  if (target instanceof WeftError) return reject(req, res, target);
  const { appId, namespace } = target;
  // Node reads the URL as latin1: bytes past ASCII are escaped back to bytes, then read as UTF-8.
  const normalized = normalizeMethod(LATIN1_HIGH.test(rawMethod) ? rawMethod.replace(LATIN1_HIGH_ALL, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`) : rawMethod);
  if (normalized instanceof WeftError) return reject(req, res, normalized);
  const method = normalized.path;
  let timeoutMs = ctx.invokeTimeoutMs;
  const asked = req.headers[TIMEOUT_HEADER];
  if (typeof asked === 'string') {
    const ms = parseDuration(asked);
    if (ms === undefined || ms <= 0) return reject(req, res, new WeftError('WEFT_BAD_REQUEST', `${TIMEOUT_HEADER}: "${asked}" is not a duration (e.g. 500ms, 2s)`));
    timeoutMs = Math.min(timeoutMs, ms);
  }

  const length = req.headers['content-length'];
  const declared = length === undefined ? -1 : Number(length);
  if (declared > ctx.maxBodySize) {
    return reject(req, res, new WeftError('WEFT_BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${ctx.maxBodySize} bytes`), true);
  }
  let body: Uint8Array | Readable | null;
  // Taken: now the body may come.
  if (awaitingContinue.delete(req)) res.writeContinue();
  const chunked = declared < 0 && (req.headers['transfer-encoding'] !== undefined);
  if (declared === 0 || (declared < 0 && !chunked)) {
    body = null;
    req.resume();
  } else if (declared > 0 && declared <= WHOLE_BODY_LIMIT) {
    const whole = await readExactly(req, declared);
    if (whole === null) return reject(req, res, new WeftError('WEFT_BAD_REQUEST', 'the request body ended before its content-length'));
    body = whole;
  } else {
    body = streamedBody(req, ctx.maxBodySize);
  }

  const span = ctx.tracer?.on === true ? httpIngressSpan(ctx.tracer, req, form === 'path' ? '/v1.0/invoke/{appId}/method/{method}' : '/{method}', { appId, method, callerAppId: ctx.callerAppId }) : undefined;
  const gone = callerGone(res);
  const outcome = await ctx.invoker.invoke({
    appId, namespace, callerAppId: ctx.callerAppId, callerNamespace: ctx.namespace,
    method, verb: req.method ?? 'GET', query, headers: forwardHeaders(req, form), body,
    deadline: Date.now() + timeoutMs, signal: gone, trace: span,
  });
  // Nobody is left to answer: the invoker has cancelled the call downstream.
  if (gone.aborted) {
    if (span !== undefined) endIngress(span, 0, new WeftError('WEFT_CANCELLED', 'the caller went away'));
    return;
  }
  await write(res, outcome, req, span);
  if (span !== undefined) endIngress(span, outcome.type === 'error' ? 0 : outcome.head.status, outcome.type === 'error' ? outcome.error : undefined);
}

/**
 * Aborts when the caller goes away before its answer is all written: its connection closed
 * (mid-body, while the call runs, or while the answer streams).
 */
function callerGone(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/**
 * A request body that streams on (chunked, or over WHOLE_BODY_LIMIT): each chunk is passed on
 * as it comes, and the stream fails (rather than waiting forever) if the client goes away part way.
 */
function streamedBody(req: IncomingMessage, max: number): Readable {
  const body = limit(max);
  req.pipe(body);
  req.once('close', () => {
    if (!req.complete) body.destroy(new WeftError('WEFT_CANCELLED', 'the caller went away while sending the request body'));
  });
  return body;
}

async function write(res: ServerResponse, outcome: Outcome, req: IncomingMessage, span?: Span): Promise<void> {
  if (outcome.type === 'error') {
    // e.g. a chunked body found over the limit part way, or a refusal before the body was all
    // sent: drop the rest so the answer arrives and the connection can take the next request
    if (!req.complete) discard(req);
    return sendError(res, outcome.error, false);
  }
  if (outcome.type === 'response') {
    res.writeHead(outcome.head.status, span === undefined ? outcome.head.headers as string[] : answerHeaders(outcome.head.headers, span));
    res.end(outcome.body ?? undefined);
    return;
  }
  const { reader } = outcome;
  res.writeHead(outcome.head.status, span === undefined ? outcome.head.headers as string[] : answerHeaders(outcome.head.headers, span));
  // The head goes out now, not with the first chunk: an event stream may wait long for that.
  res.flushHeaders();
  const onClose = (): void => reader.close();
  res.once('close', onClose);
  try {
    for (;;) {
      const e = await reader.next();
      if (e.type === 'data') {
        if (!res.write(e.chunk)) await drainedOrClosed(res);
        if (res.destroyed) return;
      } else if (e.type === 'end') {
        res.end();
        return;
      } else if (e.type === 'error') {
        // Status already sent: all that is left is to cut the answer short.
        res.destroy(new Error(e.error.message));
        return;
      }
    }
  } finally {
    res.off('close', onClose);
    reader.close();
    if (!req.complete) discard(req);
  }
}

/** The caller's headers as the target app should see them. */
function forwardHeaders(req: IncomingMessage, form: 'header' | 'basic' | 'path'): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  let forwardedFor: string | undefined;
  // Headers the Connection header names are hop-by-hop too (RFC 9110 §7.6.1).
  const connection = req.headers.connection;
  // Almost every request says only `keep-alive` or `close`: no set to build for those.
  const plain = connection === undefined || /^\s*(keep-alive|close)\s*$/i.test(connection);
  const named = plain ? null : new Set(connection.toLowerCase().split(',').map((t) => t.trim()));
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(name) || CONSUMED.has(name) || named?.has(name) === true) continue;
    if (form === 'basic' && name === 'authorization') continue;
    if (name === 'x-forwarded-for') {
      forwardedFor = raw[i + 1];
      continue;
    }
    out.push(name, raw[i + 1] as string);
  }
  const client = req.socket.remoteAddress ?? '';
  const host = req.headers.host ?? '';
  out.push('x-forwarded-for', forwardedFor === undefined ? client : `${forwardedFor}, ${client}`);
  out.push('x-forwarded-host', host, 'x-forwarded-proto', 'http');
  out.push('forwarded', `for=${client.includes(':') ? `"[${client}]"` : client};host=${host};proto=http`);
  return out;
}

/**
 * Reads exactly `length` bytes. A body that came in one chunk (the usual small request) is that
 * chunk, not a copy; one in pieces is gathered into a buffer of its own.
 */
function readExactly(req: IncomingMessage, length: number): Promise<Uint8Array | null> {
  return new Promise((resolve, reject) => {
    let first: Buffer | null = null;
    let out: Uint8Array | null = null;
    let at = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (at + chunk.length > length) {
        over = true;
        return;
      }
      if (at === 0 && out === null) {
        first = chunk;
      } else {
        if (out === null) {
          out = new Uint8Array(length);
          out.set(first as Buffer, 0);
          first = null;
        }
        out.set(chunk, at);
      }
      at += chunk.length;
    });
    req.once('end', () => resolve(at === length && !over ? out ?? first : null));
    req.once('error', reject);
    req.once('aborted', () => resolve(null));
  });
}

function limit(max: number): Transform {
  let seen = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      seen += chunk.length;
      if (seen > max) done(new WeftError('WEFT_BODY_TOO_LARGE', `request body is over the limit of ${max} bytes`));
      else done(null, chunk);
    },
  });
}

function basicAuthAppId(header: string | undefined): string | undefined {
  if (header === undefined || !header.startsWith('Basic ')) return undefined;
  const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon === -1 || decoded.slice(0, colon) !== 'dapr-app-id') return undefined;
  return decoded.slice(colon + 1);
}

function decodeSegment(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

function tokenMatches(given: string | string[] | undefined, expected: string): boolean {
  if (typeof given !== 'string') return false;
  const a = Buffer.from(given);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

function noContent(req: IncomingMessage, res: ServerResponse): void {
  req.resume();
  res.writeHead(204);
  res.end();
}

function sendJson(req: IncomingMessage, res: ServerResponse, status: number, value: unknown): void {
  req.resume();
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Refuses a request before it is forwarded; `close` leaves the body unread and drops the connection. */
function reject(req: IncomingMessage, res: ServerResponse, err: WeftError, unreadBody = false): void {
  // Refused before "100 Continue": the client has not sent the body and should not; this
  // connection cannot carry another request in any case.
  if (awaitingContinue.delete(req)) return sendError(res, err, true);
  if (unreadBody) discard(req);
  else req.resume();
  sendError(res, err, false);
}

/** How much of a refused body is read and dropped, and for how long, before the connection is cut. */
const DISCARD_MAX_BYTES = 64 * 1024 * 1024;
const DISCARD_MAX_MS = 5_000;

/**
 * Reads and drops a refused request's body so the answer reaches the client: closing a
 * socket with unread data in it sends a reset, and the client may lose the answer before
 * it reads it (so the connection is kept, not closed). Past a bound in bytes or time the
 * connection is cut anyway.
 */
function discard(req: IncomingMessage): void {
  let seen = 0;
  const timer = setTimeout(() => req.socket.destroy(), DISCARD_MAX_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (seen > DISCARD_MAX_BYTES) req.socket.destroy();
  });
  req.once('end', () => clearTimeout(timer));
  req.once('close', () => clearTimeout(timer));
  // A body still piped to a streamed call is unpiped now: unpiped later (when that stream
  // closes) it would be paused again, part read, and the connection would hang. A body that
  // was piped and unpiped is paused: a 'data' listener alone would not restart it.
  req.unpipe();
  req.resume();
}

/** `close`: the request's body is left unread, so its connection cannot carry another request. */
export function sendError(res: ServerResponse, err: WeftError, close = !res.req.complete): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const body = JSON.stringify(err);
  const headers: Record<string, string | number> = { 'content-type': JSON_TYPE, 'content-length': Buffer.byteLength(body) };
  if (close) headers['connection'] = 'close';
  res.writeHead(err.httpStatus, headers);
  res.end(body);
}

/**
 * Until `res` drains or closes, whichever comes first; the other listener is removed, so a slow
 * reader of a long answer (many waits) adds no listeners.
 */
function drainedOrClosed(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
