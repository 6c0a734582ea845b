/**
 * The load generator's connection to its target: an undici Pool (N connections,
 * pipelining 1) with one preallocated body, dispatching with a bare handler so that a
 * request allocates little beyond its handler; and the tally of failures by kind.
 */
import { Pool } from 'undici';
import type { Dispatcher } from 'undici';

export interface TargetOptions {
  /** Full URL of the request: origin, path and query. */
  url: string;
  method?: string;
  /** Request body size in bytes (0: no body). */
  bodySize?: number;
  /** Connections in the pool (pipelining is 1). */
  connections?: number;
  /** Per-request headers and body timeout, ms. */
  timeoutMs?: number;
  headers?: Record<string, string>;
}

export interface ErrorCounts {
  total: number;
  /** Responses with a status outside 2xx, by status. */
  status: Record<string, number>;
  /** Refused, reset or closed connections. */
  connection: number;
  /** No complete answer within the timeout. */
  timeout: number;
  /** Not sent: the backlog limit was reached (the target had stalled), or the run hit its time limit. */
  dropped: number;
  other: number;
  /** Error codes seen (undici / system), for diagnosis. */
  codes: Record<string, number>;
}

/** A connection pool to one URL with a reusable body: what every run sends through. */
export class Target {
  readonly url: URL;
  readonly connections: number;
  readonly timeoutMs: number;
  readonly pool: Pool;
  readonly #request: Dispatcher.DispatchOptions;

  constructor(options: TargetOptions) {
    this.url = new URL(options.url);
    this.connections = options.connections ?? 16;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const bodySize = options.bodySize ?? 1024;
    const method = (options.method ?? 'POST').toUpperCase();
    this.pool = new Pool(this.url.origin, {
      connections: this.connections,
      pipelining: 1,
      headersTimeout: this.timeoutMs,
      bodyTimeout: this.timeoutMs,
      connectTimeout: this.timeoutMs,
      keepAliveTimeout: 60_000,
      keepAliveMaxTimeout: 600_000,
    });
    const headers: Record<string, string> = { ...options.headers };
    let body: Buffer | null = null;
    if (bodySize > 0) {
      // One buffer, sent by every request: the generator allocates nothing per body.
      body = Buffer.alloc(bodySize, 'x');
      headers['content-type'] ??= 'application/octet-stream';
    }
    this.#request = { method: method as Dispatcher.HttpMethod, path: this.url.pathname + this.url.search, headers, body };
  }

  /** Sends one request; `done` gets the status (0 on error) and the error if any. */
  send(done: (status: number, err: Error | null) => void): void {
    let status = 0;
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart() {},
      onResponseStart(_controller, statusCode) {
        status = statusCode;
      },
      onResponseData() {},
      onResponseEnd() {
        done(status, null);
      },
      onResponseError(_controller, err) {
        done(0, err);
      },
    };
    this.pool.dispatch(this.#request, handler);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

/** Counts errors by kind; shared by the three modes. */
export class ErrorTally {
  readonly counts: ErrorCounts = { total: 0, status: {}, connection: 0, timeout: 0, dropped: 0, other: 0, codes: {} };

  status(code: number): void {
    this.counts.total++;
    const key = String(code);
    this.counts.status[key] = (this.counts.status[key] ?? 0) + 1;
  }

  error(err: Error): void {
    this.counts.total++;
    const code = (err as { code?: unknown }).code;
    const name = typeof code === 'string' ? code : err.name;
    this.counts.codes[name] = (this.counts.codes[name] ?? 0) + 1;
    if (TIMEOUT_CODES.has(name)) this.counts.timeout++;
    else if (CONNECTION_CODES.has(name)) this.counts.connection++;
    else this.counts.other++;
  }

  add(kind: 'timeout' | 'dropped', n: number): void {
    this.counts.total += n;
    this.counts[kind] += n;
  }
}

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT']);
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ENOTCONN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);
