import {
  createNoopMeter,
  type BatchObservableCallback,
  type Counter,
  type Gauge,
  type Histogram,
  type Meter,
  type MeterProvider,
  type MetricAttributes,
  type MetricOptions,
  type Observable,
  type ObservableCallback,
  type ObservableCounter,
  type ObservableGauge,
  type ObservableUpDownCounter,
  type UpDownCounter,
} from '@opentelemetry/api';

/** What becomes of finished spans: exported, or dropped (the queue was full, or the collector refused or did not answer). */
export interface SpanExportReport {
  exported(count: number): void;
  dropped(reason: 'queue_full' | 'export_failed', count: number): void;
  /** Where the queue's length is read (at scrape). */
  queueLength(read: () => number): void;
}

/** The SDK's self-observability metrics (semantic conventions, otel.sdk.*) for its span processor. */
const PROCESSED = 'otel.sdk.processor.span.processed';
const QUEUE_SIZE = 'otel.sdk.processor.span.queue.size';

/**
 * A MeterProvider for the SDK's own span-processor metrics that hands them
 * to the gateway's Prometheus metrics: the batch processor reports every
 * span it exports or drops there (with `error.type` `queue_full` when its
 * bounded queue is full), which no other public interface of the SDK does.
 * Every other instrument is a no-op.
 */
export class ExportMeterProvider implements MeterProvider {
  readonly #meter: Meter;

  constructor(report: SpanExportReport) {
    this.#meter = new ExportMeter(report);
  }

  getMeter(): Meter {
    return this.#meter;
  }
}

class ExportMeter implements Meter {
  readonly #noop = createNoopMeter();
  readonly #report: SpanExportReport;

  constructor(report: SpanExportReport) {
    this.#report = report;
  }

  createCounter<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): Counter<A> {
    if (name !== PROCESSED) return this.#noop.createCounter(name, options);
    const report = this.#report;
    return {
      add(value: number, attributes?: A): void {
        const errorType = attributes?.['error.type'];
        if (errorType === undefined) report.exported(value);
        else report.dropped(errorType === 'queue_full' ? 'queue_full' : 'export_failed', value);
      },
    };
  }

  createObservableUpDownCounter<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): ObservableUpDownCounter<A> {
    if (name !== QUEUE_SIZE) return this.#noop.createObservableUpDownCounter(name, options);
    const report = this.#report;
    return {
      addCallback(callback: ObservableCallback<A>): void {
        report.queueLength(() => {
          let length = 0;
          void callback({ observe: (value: number) => (length = value) });
          return length;
        });
      },
      removeCallback(): void {
        report.queueLength(() => 0);
      },
    } satisfies Observable<A>;
  }

  createGauge<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): Gauge<A> {
    return this.#noop.createGauge(name, options);
  }

  createHistogram<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): Histogram<A> {
    return this.#noop.createHistogram(name, options);
  }

  createUpDownCounter<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): UpDownCounter<A> {
    return this.#noop.createUpDownCounter(name, options);
  }

  createObservableGauge<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): ObservableGauge<A> {
    return this.#noop.createObservableGauge(name, options);
  }

  createObservableCounter<A extends MetricAttributes = MetricAttributes>(name: string, options?: MetricOptions): ObservableCounter<A> {
    return this.#noop.createObservableCounter(name, options);
  }

  addBatchObservableCallback<A extends MetricAttributes = MetricAttributes>(callback: BatchObservableCallback<A>, observables: Observable<A>[]): void {
    this.#noop.addBatchObservableCallback(callback, observables);
  }

  removeBatchObservableCallback<A extends MetricAttributes = MetricAttributes>(callback: BatchObservableCallback<A>, observables: Observable<A>[]): void {
    this.#noop.removeBatchObservableCallback(callback, observables);
  }
}
