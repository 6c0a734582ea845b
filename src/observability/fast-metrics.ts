/**
 * Counters and histograms for the per-call metrics, cheap on the hot path: a call adds to plain
 * numbers in a child found by nested map lookups (no label hashing, no strings built, nothing
 * allocated once a label set exists), and prom-client reads them only at a scrape. They
 * register in a prom-client Registry like its own metrics (the registry formats, escapes and adds
 * the default labels), so /metrics reads the same as with prom-client's Counter and Histogram,
 * whose per-call `inc`/`observe` hash the label set every time.
 *
 * Label sets are bounded: past `maxSets`, new sets are counted under `overflow` for every label.
 */
import type { Registry } from 'prom-client';

type Labels = Record<string, string>;

interface MetricValue {
  value: number;
  labels: Labels;
  /** Labels printed after `labels` and the registry's default labels (prom-client's histograms use them). */
  sharedLabels?: Labels;
  metricName?: string;
}

/** The shape prom-client's Registry reads from a metric (`get()`), as its own metrics give it. */
interface Collected {
  name: string;
  help: string;
  type: 'counter' | 'histogram';
  values: MetricValue[];
  aggregator: 'sum';
}

export class CounterChild {
  value = 0;
  readonly labels: Labels;
  constructor(labels: Labels) {
    this.labels = labels;
  }

  inc(by = 1): void {
    this.value += by;
  }
}

export class HistogramChild {
  readonly labels: Labels;
  /** Count per bucket (not cumulative), the last one is +Inf. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  private readonly bounds: readonly number[];

  constructor(labels: Labels, bounds: readonly number[]) {
    this.labels = labels;
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(v: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && v > (bounds[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.sum += v;
    this.count++;
  }
}

/**
 * The children of one metric by label values, in nested maps (one level per label). `clean`
 * makes a value fit for the text format; values are looked up raw and stored clean.
 */
abstract class Family<C extends CounterChild | HistogramChild> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  protected readonly labelNames: readonly string[];
  protected readonly children: C[] = [];
  private readonly root = new Map<string, unknown>();
  private readonly maxSets: number;
  private readonly overflowValue: string;
  private readonly clean: (v: string) => string;
  private overflowChild: C | undefined;

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], limits: { maxSets: number; overflow: string; clean: (v: string) => string }) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
    this.maxSets = limits.maxSets;
    this.overflowValue = limits.overflow;
    this.clean = limits.clean;
    registry.registerMetric(this as never);
  }

  protected abstract make(labels: Labels): C;

  /** The child of a label set of two values (the common case, kept free of rest arrays). */
  child2(a: string, b: string): C {
    const level = this.root.get(a) as Map<string, C> | undefined;
    const hit = level?.get(b);
    return hit ?? this.create([a, b]);
  }

  child3(a: string, b: string, c: string): C {
    const l1 = this.root.get(a) as Map<string, Map<string, C>> | undefined;
    const hit = l1?.get(b)?.get(c);
    return hit ?? this.create([a, b, c]);
  }

  child(values: readonly string[]): C {
    let level: Map<string, unknown> | undefined = this.root;
    for (let i = 0; i < values.length - 1 && level !== undefined; i++) level = level.get(values[i] as string) as Map<string, unknown> | undefined;
    const hit = level?.get(values[values.length - 1] as string) as C | undefined;
    return hit ?? this.create(values);
  }

  private create(values: readonly string[]): C {
    if (this.children.length >= this.maxSets) {
      this.overflowChild ??= this.make(this.labelsOf(values.map(() => this.overflowValue)));
      return this.overflowChild;
    }
    const made = this.make(this.labelsOf(values.map(this.clean)));
    let level = this.root;
    for (let i = 0; i < values.length - 1; i++) {
      const key = values[i] as string;
      let next = level.get(key) as Map<string, unknown> | undefined;
      if (next === undefined) level.set(key, (next = new Map()));
      level = next;
    }
    level.set(values[values.length - 1] as string, made);
    this.children.push(made);
    return made;
  }

  private labelsOf(values: readonly string[]): Labels {
    const labels: Labels = {};
    this.labelNames.forEach((n, i) => (labels[n] = values[i] as string));
    return labels;
  }

  /** Every child, the overflow one last. */
  protected all(): C[] {
    return this.overflowChild === undefined ? this.children : [...this.children, this.overflowChild];
  }

  reset(): void {
    this.children.length = 0;
    this.root.clear();
    this.overflowChild = undefined;
  }
}

export class FastCounter extends Family<CounterChild> {
  readonly type = 'counter' as const;

  protected make(labels: Labels): CounterChild {
    return new CounterChild(labels);
  }

  async get(): Promise<Collected> {
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values: this.all().map((c) => ({ value: c.value, labels: c.labels })) };
  }
}

export class FastHistogram extends Family<HistogramChild> {
  readonly type = 'histogram' as const;
  private readonly bounds: readonly number[];

  constructor(registry: Registry, name: string, help: string, labelNames: readonly string[], bounds: readonly number[], limits: { maxSets: number; overflow: string; clean: (v: string) => string }) {
    super(registry, name, help, labelNames, limits);
    this.bounds = [...bounds].sort((x, y) => x - y);
  }

  protected make(labels: Labels): HistogramChild {
    return new HistogramChild(labels, this.bounds);
  }

  async get(): Promise<Collected> {
    const values: MetricValue[] = [];
    for (const c of this.all()) {
      let cumulative = 0;
      for (let i = 0; i <= this.bounds.length; i++) {
        cumulative += c.counts[i] as number;
        const le = i < this.bounds.length ? String(this.bounds[i]) : '+Inf';
        values.push({ metricName: `${this.name}_bucket`, labels: { le }, sharedLabels: c.labels, value: cumulative });
      }
      // The same label layout as prom-client's Histogram, so the text reads the same.
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels: c.labels, value: c.sum });
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels: c.labels, value: c.count });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
