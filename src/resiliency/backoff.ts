/**
 * Retry policies: how long to wait before the next attempt, and whether a failed attempt may be
 * tried again at all. Pure and synchronous: the caller owns the loop, the clock and the timers.
 *
 * Contract of `attempt` in this module: the number of attempts already made (1 after the first
 * try failed), which is also the number of the retry about to be taken.
 */

/**
 * How the delay grows and is randomized.
 * - `none`: Dapr's `constant` policy, exactly `durationMs` every time.
 * - `dapr`: Dapr's `exponential` policy: interval = initial × multiplier^(n-1), capped at
 *   maxInterval, then randomized by ±randomizationFactor (and capped again).
 * - `full`: "full jitter": uniform in [0, min(maxInterval, initial × multiplier^(n-1))].
 * - `decorrelated`: uniform in [initial, previous × 3], capped at maxInterval (needs the previous delay).
 */
export type Jitter = 'none' | 'dapr' | 'full' | 'decorrelated';

/** The status codes a `matching` block lists, as O(1) lookups. */
export interface StatusMatch {
  /** Index = HTTP status (100-599); 1 = retry. */
  readonly http: Uint8Array;
  /** Bit n set = retry gRPC status n (0-16). */
  readonly grpc: number;
  /** The text as written, for messages and docs. */
  readonly httpText: string;
  readonly grpcText: string;
}

export interface RetryPolicy {
  /** The name in the Resiliency document, or a built-in name. */
  readonly name: string;
  readonly policy: 'constant' | 'exponential';
  readonly jitter: Jitter;
  /** Delay of the `constant` policy. */
  readonly durationMs: number;
  /** First interval of the exponential policies. */
  readonly initialIntervalMs: number;
  readonly multiplier: number;
  readonly randomizationFactor: number;
  readonly maxIntervalMs: number;
  /** -1 = retry forever (bounded only by the call's deadline); 0 = never retry. */
  readonly maxRetries: number;
  /**
   * Undefined: only failures that never reached the app are retried. Set: the listed HTTP and
   * gRPC statuses are retried too (the app may have run; the user said that is fine).
   */
  readonly matching: StatusMatch | undefined;
}

/** Dapr's exponential constants (Dapr fixes these; only maxInterval is configurable). */
export const DAPR_EXPONENTIAL = { initialIntervalMs: 500, multiplier: 1.5, randomizationFactor: 0.5 } as const;

/** What one failed attempt looked like, as the worker classified it. */
export interface Failure {
  /**
   * `transport`: no HTTP/gRPC answer (connect refused, reset, TLS, node-to-node Unavailable...).
   * `http` / `grpc`: the target app answered with this status.
   * `circuit-open`: weft refused locally because the target's circuit breaker is open or full.
   */
  readonly kind: 'transport' | 'http' | 'grpc' | 'circuit-open';
  /** HTTP status, gRPC status code, or for transport failures the gRPC code of the hop (e.g. 14). */
  readonly status: number;
  /** The request surely never reached the app (nothing was sent to it): safe to send again. */
  readonly neverReachedApp: boolean;
  /** The body can be sent again (buffered, or not yet streamed); a consumed stream cannot. */
  readonly bodyReplayable: boolean;
}

/**
 * The delay before retry number `attempt` (1-based), in ms. `random` returns [0, 1);
 * `previousMs` is the delay returned last time (only `decorrelated` uses it).
 */
export function nextDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random, previousMs = 0): number {
  const max = policy.maxIntervalMs;
  switch (policy.jitter) {
    case 'none':
      return policy.policy === 'constant' ? policy.durationMs : Math.min(max, grow(policy, attempt));
    case 'dapr': {
      const interval = Math.min(max, grow(policy, attempt));
      const delta = policy.randomizationFactor * interval;
      // uniform in [interval - delta, interval + delta], then Dapr's documented cap at maxInterval
      return Math.min(max, interval - delta + random() * 2 * delta);
    }
    case 'full':
      return random() * Math.min(max, grow(policy, attempt));
    case 'decorrelated': {
      const base = policy.initialIntervalMs;
      const upper = Math.max(base, (previousMs > 0 ? previousMs : base) * 3);
      return Math.min(max, base + random() * (upper - base));
    }
  }
}

function grow(policy: RetryPolicy, attempt: number): number {
  // attempt is small in practice; Math.pow keeps this O(1) with no loop
  return policy.initialIntervalMs * Math.pow(policy.multiplier, Math.max(0, attempt - 1));
}

/**
 * May the call be tried again after `attempt` attempts failed, the last one with `failure`?
 * Never when the body cannot be replayed; never past maxRetries; never after a local
 * circuit-breaker refusal (Dapr treats those as permanent). Otherwise: yes when the request
 * never reached the app, and for answers from the app only when `matching` lists the status.
 * Transport failures after the request was sent are never retried: the app may have run.
 */
export function shouldRetry(policy: RetryPolicy, attempt: number, failure: Failure): boolean {
  if (!failure.bodyReplayable || failure.kind === 'circuit-open') return false;
  if (policy.maxRetries >= 0 && attempt > policy.maxRetries) return false;
  if (failure.neverReachedApp) return true;
  const m = policy.matching;
  if (m === undefined) return false;
  if (failure.kind === 'http') return failure.status >= 100 && failure.status <= 599 && m.http[failure.status] === 1;
  if (failure.kind === 'grpc') return failure.status >= 0 && failure.status <= 16 && (m.grpc & (1 << failure.status)) !== 0;
  return false;
}

/**
 * Parses Dapr's `matching.httpStatusCodes` / `gRPCStatusCodes` text: comma-separated codes or
 * `start-end` ranges (`"429,500-504"`), empty items ignored, every code within [min, max] and
 * start <= end. Returns the codes as a list of [start, end] pairs, or a problem sentence.
 */
export function parseCodeRanges(text: string, min: number, max: number): Array<[number, number]> | string {
  const ranges: Array<[number, number]> = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const parts = item.split('-');
    if (parts.length > 2) return `"${item}" has more than one "-"`;
    const start = parseCode(parts[0] ?? '');
    const end = parts.length === 2 ? parseCode(parts[1] ?? '') : start;
    if (start === undefined || end === undefined) return `"${item}" is not a code or a range of codes (e.g. 429 or 500-504)`;
    if (start < min || start > max || end < min || end > max) return `"${item}" is outside ${min}-${max}`;
    if (end < start) return `"${item}" starts after it ends`;
    ranges.push([start, end]);
  }
  return ranges;
}

function parseCode(text: string): number | undefined {
  const t = text.trim();
  return /^\d{1,3}$/.test(t) ? Number(t) : undefined;
}

export function statusMatch(httpRanges: ReadonlyArray<[number, number]>, grpcRanges: ReadonlyArray<[number, number]>, httpText: string, grpcText: string): StatusMatch {
  const http = new Uint8Array(600);
  for (const [a, b] of httpRanges) http.fill(1, a, b + 1);
  let grpc = 0;
  for (const [a, b] of grpcRanges) for (let c = a; c <= b; c++) grpc |= 1 << c;
  return Object.freeze({ http, grpc, httpText, grpcText });
}
