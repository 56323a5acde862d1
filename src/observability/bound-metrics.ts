import type client from 'prom-client';

/** One label set of a counter. */
export class CounterCell {
  value = 0;

  inc(by = 1): void {
    this.value += by;
  }
}

/** One label set of a histogram: a count per bucket (not cumulative; the last is +Inf), the sum and the count. */
export class HistogramCell {
  readonly #upperBounds: readonly number[];
  readonly buckets: Float64Array;
  sum = 0;
  count = 0;

  constructor(upperBounds: readonly number[]) {
    this.#upperBounds = upperBounds;
    this.buckets = new Float64Array(upperBounds.length + 1);
  }

  /** A value that is not a finite number is not counted (prom-client would throw, on the request path). */
  observe(value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#upperBounds;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.buckets[i]!++;
    this.sum += value;
    this.count++;
  }
}

type Labels = Record<string, string>;

/** A metric was given the wrong number of label values: a bug in the caller. */
export class MetricLabelsError extends Error {
  readonly code = 'METRIC_LABELS';
  constructor(metric: string, expected: number, got: number) {
    super(`${metric} takes ${expected} label values, got ${got}`);
    this.name = 'MetricLabelsError';
  }
}

interface Sample {
  readonly value: number;
  readonly labels: Record<string, string | number>;
  readonly metricName?: string;
}

/** What a prom-client Registry reads from a metric at scrape (and hands to the cluster's AggregatorRegistry). */
export interface MetricSnapshot {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  readonly values: Sample[];
}

/**
 * A metric family whose label sets are resolved once into a cell, which then
 * counts with a plain addition: prom-client validates and hashes the labels
 * and allocates on every `inc`/`observe`, even through a child (kept for
 * that: docs/performance.md, "Hand-written where a library exists"). The
 * family registers itself in a prom-client Registry, which reads it through
 * `get()` at scrape time, so the exposition (and the cluster's aggregation)
 * stays prom-client's.
 */
abstract class Family<Cell> {
  readonly name: string;
  readonly help: string;
  readonly aggregator = 'sum' as const;
  readonly #labelNames: readonly string[];
  readonly #cells = new Map<string, { labels: Labels; cell: Cell }>();

  constructor(registry: client.Registry, options: { name: string; help: string; labelNames: readonly string[] }) {
    this.name = options.name;
    this.help = options.help;
    this.#labelNames = options.labelNames;
    // The Registry needs only name, help, type, get() and reset() of a metric; its type names the whole class.
    registry.registerMetric(this as unknown as client.Metric);
  }

  /** The cell for these label values (in labelNames order); callers on a hot path keep it. */
  cell(...values: string[]): Cell {
    if (values.length !== this.#labelNames.length) throw new MetricLabelsError(this.name, this.#labelNames.length, values.length);
    const key = values.join('\0');
    let entry = this.#cells.get(key);
    if (entry === undefined) {
      const labels: Labels = {};
      this.#labelNames.forEach((name, i) => (labels[name] = values[i]!));
      entry = { labels, cell: this.newCell() };
      this.#cells.set(key, entry);
    }
    return entry.cell;
  }

  /** Registry.resetMetrics() calls this: counts start again, cells held by callers stay valid. */
  reset(): void {
    for (const { cell } of this.#cells.values()) this.resetCell(cell);
  }

  get(): Promise<MetricSnapshot> {
    const values: Sample[] = [];
    for (const { labels, cell } of this.#cells.values()) this.samples(labels, cell, values);
    return Promise.resolve({ name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values });
  }

  abstract readonly type: 'counter' | 'histogram';
  protected abstract newCell(): Cell;
  protected abstract resetCell(cell: Cell): void;
  protected abstract samples(labels: Labels, cell: Cell, into: Sample[]): void;
}

export class CounterFamily extends Family<CounterCell> {
  readonly type = 'counter' as const;

  protected newCell(): CounterCell {
    return new CounterCell();
  }

  protected resetCell(cell: CounterCell): void {
    cell.value = 0;
  }

  protected samples(labels: Labels, cell: CounterCell, into: Sample[]): void {
    into.push({ value: cell.value, labels });
  }
}

export class HistogramFamily extends Family<HistogramCell> {
  readonly type = 'histogram' as const;
  readonly #upperBounds: readonly number[];

  constructor(registry: client.Registry, options: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[] }) {
    super(registry, options);
    this.#upperBounds = [...options.buckets].sort((a, b) => a - b);
  }

  protected newCell(): HistogramCell {
    return new HistogramCell(this.#upperBounds);
  }

  protected resetCell(cell: HistogramCell): void {
    cell.buckets.fill(0);
    cell.sum = 0;
    cell.count = 0;
  }

  /** Cumulative buckets, then +Inf, _sum and _count, as prom-client writes them (`le` first). */
  protected samples(labels: Labels, cell: HistogramCell, into: Sample[]): void {
    const bucket = `${this.name}_bucket`;
    let cumulative = 0;
    this.#upperBounds.forEach((le, i) => {
      cumulative += cell.buckets[i]!;
      into.push({ metricName: bucket, labels: { le, ...labels }, value: cumulative });
    });
    into.push({ metricName: bucket, labels: { le: '+Inf', ...labels }, value: cell.count });
    into.push({ metricName: `${this.name}_sum`, labels, value: cell.sum });
    into.push({ metricName: `${this.name}_count`, labels, value: cell.count });
  }
}
