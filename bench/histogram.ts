/**
 * A log-linear histogram of non-negative integers (the benchmark records microseconds).
 *
 * Layout: values below 2^SUB_BITS each have their own bucket (exact). Above that, every
 * doubling [2^e, 2^(e+1)) is cut into 2^(SUB_BITS-1) equal buckets, so a bucket is never
 * wider than 1/128 of its lower bound (< 0.8% relative error) with SUB_BITS = 8. With the
 * default ceiling of 2^27 µs (~134 s) that is ~2.7k counters: cheap to record into
 * (a few integer operations, no allocation) and to merge.
 *
 * Percentiles use the nearest-rank definition: the value at rank ceil(p/100 * count).
 * A bucket reports its highest value, clamped to the largest value recorded, so that
 * exact buckets give exact answers and p100 is the true maximum.
 */

const SUB_BITS = 8;
const LINEAR = 1 << SUB_BITS; // 256 exact buckets: 0..255
const HALF = LINEAR >> 1; // 128 buckets per doubling above that

export interface HistogramSummary {
  count: number;
  min: number;
  max: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  /** Values recorded above the histogram's ceiling (counted in its top bucket). */
  overflow: number;
}

export class Histogram {
  readonly ceiling: number;
  #counts: Float64Array;
  #count = 0;
  #sum = 0;
  #min = Number.POSITIVE_INFINITY;
  #max = 0;
  #overflow = 0;

  /** `ceiling`: the largest value recorded exactly into its bucket; larger values are clamped. */
  constructor(ceiling = 2 ** 27 - 1) {
    if (!Number.isInteger(ceiling) || ceiling < LINEAR || ceiling >= 2 ** 31) {
      throw new RangeError(`ceiling must be an integer in [${LINEAR}, 2^31)`);
    }
    this.ceiling = ceiling;
    this.#counts = new Float64Array(indexOf(ceiling) + 1);
  }

  get count(): number {
    return this.#count;
  }

  /** Records one value (rounded to an integer; negatives count as 0). */
  record(value: number): void {
    let v = value > 0 ? Math.round(value) : 0;
    if (v > this.ceiling) {
      this.#overflow++;
      v = this.ceiling;
    }
    this.#counts[indexOf(v)]! += 1;
    this.#count++;
    this.#sum += v;
    if (v < this.#min) this.#min = v;
    if (v > this.#max) this.#max = v;
  }

  /** Adds another histogram's counts (same ceiling) into this one. */
  merge(other: Histogram): void {
    if (other.ceiling !== this.ceiling) throw new RangeError('cannot merge histograms with different ceilings');
    const theirs = other.#counts;
    for (let i = 0; i < theirs.length; i++) this.#counts[i]! += theirs[i]!;
    this.#count += other.#count;
    this.#sum += other.#sum;
    this.#overflow += other.#overflow;
    if (other.#count > 0) {
      this.#min = Math.min(this.#min, other.#min);
      this.#max = Math.max(this.#max, other.#max);
    }
  }

  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#sum = 0;
    this.#min = Number.POSITIVE_INFINITY;
    this.#max = 0;
    this.#overflow = 0;
  }

  /** The nearest-rank percentile, p in [0, 100]; 0 when empty. */
  percentile(p: number): number {
    if (!(p >= 0 && p <= 100)) throw new RangeError('percentile must be within [0, 100]');
    if (this.#count === 0) return 0;
    if (p === 0) return this.#min;
    // The epsilon keeps binary rounding (99.9 / 100 * 1000 = 999.0000000000001) from
    // pushing the rank one past where it belongs.
    const rank = Math.max(1, Math.ceil((p / 100) * this.#count - 1e-9));
    let seen = 0;
    const counts = this.#counts;
    for (let i = 0; i < counts.length; i++) {
      seen += counts[i]!;
      if (seen >= rank) return Math.min(Math.max(highestOf(i), this.#min), this.#max);
    }
    return this.#max;
  }

  summary(): HistogramSummary {
    const empty = this.#count === 0;
    return {
      count: this.#count,
      min: empty ? 0 : this.#min,
      max: this.#max,
      mean: empty ? 0 : this.#sum / this.#count,
      p50: this.percentile(50),
      p90: this.percentile(90),
      p99: this.percentile(99),
      p999: this.percentile(99.9),
      overflow: this.#overflow,
    };
  }
}

/** The bucket of a non-negative integer. Exported for the tests. */
export function indexOf(v: number): number {
  if (v < LINEAR) return v;
  const exponent = 31 - Math.clz32(v); // floor(log2 v), v < 2^31
  const shift = exponent - (SUB_BITS - 1);
  return shift * HALF + (v >>> shift);
}

/** The smallest value in bucket `i`. Exported for the tests. */
export function lowestOf(i: number): number {
  if (i < LINEAR) return i;
  const shift = Math.floor(i / HALF) - 1;
  return (i - shift * HALF) * 2 ** shift;
}

/** The largest value in bucket `i`. */
export function highestOf(i: number): number {
  if (i < LINEAR) return i;
  const shift = Math.floor(i / HALF) - 1;
  return (i - shift * HALF + 1) * 2 ** shift - 1;
}
