/**
 * Small composable steps around one attempt of a call, in the spirit of undici's interceptors:
 * each step is `(next) => attempt`. The worker that owns the gRPC channels builds one attempt
 * function (send to this instance, classify the answer) and wraps it:
 *
 *     const attempt = compose(withTimeout(policy.timeoutMs), withBreaker(breakerOf), withOutlier(detector))(send);
 *     const result = await runWithRetries(attempt, { policy: policy.retry, budget, pick, signal, deadline, ... });
 *
 * Nothing here knows grpc-js: an instance is any value, an attempt is
 * `(instance, attemptNo, signal) => Promise<AttemptResult>` and the result says how it went.
 * Results, not exceptions: an attempt should resolve (also on abort) with its classification;
 * a rejected promise is treated as a transport failure that may have reached the app.
 */
import { GrpcStatus, WeftError } from '../errors.ts';
import { nextDelay, shouldRetry } from './backoff.ts';
import type { Failure, RetryPolicy } from './backoff.ts';
import { REFUSED_OPEN } from './breaker.ts';
import type { CircuitBreaker } from './breaker.ts';
import type { RetryBudget } from './budget.ts';
import type { OutlierDetector } from './outlier.ts';

export interface AttemptResult<T> {
  /** The answer to hand back if this is the last attempt (it may be an error answer). */
  readonly value: T | undefined;
  /**
   * Undefined when the call succeeded. Set for every answer that is not a success (non-2xx HTTP,
   * non-OK gRPC) and for transport failures; retries, breakers and ejection each decide from it.
   */
  readonly failure: Failure | undefined;
  /** A failure weft made itself (circuit open, no instance, deadline), for the edge to report. */
  readonly error?: WeftError | undefined;
}

export type Attempt<I, T> = (instance: I, attemptNo: number, signal: AbortSignal) => Promise<AttemptResult<T>>;
export type Step<I, T> = (next: Attempt<I, T>) => Attempt<I, T>;

/** Steps apply outside-in: `compose(a, b)(send)` runs a, then b, then send. */
export function compose<I, T>(...steps: ReadonlyArray<Step<I, T>>): Step<I, T> {
  return (last) => steps.reduceRight<Attempt<I, T>>((next, step) => step(next), last);
}

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
};

/**
 * Dapr's `timeout` policy: aborts one attempt after `timeoutMs` (each attempt gets its own).
 * The abort reason is WEFT_DEADLINE_EXCEEDED; the attempt still classifies its own result.
 */
export function withTimeout<I, T>(timeoutMs: number | undefined, timers: Timers = realTimers): Step<I, T> {
  return (next) => {
    if (timeoutMs === undefined || timeoutMs <= 0) return next;
    return async (instance, attemptNo, signal) => {
      const controller = new AbortController();
      const onAbort = (): void => controller.abort(signal.reason);
      if (signal.aborted) controller.abort(signal.reason);
      else signal.addEventListener('abort', onAbort, { once: true });
      const timer = timers.setTimeout(() => controller.abort(new WeftError('WEFT_DEADLINE_EXCEEDED', `attempt timed out after ${timeoutMs} ms`)), timeoutMs);
      try {
        return await next(instance, attemptNo, controller.signal);
      } finally {
        timers.clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
      }
    };
  };
}

const CLIENT_GRPC_CODES = (1 << GrpcStatus.OK) | (1 << GrpcStatus.CANCELLED) | (1 << GrpcStatus.INVALID_ARGUMENT) |
  (1 << GrpcStatus.NOT_FOUND) | (1 << GrpcStatus.ALREADY_EXISTS) | (1 << GrpcStatus.PERMISSION_DENIED) |
  (1 << GrpcStatus.FAILED_PRECONDITION) | (1 << GrpcStatus.ABORTED) | (1 << GrpcStatus.OUT_OF_RANGE) |
  (1 << GrpcStatus.UNIMPLEMENTED) | (1 << GrpcStatus.UNAUTHENTICATED);

/**
 * Does this failure speak against the target's health (for breakers and ejection)? Transport
 * failures, HTTP 5xx, and gRPC statuses that are not the caller's fault (UNKNOWN,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, UNAVAILABLE, DATA_LOSS) do; 4xx answers and
 * local refusals do not.
 */
export function isHealthFailure(failure: Failure | undefined): boolean {
  if (failure === undefined) return false;
  switch (failure.kind) {
    case 'transport': return true;
    case 'http': return failure.status >= 500;
    case 'grpc': return failure.status < 0 || failure.status > 16 || (CLIENT_GRPC_CODES & (1 << failure.status)) === 0;
    case 'circuit-open': return false;
  }
}

const CIRCUIT_OPEN: Failure = Object.freeze({ kind: 'circuit-open', status: GrpcStatus.UNAVAILABLE, neverReachedApp: true, bodyReplayable: true });

/**
 * Puts a circuit breaker around each attempt. `breakerOf` returns the breaker for the instance
 * (e.g. `registry.get(appBreakerKey(app, inst.nodeId), policy.breaker)`), or undefined for none.
 * For an actor scope of `both`, compose two of these steps (type and id): both must admit.
 */
export function withBreaker<I, T>(breakerOf: (instance: I) => CircuitBreaker | undefined, isFailure: (f: Failure | undefined) => boolean = isHealthFailure): Step<I, T> {
  return (next) => async (instance, attemptNo, signal) => {
    const breaker = breakerOf(instance);
    if (breaker === undefined) return next(instance, attemptNo, signal);
    const permit = breaker.tryAcquire();
    if (permit < 0) {
      const why = permit === REFUSED_OPEN ? 'open' : 'half-open and at its request limit';
      return { value: undefined, failure: CIRCUIT_OPEN, error: new WeftError('WEFT_CIRCUIT_OPEN', `circuit breaker ${breaker.key} is ${why}`) };
    }
    let result: AttemptResult<T> | undefined;
    try {
      result = await next(instance, attemptNo, signal);
      return result;
    } finally {
      breaker.onResult(permit, result !== undefined && !isFailure(result.failure));
    }
  };
}

/** Feeds each attempt's outcome to the app's outlier detector (instances carry a nodeId). */
export function withOutlier<I extends { readonly nodeId: string }, T>(detector: OutlierDetector, isFailure: (f: Failure | undefined) => boolean = isHealthFailure): Step<I, T> {
  return (next) => async (instance, attemptNo, signal) => {
    let result: AttemptResult<T> | undefined;
    try {
      result = await next(instance, attemptNo, signal);
      return result;
    } finally {
      if (result === undefined || isFailure(result.failure)) detector.recordFailure(instance.nodeId);
      else if (result.failure?.kind !== 'circuit-open') detector.recordSuccess(instance.nodeId);
    }
  };
}

export interface RetryOptions<I> {
  readonly policy: RetryPolicy;
  /** Shared by all calls to the target; undefined = no budget. */
  readonly budget?: RetryBudget | undefined;
  /**
   * The instance for attempt `attemptNo` (1-based); `previous` is the one that just failed, so
   * a retry can go elsewhere. Undefined = no instance to try.
   */
  pick(attemptNo: number, previous: I | undefined): I | undefined;
  /** Absolute deadline on `now`'s clock: no retry is started that would sleep past it. */
  readonly deadline?: number | undefined;
  readonly signal: AbortSignal;
  readonly now: () => number;
  readonly random?: () => number;
  /** Waits `ms`, resolving early (not rejecting) when `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** Called before each retry: for metrics and logs. */
  readonly onRetry?: ((attemptNo: number, delayMs: number, failure: Failure) => void) | undefined;
}

/** Why the loop stopped retrying, next to the last result (for metrics). */
export type StopReason = 'success' | 'not-retryable' | 'budget' | 'deadline' | 'aborted' | 'no-instance';

function noInstance<T>(): AttemptResult<T> {
  return {
    value: undefined,
    failure: { kind: 'transport', status: GrpcStatus.UNAVAILABLE, neverReachedApp: true, bodyReplayable: true },
    error: new WeftError('WEFT_APP_NOT_FOUND'),
  };
}

const MAYBE_REACHED: Failure = Object.freeze({ kind: 'transport', status: GrpcStatus.UNKNOWN, neverReachedApp: false, bodyReplayable: false });

/**
 * Runs attempts until one succeeds or retrying stops: the policy says no (see shouldRetry), the
 * budget is spent, the next delay would pass the deadline, the caller aborted, or no instance
 * is left. Returns the last attempt's result, with why it stopped.
 */
export async function runWithRetries<I, T>(attempt: Attempt<I, T>, options: RetryOptions<I>): Promise<AttemptResult<T> & { readonly attempts: number; readonly stop: StopReason }> {
  const { policy, budget, signal, now } = options;
  const random = options.random ?? Math.random;
  budget?.recordRequest();
  let previous: I | undefined;
  let delay = 0;
  for (let attemptNo = 1; ; attemptNo++) {
    const instance = options.pick(attemptNo, previous);
    if (instance === undefined) return { ...noInstance<T>(), attempts: attemptNo - 1, stop: 'no-instance' };
    let result: AttemptResult<T>;
    try {
      result = await attempt(instance, attemptNo, signal);
    } catch (cause) {
      result = { value: undefined, failure: MAYBE_REACHED, error: WeftError.from(cause) };
    }
    const failure = result.failure;
    if (failure === undefined) return { ...result, attempts: attemptNo, stop: 'success' };
    if (signal.aborted) return { ...result, attempts: attemptNo, stop: 'aborted' };
    if (!shouldRetry(policy, attemptNo, failure)) return { ...result, attempts: attemptNo, stop: 'not-retryable' };
    delay = nextDelay(policy, attemptNo, random, delay);
    if (options.deadline !== undefined && now() + delay >= options.deadline) return { ...result, attempts: attemptNo, stop: 'deadline' };
    if (budget !== undefined && !budget.tryAcquireRetry()) return { ...result, attempts: attemptNo, stop: 'budget' };
    options.onRetry?.(attemptNo, delay, failure);
    if (delay > 0) await options.sleep(delay, signal);
    if (signal.aborted) return { ...result, attempts: attemptNo, stop: 'aborted' };
    previous = instance;
  }
}
