/**
 * Circuit breakers with Dapr's semantics (Dapr uses sony/gobreaker):
 *
 * - closed: every call passes. Counts are cleared every `intervalMs` (0 = never). When a call
 *   fails and `trip` evaluates true over the counts, the breaker opens.
 * - open: every call is refused until `timeoutMs` has passed, then the breaker is half-open.
 * - half-open: at most `maxRequests` calls pass. One failure opens it again; `maxRequests`
 *   consecutive successes close it.
 *
 * Every state change starts a new generation with zeroed counts; a result reported with the
 * permit of an older generation is ignored (the call started before the change).
 * The clock is injected; time moves the state only when the breaker is used or read.
 */
import type { BreakerCounts, TripExpression } from './trip.ts';

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerPolicy {
  readonly name: string;
  /** Calls allowed through while half-open (>= 1). */
  readonly maxRequests: number;
  /** Cyclic period of the closed state after which counts are cleared; 0 = never. */
  readonly intervalMs: number;
  /** Time spent open before trying half-open. */
  readonly timeoutMs: number;
  readonly trip: TripExpression;
}

export type StateChangeListener = (key: string, from: BreakerState, to: BreakerState) => void;

export interface BreakerOptions {
  readonly now: () => number;
  readonly onStateChange?: StateChangeListener | undefined;
}

/** Permit values below zero are refusals. */
export const REFUSED_OPEN = -1;
export const REFUSED_TOO_MANY = -2;

export class CircuitBreaker {
  readonly key: string;
  readonly policy: BreakerPolicy;
  readonly #now: () => number;
  readonly #onStateChange: StateChangeListener | undefined;
  #state: BreakerState = 'closed';
  #generation = 0;
  #expiry = 0;
  readonly #counts: BreakerCounts = { requests: 0, totalSuccesses: 0, totalFailures: 0, consecutiveSuccesses: 0, consecutiveFailures: 0 };

  constructor(key: string, policy: BreakerPolicy, options: BreakerOptions) {
    this.key = key;
    this.policy = policy;
    this.#now = options.now;
    this.#onStateChange = options.onStateChange;
    this.#newGeneration(this.#now());
  }

  get state(): BreakerState {
    this.#advance(this.#now());
    return this.#state;
  }

  /** A copy of the current generation's counts (for tests and inspection, not the hot path). */
  get counts(): Readonly<BreakerCounts> {
    this.#advance(this.#now());
    return { ...this.#counts };
  }

  /** Would a call be let through now? Does not count a request. */
  wouldAllow(): boolean {
    this.#advance(this.#now());
    return this.#state === 'closed' || (this.#state === 'half-open' && this.#counts.requests < this.policy.maxRequests);
  }

  /**
   * Asks to make one call. Returns a permit (>= 0) to hand back to `onResult`, or
   * REFUSED_OPEN / REFUSED_TOO_MANY.
   */
  tryAcquire(): number {
    this.#advance(this.#now());
    if (this.#state === 'open') return REFUSED_OPEN;
    if (this.#state === 'half-open' && this.#counts.requests >= this.policy.maxRequests) return REFUSED_TOO_MANY;
    this.#counts.requests++;
    return this.#generation;
  }

  /** Reports how a permitted call ended. */
  onResult(permit: number, success: boolean): void {
    const now = this.#now();
    this.#advance(now);
    if (permit < 0 || permit !== this.#generation) return;
    const c = this.#counts;
    if (success) {
      c.totalSuccesses++;
      c.consecutiveSuccesses++;
      c.consecutiveFailures = 0;
      if (this.#state === 'half-open' && c.consecutiveSuccesses >= this.policy.maxRequests) this.#setState('closed', now);
    } else {
      c.totalFailures++;
      c.consecutiveFailures++;
      c.consecutiveSuccesses = 0;
      if (this.#state === 'half-open') this.#setState('open', now);
      else if (this.#state === 'closed' && this.policy.trip.evaluate(c)) this.#setState('open', now);
    }
  }

  #advance(now: number): void {
    if (this.#state === 'closed') {
      if (this.#expiry !== 0 && this.#expiry <= now) this.#newGeneration(now);
    } else if (this.#state === 'open' && this.#expiry <= now) {
      this.#setState('half-open', now);
    }
  }

  #setState(to: BreakerState, now: number): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    this.#newGeneration(now);
    this.#onStateChange?.(this.key, from, to);
  }

  #newGeneration(now: number): void {
    this.#generation++;
    const c = this.#counts;
    c.requests = c.totalSuccesses = c.totalFailures = c.consecutiveSuccesses = c.consecutiveFailures = 0;
    if (this.#state === 'closed') this.#expiry = this.policy.intervalMs > 0 ? now + this.policy.intervalMs : 0;
    else if (this.#state === 'open') this.#expiry = now + this.policy.timeoutMs;
    else this.#expiry = 0;
  }
}

/** The breaker key for an app instance (Dapr keeps one breaker per app and instance). */
export function appBreakerKey(appId: string, instance: string): string {
  return `app/${appId}/${instance}`;
}

/**
 * The breaker keys for an actor call by `circuitBreakerScope`: `type` one breaker per actor type,
 * `id` one per actor, `both` both of them (the call needs both to let it through).
 */
export function actorBreakerKey(scope: 'type' | 'id', actorType: string, actorId: string): string {
  return scope === 'type' ? `actor/${actorType}` : `actor/${actorType}/${actorId}`;
}

/**
 * Breakers by key, at most `maxSize` of them: the least recently used is dropped first (a dropped
 * breaker starts closed when it comes back, which is what an idle target deserves anyway).
 * A breaker whose policy object changed (documents reloaded) is replaced.
 */
export class BreakerRegistry {
  readonly maxSize: number;
  readonly #breakers = new Map<string, CircuitBreaker>();
  readonly #options: BreakerOptions;

  constructor(options: BreakerOptions & { readonly maxSize?: number }) {
    this.maxSize = options.maxSize ?? 10_000;
    this.#options = { now: options.now, onStateChange: options.onStateChange };
  }

  get size(): number {
    return this.#breakers.size;
  }

  get(key: string, policy: BreakerPolicy): CircuitBreaker {
    const map = this.#breakers;
    let breaker = map.get(key);
    if (breaker !== undefined && breaker.policy === policy) {
      // move to the most recently used end; Map keeps insertion order
      map.delete(key);
      map.set(key, breaker);
      return breaker;
    }
    if (breaker !== undefined) map.delete(key);
    breaker = new CircuitBreaker(key, policy, this.#options);
    map.set(key, breaker);
    if (map.size > this.maxSize) {
      const oldest = map.keys().next();
      if (oldest.done !== true) map.delete(oldest.value);
    }
    return breaker;
  }

  /** The breaker if it exists, without creating one or touching its recency. */
  peek(key: string): CircuitBreaker | undefined {
    return this.#breakers.get(key);
  }

  delete(key: string): boolean {
    return this.#breakers.delete(key);
  }
}
