/**
 * The load generator's connection to its target: an undici Pool (N connections,
 * pipelining 1) with one preallocated body, dispatching with a bare handler so that a
 * request allocates little beyond its handler; and the tally of failures by kind.
 *
 * A URL may name many targets at once: `{id}` in its path or query is replaced per request
 * by a counter modulo `ids` (0, 1, ..., ids-1, 0, ...), so that actor calls spread over that
 * many actor ids. The paths are made once, when the target is; a request only picks the next.
 */
import { randomBytes } from 'node:crypto';
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
  /** How many values `{id}` in the URL takes (0 .. ids-1, in turn). Default 1000; ignored without `{id}`. */
  ids?: number;
}

/** What the run loops drive: anything that sends one request and reports how it ended. */
export interface LoadTarget {
  /** Connections (open loop: the most requests in flight per connection is the target's own affair). */
  readonly connections: number;
  readonly timeoutMs: number;
  /** Sends one request; `done` gets a status (2xx: success; 0 with an error) and the error if any. */
  send(done: (status: number, err: Error | null) => void): void;
  close(): Promise<void>;
}

/** The placeholder in a URL template that takes a new value per request. */
export const ID_PLACEHOLDER = '{id}';
export const DEFAULT_IDS = 1000;

/**
 * A URL split into its origin and its path template (path and query). WHATWG URL parsing
 * escapes `{` and `}` in the path; the placeholder is put back as written.
 */
export function splitTemplate(url: string): { url: URL; origin: string; path: string } {
  const parsed = new URL(url);
  const path = (parsed.pathname + parsed.search).replaceAll('%7Bid%7D', ID_PLACEHOLDER);
  return { url: parsed, origin: parsed.origin, path };
}

/**
 * The values a template takes, in the order requests use them: `{id}` replaced by 0 .. ids-1
 * (every occurrence), or the template alone when it has no placeholder.
 */
export function expandIds(template: string, ids: number = DEFAULT_IDS): string[] {
  if (!template.includes(ID_PLACEHOLDER)) return [template];
  if (!Number.isInteger(ids) || ids < 1) throw new RangeError(`ids must be a positive integer (got ${ids})`);
  const parts = template.split(ID_PLACEHOLDER);
  const out = new Array<string>(ids);
  for (let i = 0; i < ids; i++) out[i] = parts.join(String(i));
  return out;
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

/** A connection pool to one URL (or a template of many) with a reusable body: what every run sends through. */
export class Target implements LoadTarget {
  readonly url: URL;
  readonly connections: number;
  readonly timeoutMs: number;
  readonly pool: Pool;
  /** One prepared request per path, used in turn. */
  readonly #requests: Dispatcher.DispatchOptions[];
  #next = 0;
  /**
   * null (default): requests carry no `traceparent` of the generator's own. true / false: every
   * request carries a fresh W3C `traceparent` (new random trace and span ids) whose flags say
   * sampled (`-01`) or not (`-00`); a parent-based sampler follows it. May change between requests.
   */
  sampled: boolean | null = null;
  readonly #ids = new TraceIds();

  constructor(options: TargetOptions) {
    const template = splitTemplate(options.url);
    this.url = template.url;
    this.connections = options.connections ?? 16;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    const bodySize = options.bodySize ?? 1024;
    const method = (options.method ?? 'POST').toUpperCase();
    this.pool = new Pool(template.origin, {
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
    this.#requests = expandIds(template.path, options.ids ?? DEFAULT_IDS).map((path) => ({ method: method as Dispatcher.HttpMethod, path, headers, body }));
  }

  /** The paths requests go to, in turn (one unless the URL has `{id}`). */
  get paths(): string[] {
    return this.#requests.map((r) => r.path);
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
    const request = this.#requests[this.#next]!;
    if (++this.#next === this.#requests.length) this.#next = 0;
    if (this.sampled === null) this.pool.dispatch(request, handler);
    else this.pool.dispatch({ ...request, headers: { ...(request.headers as Record<string, string>), traceparent: this.#ids.traceparent(this.sampled) } }, handler);
  }

  async close(): Promise<void> {
    await this.pool.destroy();
  }
}

/**
 * Fresh W3C traceparents: version 00, a random 16-byte trace id and 8-byte span id, the sampled
 * flag as asked. The ids are slices of one random hex string, refilled every 85 traceparents, so
 * a request costs a slice, not a call into the random source.
 */
export class TraceIds {
  #hex = '';
  #at = 0;

  traceparent(sampled: boolean): string {
    // 48 hex digits per traceparent: 32 for the trace id, 16 for the span id
    if (this.#at + 48 > this.#hex.length) {
      this.#hex = randomBytes(2040).toString('hex');
      this.#at = 0;
    }
    const at = this.#at;
    this.#at += 48;
    return `00-${this.#hex.slice(at, at + 32)}-${this.#hex.slice(at + 32, at + 48)}-${sampled ? '01' : '00'}`;
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

const TIMEOUT_CODES = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT', 'ETIMEDOUT', 'GRPC_DEADLINE_EXCEEDED']);
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
