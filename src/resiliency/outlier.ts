/**
 * Outlier ejection for the instances of one app (in the spirit of Envoy's consecutive-failure
 * detection): an instance (a node serving the app) that fails `consecutiveFailures` calls in a
 * row is left out of picking for `baseEjectionMs × 2^(ejections-1)`, at most `maxEjectionMs`.
 *
 * - Never more than `maxEjectionPercent` of the app's instances are ejected at once (counted
 *   against the instances last passed to `filter`); a failure past that limit is only counted.
 * - When its time is over an instance comes back on probation: one success clears its record,
 *   one failure ejects it again, for twice as long.
 * - `filter` fails open: if every instance is ejected, it returns them all.
 *
 * One detector per app. The clock is injected; nothing runs on timers: an ejection ends when
 * `filter` or a record call sees that its time has passed. Every call is O(1) except `filter`
 * (O(instances), allocating only when something is ejected) and `retain`.
 */

export interface OutlierOptions {
  readonly consecutiveFailures?: number;
  readonly baseEjectionMs?: number;
  readonly maxEjectionMs?: number;
  readonly maxEjectionPercent?: number;
  readonly now: () => number;
  readonly onEvent?: ((event: OutlierEvent) => void) | undefined;
}

export type OutlierEvent =
  | { readonly type: 'ejected'; readonly nodeId: string; readonly ejections: number; readonly durationMs: number }
  | { readonly type: 'probation'; readonly nodeId: string }
  | { readonly type: 'recovered'; readonly nodeId: string }
  /** Would have been ejected, but maxEjectionPercent of the instances are out already. */
  | { readonly type: 'ejection-skipped'; readonly nodeId: string };

export const DEFAULT_OUTLIER = { consecutiveFailures: 5, baseEjectionMs: 5000, maxEjectionMs: 60_000, maxEjectionPercent: 50 } as const;

interface InstanceRecord {
  consecutive: number;
  ejections: number;
  /** 0 = not ejected. */
  ejectedUntil: number;
  probation: boolean;
}

export class OutlierDetector {
  readonly consecutiveFailures: number;
  readonly baseEjectionMs: number;
  readonly maxEjectionMs: number;
  readonly maxEjectionPercent: number;
  readonly #now: () => number;
  readonly #onEvent: ((event: OutlierEvent) => void) | undefined;
  readonly #records = new Map<string, InstanceRecord>();
  #ejectedCount = 0;
  #instanceCount = 0;

  constructor(options: OutlierOptions) {
    this.consecutiveFailures = options.consecutiveFailures ?? DEFAULT_OUTLIER.consecutiveFailures;
    this.baseEjectionMs = options.baseEjectionMs ?? DEFAULT_OUTLIER.baseEjectionMs;
    this.maxEjectionMs = options.maxEjectionMs ?? DEFAULT_OUTLIER.maxEjectionMs;
    this.maxEjectionPercent = options.maxEjectionPercent ?? DEFAULT_OUTLIER.maxEjectionPercent;
    if (!Number.isInteger(this.consecutiveFailures) || this.consecutiveFailures < 1) throw new RangeError('consecutiveFailures must be an integer >= 1');
    if (!(this.baseEjectionMs > 0) || !(this.maxEjectionMs >= this.baseEjectionMs)) throw new RangeError('maxEjectionMs must be >= baseEjectionMs > 0');
    if (!(this.maxEjectionPercent >= 0 && this.maxEjectionPercent <= 100)) throw new RangeError('maxEjectionPercent must be from 0 to 100');
    this.#now = options.now;
    this.#onEvent = options.onEvent;
  }

  /** Instances ejected right now. */
  get ejectedCount(): number {
    this.#expire(this.#now());
    return this.#ejectedCount;
  }

  isEjected(nodeId: string): boolean {
    const r = this.#records.get(nodeId);
    if (r === undefined || r.ejectedUntil === 0) return false;
    const now = this.#now();
    if (r.ejectedUntil <= now) {
      this.#release(nodeId, r);
      return false;
    }
    return true;
  }

  recordSuccess(nodeId: string): void {
    const r = this.#records.get(nodeId);
    if (r === undefined) return;
    if (r.ejectedUntil !== 0 && r.ejectedUntil <= this.#now()) this.#release(nodeId, r);
    if (r.ejectedUntil !== 0) return; // a late answer from before the ejection
    if (r.probation) this.#onEvent?.({ type: 'recovered', nodeId });
    this.#records.delete(nodeId);
  }

  recordFailure(nodeId: string): void {
    const now = this.#now();
    let r = this.#records.get(nodeId);
    if (r === undefined) {
      r = { consecutive: 0, ejections: 0, ejectedUntil: 0, probation: false };
      this.#records.set(nodeId, r);
    }
    if (r.ejectedUntil !== 0) {
      if (r.ejectedUntil > now) return; // already out
      this.#release(nodeId, r);
    }
    r.consecutive++;
    if (!r.probation && r.consecutive < this.consecutiveFailures) return;
    if ((this.#ejectedCount + 1) * 100 > this.maxEjectionPercent * this.#instanceCount) {
      this.#onEvent?.({ type: 'ejection-skipped', nodeId });
      return;
    }
    r.ejections++;
    const durationMs = Math.min(this.maxEjectionMs, this.baseEjectionMs * 2 ** (r.ejections - 1));
    r.ejectedUntil = now + durationMs;
    r.consecutive = 0;
    r.probation = false;
    this.#ejectedCount++;
    this.#onEvent?.({ type: 'ejected', nodeId, ejections: r.ejections, durationMs });
  }

  /**
   * The instances to pick from: `instances` without the ejected ones, or all of them when
   * none is left. Returns the same array when nothing is ejected. Also records how many
   * instances the app has, for maxEjectionPercent.
   */
  filter<T extends { readonly nodeId: string }>(instances: readonly T[]): readonly T[] {
    this.#instanceCount = instances.length;
    if (this.#ejectedCount === 0) return instances;
    this.#expire(this.#now());
    if (this.#ejectedCount === 0) return instances;
    const out: T[] = [];
    for (const inst of instances) {
      const r = this.#records.get(inst.nodeId);
      if (r === undefined || r.ejectedUntil === 0) out.push(inst);
    }
    return out.length === 0 ? instances : out;
  }

  /** Forgets instances that are gone (call when the app's instance list changes). */
  retain(nodeIds: Iterable<string>): void {
    const keep = new Set(nodeIds);
    for (const [id, r] of this.#records) {
      if (keep.has(id)) continue;
      if (r.ejectedUntil !== 0) this.#ejectedCount--;
      this.#records.delete(id);
    }
    this.#instanceCount = keep.size;
  }

  #expire(now: number): void {
    if (this.#ejectedCount === 0) return;
    for (const [id, r] of this.#records) if (r.ejectedUntil !== 0 && r.ejectedUntil <= now) this.#release(id, r);
  }

  #release(nodeId: string, r: InstanceRecord): void {
    r.ejectedUntil = 0;
    r.probation = true;
    r.consecutive = 0;
    this.#ejectedCount--;
    this.#onEvent?.({ type: 'probation', nodeId });
  }
}
