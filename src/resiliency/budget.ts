/**
 * A retry budget: retries may add at most `ratio` of the traffic, plus a small floor so that a
 * quiet target can still be retried. Over a sliding window (default 10 s in 1 s buckets) a retry
 * is granted while
 *
 *     retries + 1 <= ratio × requests + minPerSecond × windowSeconds
 *
 * (default 20% + 10/s, the numbers Finagle and Linkerd use). When a target goes down, its
 * callers' retries stop at the budget instead of multiplying the load on what is left.
 *
 * Only first attempts count as requests (`recordRequest`); granted retries count as retries.
 * Every call is O(1): the window is a ring of buckets and two running sums; moving time forward
 * clears at most the number of buckets in the window.
 */

export interface RetryBudgetOptions {
  /** Fraction of requests that may be retried (0.2 = 20%). */
  readonly ratio?: number;
  /** Retries per second always allowed, whatever the traffic. */
  readonly minPerSecond?: number;
  readonly windowMs?: number;
  readonly bucketMs?: number;
  readonly now: () => number;
}

export const DEFAULT_BUDGET = { ratio: 0.2, minPerSecond: 10, windowMs: 10_000, bucketMs: 1000 } as const;

export class RetryBudget {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
  readonly bucketMs: number;
  /** Retries granted / denied since creation (for metrics). */
  granted = 0;
  denied = 0;
  readonly #now: () => number;
  readonly #requests: Float64Array;
  readonly #retries: Float64Array;
  readonly #floor: number;
  #requestSum = 0;
  #retrySum = 0;
  /** Absolute index (time / bucketMs) of the newest bucket. */
  #head: number;

  constructor(options: RetryBudgetOptions) {
    this.ratio = options.ratio ?? DEFAULT_BUDGET.ratio;
    this.minPerSecond = options.minPerSecond ?? DEFAULT_BUDGET.minPerSecond;
    this.windowMs = options.windowMs ?? DEFAULT_BUDGET.windowMs;
    this.bucketMs = options.bucketMs ?? DEFAULT_BUDGET.bucketMs;
    if (!(this.ratio >= 0)) throw new RangeError('ratio must be >= 0');
    if (!(this.minPerSecond >= 0)) throw new RangeError('minPerSecond must be >= 0');
    if (!(this.bucketMs > 0) || !(this.windowMs >= this.bucketMs)) throw new RangeError('windowMs must be >= bucketMs > 0');
    const n = Math.ceil(this.windowMs / this.bucketMs);
    this.#requests = new Float64Array(n);
    this.#retries = new Float64Array(n);
    this.#floor = this.minPerSecond * (this.windowMs / 1000);
    this.#now = options.now;
    this.#head = Math.floor(this.#now() / this.bucketMs);
  }

  /** Counts one first attempt. */
  recordRequest(): void {
    const i = this.#advance();
    this.#requests[i]! += 1;
    this.#requestSum += 1;
  }

  /** Takes one retry from the budget if there is room; counts granted or denied. */
  tryAcquireRetry(): boolean {
    const i = this.#advance();
    if (this.#retrySum + 1 > this.ratio * this.#requestSum + this.#floor) {
      this.denied++;
      return false;
    }
    this.#retries[i]! += 1;
    this.#retrySum += 1;
    this.granted++;
    return true;
  }

  /** Requests and retries inside the current window. */
  get window(): { requests: number; retries: number } {
    this.#advance();
    return { requests: this.#requestSum, retries: this.#retrySum };
  }

  /** Moves the ring to the current time and returns the slot of the current bucket. */
  #advance(): number {
    const n = this.#requests.length;
    const idx = Math.floor(this.#now() / this.bucketMs);
    const gap = idx - this.#head;
    if (gap > 0) {
      if (gap >= n) {
        this.#requests.fill(0);
        this.#retries.fill(0);
        this.#requestSum = 0;
        this.#retrySum = 0;
      } else {
        for (let k = 1; k <= gap; k++) {
          const slot = (this.#head + k) % n;
          this.#requestSum -= this.#requests[slot]!;
          this.#retrySum -= this.#retries[slot]!;
          this.#requests[slot] = 0;
          this.#retries[slot] = 0;
        }
      }
      this.#head = idx;
    }
    // a clock that steps back keeps counting in the newest bucket
    return ((this.#head % n) + n) % n;
  }
}
