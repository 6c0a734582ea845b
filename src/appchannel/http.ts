/**
 * The HTTP app channel (app protocols http, https and h2c; see channel.ts): an undici Pool per
 * app over HTTP/1.1 (https: over TLS, the app's certificate not verified, as in Dapr), or one
 * HTTP/2 cleartext connection multiplexing the calls (h2c).
 *
 * Failures come back as WeftErrors: a refused connection is WEFT_APP_REFUSED (nothing was
 * sent: the caller may try another instance), an app that failed its health checks
 * WEFT_APP_UNHEALTHY (not called at all), other failures to reach it WEFT_APP_UNAVAILABLE, a
 * call past its deadline WEFT_DEADLINE_EXCEEDED. The app's own statuses (4xx, 5xx) are answers,
 * not errors: they travel back to the caller unchanged.
 */
import { Readable } from 'node:stream';
import { H2CClient, Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { AppConfig } from '../config.ts';
import { WeftError } from '../errors.ts';
import type { AppHealth } from './health.ts';
import type { AppChannel, AppRequest, AppResponse } from './channel.ts';

export type { AppRequest, AppResponse } from './channel.ts';

/** Answers of a known length up to this are collected whole before the call resolves. */
const WHOLE_ANSWER_LIMIT = 256 * 1024;

/**
 * Headers that belong to one connection, never forwarded (RFC 9110 §7.6.1), plus ones undici sets
 * itself, plus `expect`: 100-continue is settled between the caller and its node (undici refuses
 * to send it, and the app would wait for a continue no one sends).
 */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer',
  'transfer-encoding', 'upgrade', 'host', 'http2-settings', 'expect',
]);

export class HttpAppChannel implements AppChannel {
  readonly app: AppConfig;
  private readonly pool: Dispatcher & { close(): Promise<void>; destroy(): Promise<void> };
  /** The app's health checks, when enabled: an unhealthy app is not called. */
  health: AppHealth | undefined;

  constructor(app: AppConfig) {
    if (app.appPort === undefined) throw new WeftError('WEFT_INTERNAL', `app ${app.appId} has no app port`);
    this.app = app;
    const host = app.appHost.includes(':') ? `[${app.appHost}]` : app.appHost;
    const common = {
      keepAliveTimeout: 30_000,
      // Deadlines are enforced through the request's AbortSignal; undici's own timers stay
      // generous so that they never fire first with a less precise error.
      headersTimeout: 0,
      bodyTimeout: 0,
    };
    if (app.appProtocol === 'h2c') {
      // One connection, its streams bounded by appMaxConnections (the app's HTTP/2 settings may lower it).
      this.pool = new H2CClient(`http://${host}:${app.appPort}`, { ...common, maxConcurrentStreams: app.appMaxConnections, pipelining: app.appMaxConnections });
    } else {
      this.pool = new Pool(`${app.appProtocol === 'https' ? 'https' : 'http'}://${host}:${app.appPort}`, {
        ...common,
        connections: app.appMaxConnections,
        pipelining: 1,
        // The app's own certificate, usually self-signed: not verified, as Dapr does not.
        ...(app.appProtocol === 'https' ? { connect: { rejectUnauthorized: false } } : {}),
      });
    }
  }

  call(req: AppRequest): Promise<AppResponse> {
    if (this.health !== undefined && !this.health.healthy) {
      return Promise.reject(new WeftError('WEFT_APP_UNHEALTHY', `app ${this.app.appId} failed its health checks (${this.health.status().lastError ?? 'unhealthy'})`, { appId: this.app.appId }));
    }
    const path = req.query === '' ? `/${req.method}` : `/${req.method}?${req.query}`;
    return new Promise((resolve, reject) => {
      const handler = new AppCall(this, req.signal, resolve, reject);
      try {
        this.pool.dispatch({ path, method: req.verb as 'GET', headers: req.headers as string[], body: req.body as Uint8Array | null }, handler);
      } catch (err) {
        handler.fail(err);
      }
    });
  }

  classify(err: unknown, signal: AbortSignal): WeftError {
    const appId = this.app.appId;
    if (signal.aborted) {
      const reason: unknown = signal.reason;
      if (reason instanceof WeftError) return reason;
      return new WeftError('WEFT_DEADLINE_EXCEEDED', `app ${appId} did not answer before the deadline`, { appId, cause: err });
    }
    const code = (err as { code?: string }).code ?? '';
    if (refused(err)) {
      return new WeftError('WEFT_APP_REFUSED', `app ${appId} at ${this.app.appHost}:${this.app.appPort} refused the connection (ECONNREFUSED)`, { appId, cause: err });
    }
    const aborted = appAborted(err, appId);
    if (aborted !== undefined) return aborted;
    if (code === 'UND_ERR_INVALID_ARG' || code === 'UND_ERR_NOT_SUPPORTED') {
      // undici would not send it (a header or path it refuses): the request's fault, not the app's.
      return new WeftError('WEFT_BAD_REQUEST', `the request cannot be sent to app ${appId}: ${(err as Error).message}`, { appId, cause: err });
    }
    if (err instanceof undiciErrors.UndiciError || code.startsWith('E')) {
      return new WeftError('WEFT_APP_UNAVAILABLE', `app ${appId} at ${this.app.appHost}:${this.app.appPort} failed: ${code || (err as Error).message}`, { appId, cause: err });
    }
    return WeftError.from(err, appId);
  }

  close(): Promise<void> {
    return this.pool.close();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

/**
 * WEFT_APP_ABORTED when `err` says the app closed its connection after the request was sent
 * (before or during its answer), else undefined. The app may have run the call, so it is not
 * retried. Also used where an answer's body is read.
 */
export function appAborted(err: unknown, appId: string | undefined): WeftError | undefined {
  const code = (err as { code?: string } | null)?.code;
  if (code !== 'UND_ERR_SOCKET' && code !== 'ECONNRESET') return undefined;
  return new WeftError('WEFT_APP_ABORTED', `app ${appId ?? ''} closed its connection before its answer was complete: ${(err as Error).message}`, { appId, cause: err });
}

/**
 * A refused connection: the request was never written. (With several addresses tried, Node
 * reports an AggregateError whose errors must all be refusals.)
 */
function refused(err: unknown): boolean {
  const e = err as { code?: unknown; errors?: unknown } | null;
  if (e === null || typeof e !== 'object') return false;
  if (Array.isArray(e.errors) && e.errors.length > 0) return e.errors.every((x) => refused(x));
  return e.code === 'ECONNREFUSED';
}

/** undici's header object to a flat name/value list (arrays such as set-cookie kept as separate entries). */
export function flattenHeaders(headers: Record<string, string | string[] | undefined>): string[] {
  const out: string[] = [];
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || HOP_BY_HOP.has(name)) continue;
    if (typeof value === 'string') out.push(name, value);
    else for (const v of value) out.push(name, v);
  }
  return out;
}

/**
 * One call to the app through undici's dispatch API, which leaves out what `request()` builds
 * per call for a general caller (a body stream, its promise machinery, a header object turned
 * back into a list). An answer of known length that fits WHOLE_ANSWER_LIMIT is collected and
 * resolves whole (`AppResponse.whole`, the body stream made only if someone asks for it);
 * any other answer resolves at its head and streams, paused while its reader is behind.
 */
class AppCall implements Dispatcher.DispatchHandler {
  private readonly channel: HttpAppChannel;
  private readonly signal: AbortSignal;
  private readonly resolve: (res: AppResponse) => void;
  private readonly reject: (err: WeftError) => void;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private headers: string[] = [];
  /** Collecting a whole answer: its chunks so far. */
  private chunks: Buffer[] | null = null;
  private size = 0;
  /** Streaming the answer: the stream its reader reads. */
  private stream: Readable | null = null;
  private settled = false;
  /** The answer came to its end (or failed): nothing left to abort. */
  private ended = false;
  private readonly onAbort = (): void => this.controller?.abort(this.signal.reason as Error);

  constructor(channel: HttpAppChannel, signal: AbortSignal, resolve: (res: AppResponse) => void, reject: (err: WeftError) => void) {
    this.channel = channel;
    this.signal = signal;
    this.resolve = resolve;
    this.reject = reject;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.signal.aborted) controller.abort(this.signal.reason as Error);
    else this.signal.addEventListener('abort', this.onAbort, { once: true });
  }

  onResponseStart(controller: Dispatcher.DispatchController, status: number, headers: Record<string, string | string[] | undefined>): void {
    this.status = status;
    this.headers = flattenHeaders(headers);
    const length = headers['content-length'];
    if (typeof length === 'string' && Number(length) <= WHOLE_ANSWER_LIMIT) {
      this.chunks = [];
      return;
    }
    this.stream = new Readable({
      read: () => controller.resume(),
      // The reader gave up on the answer (its caller went away): so does the app's request.
      destroy: (err, cb) => {
        if (!this.ended) controller.abort(err ?? new WeftError('WEFT_CANCELLED', 'the answer was abandoned', { appId: this.channel.app.appId }));
        cb(err);
      },
    });
    this.settled = true;
    this.resolve({ status, headers: this.headers, body: this.stream });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.chunks !== null) {
      this.chunks.push(chunk);
      this.size += chunk.length;
    } else if (this.stream !== null && !this.stream.push(chunk)) {
      controller.pause();
    }
  }

  onResponseEnd(): void {
    this.ended = true;
    this.signal.removeEventListener('abort', this.onAbort);
    if (this.chunks !== null) {
      const whole = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks, this.size);
      this.settled = true;
      this.resolve(wholeResponse(this.status, this.headers, whole));
    } else {
      this.stream?.push(null);
    }
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.fail(err);
  }

  fail(err: unknown): void {
    this.ended = true;
    this.signal.removeEventListener('abort', this.onAbort);
    if (!this.settled) {
      this.settled = true;
      this.reject(this.channel.classify(err, this.signal));
    } else if (this.stream !== null && !this.stream.destroyed) {
      this.stream.destroy(err as Error);
    }
  }
}

/** An answer read whole: its body stream is made only when asked for (actor callbacks read it that way). */
function wholeResponse(status: number, headers: string[], whole: Buffer): AppResponse {
  let body: Readable | undefined;
  return {
    status, headers, whole,
    get body(): Readable {
      body ??= Readable.from(whole.length === 0 ? [] : [whole]);
      return body;
    },
  };
}
