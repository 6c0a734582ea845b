/**
 * Dapr's actor API over HTTP (`/v1.0/actors/{type}/{id}/...`), served by the HTTP listener:
 *
 * - `method/{m}` (any verb): routed to the actor's owner by the node's actor runtime. The
 *   app's answer comes back as it is, whatever its status (Dapr's behaviour). The caller's
 *   `Dapr-Reentrancy-Id` header travels with the call and makes it reenter a running turn.
 * - `timers/{name}`: POST/PUT create (body `{dueTime, period, ttl, data, callback}`), DELETE
 *   deletes, on this node's host of the type (the app calls it from inside the actor's turn, so
 *   this node owns the actor); 204 as in Dapr. Timers live in memory with the activation.
 * - `state`: POST/PUT a transaction `[{"operation": "upsert"|"delete", "request": {"key", "value",
 *   "metadata": {"ttlInSeconds"}}}]`, all-or-nothing, 204; `state/{key}`: GET, 200 with the
 *   value as stored (JSON), 204 when missing. Only for an actor active on this node (the app
 *   calls it from inside the actor's turn), fenced in the store (src/actors/storage.ts).
 * - `reminders/{name}`: POST/PUT register (body `{dueTime, period, ttl, data}`) 204, GET 200
 *   `{dueTime, period, ttl, data}` or 404, DELETE 204; kept in the store (src/actors/reminders.ts).
 * Store calls end by the request's deadline (`weft-timeout`, else the invoke timeout).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { WeftError } from '../errors.ts';
import { parseDuration } from '../duration.ts';
import { ActorError } from '../actors/errors.ts';
import type { ActorCall, ActorOutcome } from '../actors/runtime.ts';
import type { ActorResult, TimerRequest } from '../actors/types.ts';
import type { RawOperation } from '../actors/storage.ts';
import type { ReminderRequest, ReminderView } from '../actors/reminders.ts';
import { HOP_BY_HOP } from '../appchannel/http.ts';
import type { Tracer } from '../observability/tracing.ts';
import { answerHeaders, endIngress, httpIngressSpan } from '../observability/tracing-spans.ts';

export const ACTORS_PREFIX = '/v1.0/actors/';

/** What the HTTP (and gRPC) edge needs from the node's actor runtime. */
export interface ActorApi {
  invoke(call: ActorCall): Promise<ActorOutcome>;
  createTimer(type: string, id: string, name: string, spec: TimerRequest): ActorResult<void>;
  deleteTimer(type: string, id: string, name: string): void;
  getState(type: string, id: string, key: string, deadline: number): Promise<ActorResult<Uint8Array | undefined>>;
  transactState(type: string, id: string, ops: readonly RawOperation[], deadline: number): Promise<ActorResult<void>>;
  registerReminder(type: string, id: string, name: string, spec: ReminderRequest, deadline: number): Promise<ActorResult<void>>;
  getReminder(type: string, id: string, name: string, deadline: number): Promise<ActorResult<ReminderView>>;
  deleteReminder(type: string, id: string, name: string, deadline: number): Promise<ActorResult<void>>;
}

export interface ActorHttpContext {
  readonly callerAppId: string;
  readonly namespace: string;
  readonly maxBodySize: number;
  readonly invokeTimeoutMs: number;
  readonly actors?: ActorApi | undefined;
  readonly tracer?: Tracer | undefined;
}

/** Headers the API consumes or sets itself; never forwarded to the actor. */
const CONSUMED = new Set(['dapr-app-id', 'dapr-api-token', 'dapr-caller-app-id', 'dapr-caller-namespace', 'dapr-callee-app-id', 'weft-timeout', 'content-length', 'host']);

export async function handleActors(ctx: ActorHttpContext, req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
  const parts = path.slice(ACTORS_PREFIX.length).split('/');
  const seg = (i: number): string | null => {
    try {
      return decodeURIComponent(parts[i] ?? '');
    } catch {
      return null;
    }
  };
  const type = seg(0);
  const id = seg(1);
  const kind = parts[2] ?? '';
  if (type === null || id === null || type === '' || id === '' || kind === '') {
    return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', 'expected /v1.0/actors/<type>/<id>/method/<method>'));
  }
  if (ctx.actors === undefined) return refuse(req, res, new ActorError('WEFT_ACTOR_NOT_SUPPORTED', 'this node serves no actors'));
  const verb = req.method ?? 'GET';
  let timeoutMs = ctx.invokeTimeoutMs;
  const asked = req.headers['weft-timeout'];
  if (typeof asked === 'string') {
    const ms = parseDuration(asked);
    if (ms === undefined || ms <= 0) return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', `weft-timeout: "${asked}" is not a duration`));
    timeoutMs = Math.min(timeoutMs, ms);
  }
  if (kind === 'state') return handleState(ctx.actors, req, res, { type, id, key: parts.length > 3 ? seg(3) : undefined, extra: parts.length > 4, deadline: Date.now() + timeoutMs, maxBodySize: ctx.maxBodySize });
  if (kind === 'reminders') return handleReminder(ctx.actors, req, res, { type, id, name: seg(3), extra: parts.length > 4, deadline: Date.now() + timeoutMs, maxBodySize: ctx.maxBodySize });
  if (kind === 'method') {
    const method = parts.slice(3).map((p) => safeDecode(p)).join('/');
    if (method === '') return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', 'the actor method is missing'));
    const body = await readBody(req, ctx.maxBodySize);
    if (body instanceof WeftError) return refuse(req, res, body, true);
    const span = ctx.tracer?.on === true ? httpIngressSpan(ctx.tracer, req, '/v1.0/actors/{type}/{id}/method/{method}', { appId: type, method, callerAppId: ctx.callerAppId }) : undefined;
    const outcome = await ctx.actors.invoke({
      type, id, method, headers: actorHeaders(req), body: body.length === 0 ? null : body,
      deadline: Date.now() + timeoutMs, callerAppId: ctx.callerAppId, callerNamespace: ctx.namespace, trace: span,
    });
    if (span !== undefined) endIngress(span, outcome.ok ? outcome.status : 0, outcome.ok ? undefined : outcome.error);
    if (!outcome.ok) return sendWeftError(res, outcome.error);
    res.writeHead(outcome.status, span === undefined ? outcome.headers as string[] : answerHeaders(outcome.headers, span));
    res.end(outcome.body.length === 0 ? undefined : outcome.body);
    return;
  }
  if (kind === 'timers') {
    const name = seg(3);
    if (name === null || name === '' || parts.length > 4) return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', 'expected /v1.0/actors/<type>/<id>/timers/<name>'));
    if (verb === 'DELETE') {
      req.resume();
      ctx.actors.deleteTimer(type, id, name);
      return noContent(res);
    }
    if (verb !== 'POST' && verb !== 'PUT') return refuse(req, res, new WeftError('WEFT_METHOD_NOT_ALLOWED', `${verb} is not allowed on actor timers`));
    const body = await readBody(req, ctx.maxBodySize);
    if (body instanceof WeftError) return refuse(req, res, body, true);
    let spec: unknown;
    try {
      spec = body.length === 0 ? {} : JSON.parse(Buffer.from(body).toString('utf8'));
    } catch {
      return sendWeftError(res, new ActorError('WEFT_ACTOR_TIMER_CREATE', `timer ${name}: the body is not JSON`));
    }
    if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return sendWeftError(res, new ActorError('WEFT_ACTOR_TIMER_CREATE', `timer ${name}: the body is not a JSON object`));
    const r = ctx.actors.createTimer(type, id, name, spec as TimerRequest);
    if (!r.ok) return sendWeftError(res, r.error);
    return noContent(res);
  }
  return refuse(req, res, new WeftError('WEFT_ROUTE_NOT_FOUND', `no actor route ${verb} ${path}`));
}

interface StateRoute {
  readonly type: string;
  readonly id: string;
  /** undefined: the transaction route; null: a key that is not valid percent-encoding. */
  readonly key: string | null | undefined;
  readonly extra: boolean;
  readonly deadline: number;
  readonly maxBodySize: number;
}

async function handleState(actors: ActorApi, req: IncomingMessage, res: ServerResponse, r: StateRoute): Promise<void> {
  const verb = req.method ?? 'GET';
  if (r.key === null || r.key === '' || r.extra) return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', 'expected /v1.0/actors/<type>/<id>/state or .../state/<key>'));
  if (r.key !== undefined) {
    if (verb !== 'GET') return refuse(req, res, new WeftError('WEFT_METHOD_NOT_ALLOWED', `${verb} is not allowed on actor state keys (GET reads one; POST/PUT .../state writes)`));
    req.resume();
    const got = await actors.getState(r.type, r.id, r.key, r.deadline);
    if (!got.ok) return sendWeftError(res, got.error);
    if (got.value === undefined) return noContent(res);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': got.value.byteLength });
    res.end(got.value);
    return;
  }
  if (verb !== 'POST' && verb !== 'PUT') return refuse(req, res, new WeftError('WEFT_METHOD_NOT_ALLOWED', `${verb} is not allowed on actor state (POST/PUT a transaction)`));
  const body = await readBody(req, r.maxBodySize);
  if (body instanceof WeftError) return refuse(req, res, body, true);
  const ops = parseTransaction(body);
  if (ops instanceof WeftError) return sendWeftError(res, ops);
  const done = await actors.transactState(r.type, r.id, ops, r.deadline);
  if (!done.ok) return sendWeftError(res, done.error);
  noContent(res);
}

/** Dapr's HTTP transaction body; each upsert's value is kept as its JSON text. */
function parseTransaction(body: Uint8Array): RawOperation[] | WeftError {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return new WeftError('WEFT_BAD_REQUEST', 'the actor state transaction is not JSON');
  }
  if (!Array.isArray(doc)) return new WeftError('WEFT_BAD_REQUEST', 'the actor state transaction must be a JSON list of {operation, request: {key, value}}');
  const out: RawOperation[] = [];
  for (const [i, entry] of doc.entries()) {
    if (typeof entry !== 'object' || entry === null) return new WeftError('WEFT_BAD_REQUEST', `actor state transaction: operation ${i} is not an object`);
    const e = entry as Record<string, unknown>;
    const request = (typeof e['request'] === 'object' && e['request'] !== null ? e['request'] : {}) as Record<string, unknown>;
    const value = request['value'];
    out.push({ operation: e['operation'], key: request['key'], value: value === undefined ? undefined : encoder.encode(JSON.stringify(value)), metadata: request['metadata'] });
  }
  return out;
}

async function handleReminder(actors: ActorApi, req: IncomingMessage, res: ServerResponse, r: { type: string; id: string; name: string | null; extra: boolean; deadline: number; maxBodySize: number }): Promise<void> {
  const verb = req.method ?? 'GET';
  const name = r.name;
  if (name === null || name === '' || r.extra) return refuse(req, res, new WeftError('WEFT_BAD_REQUEST', 'expected /v1.0/actors/<type>/<id>/reminders/<name>'));
  if (verb === 'GET' || verb === 'DELETE') {
    req.resume();
    if (verb === 'DELETE') {
      const done = await actors.deleteReminder(r.type, r.id, name, r.deadline);
      return done.ok ? noContent(res) : sendWeftError(res, done.error);
    }
    const got = await actors.getReminder(r.type, r.id, name, r.deadline);
    if (!got.ok) return sendWeftError(res, got.error);
    const text = JSON.stringify(got.value);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
    return;
  }
  if (verb !== 'POST' && verb !== 'PUT') return refuse(req, res, new WeftError('WEFT_METHOD_NOT_ALLOWED', `${verb} is not allowed on actor reminders`));
  const body = await readBody(req, r.maxBodySize);
  if (body instanceof WeftError) return refuse(req, res, body, true);
  let spec: unknown;
  try {
    spec = body.length === 0 ? {} : JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    return sendWeftError(res, new WeftError('WEFT_BAD_REQUEST', `actor ${r.type}/${r.id} reminder ${name}: the body is not JSON`));
  }
  if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) return sendWeftError(res, new WeftError('WEFT_BAD_REQUEST', `actor ${r.type}/${r.id} reminder ${name}: the body is not a JSON object`));
  const done = await actors.registerReminder(r.type, r.id, name, spec as ReminderRequest, r.deadline);
  if (!done.ok) return sendWeftError(res, done.error);
  noContent(res);
}

const encoder = new TextEncoder();

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** The caller's headers for the actor (lower-case names), without hop-by-hop and weft's own. */
function actorHeaders(req: IncomingMessage): string[] {
  const raw = req.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (HOP_BY_HOP.has(name) || CONSUMED.has(name)) continue;
    out.push(name, raw[i + 1] as string);
  }
  return out;
}

function readBody(req: IncomingMessage, max: number): Promise<Uint8Array | WeftError> {
  const declared = req.headers['content-length'] === undefined ? -1 : Number(req.headers['content-length']);
  if (declared > max) return Promise.resolve(new WeftError('WEFT_BODY_TOO_LARGE', `request body of ${declared} bytes is over the limit of ${max} bytes`));
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let over = false;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > max) over = true;
      else chunks.push(c);
    });
    req.once('end', () => resolve(over ? new WeftError('WEFT_BODY_TOO_LARGE', `request body is over the limit of ${max} bytes`) : Buffer.concat(chunks, total)));
    req.once('error', (err) => resolve(WeftError.from(err)));
  });
}

function noContent(res: ServerResponse): void {
  res.writeHead(204);
  res.end();
}

function refuse(req: IncomingMessage, res: ServerResponse, err: WeftError, close = false): void {
  if (!close) req.resume();
  sendWeftError(res, err);
}

/** Dapr's error JSON; an actor's own non-2xx answer never gets here (it passes through as an answer). */
export function sendWeftError(res: ServerResponse, err: WeftError): void {
  if (res.headersSent) {
    res.destroy(err);
    return;
  }
  const body = JSON.stringify(err);
  const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) };
  if (!res.req.complete) headers['connection'] = 'close';
  res.writeHead(err.httpStatus, headers);
  res.end(body);
}
