import os from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import client from 'prom-client';
import { CounterFamily, HistogramFamily, type CounterCell, type HistogramCell } from './bound-metrics.js';
import { PolicyMetrics } from './policy-metrics.js';

/** Label for a request's endpoint; a small fixed set keeps Prometheus cardinality bounded. */
export type RouteLabel =
  'chat_completions' | 'completions' | 'embeddings' | 'responses' | 'models' | 'audio' | 'images' | 'other_v1' | 'health' | 'metrics' | 'unmatched';

const ROUTE_LABELS: Record<string, RouteLabel> = {
  'chat/completions': 'chat_completions',
  completions: 'completions',
  embeddings: 'embeddings',
  responses: 'responses',
  models: 'models',
  audio: 'audio',
  images: 'images',
};

/** Maps a `/v1/...` path (without query) to its route label. */
export function routeLabel(path: string): RouteLabel {
  const rest = path.slice(4); // after '/v1/'
  if (rest.startsWith('chat/completions')) return 'chat_completions';
  const first = rest.split('/', 1)[0] ?? '';
  return ROUTE_LABELS[first] ?? 'other_v1';
}

/**
 * How one attempt at an upstream ended: an answer (by status: below 400,
 * other 4xx, 429, 5xx), or a failure before any (connect, headers timeout,
 * reset before any byte, a reused connection closed under the request, other
 * errors), or its client left.
 */
export type AttemptOutcome =
  'success' | 'client_error' | 'rate_limited' | 'server_error' | 'connect_failure' | 'timeout' | 'reset' | 'stale_connection' | 'error' | 'abandoned';

export const ATTEMPT_OUTCOMES: readonly AttemptOutcome[] = [
  'success',
  'client_error',
  'rate_limited',
  'server_error',
  'connect_failure',
  'timeout',
  'reset',
  'stale_connection',
  'error',
  'abandoned',
];

const STATUS_CLASSES = ['other', '1xx', '2xx', '3xx', '4xx', '5xx'];

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/**
 * The gateway's counters, exposed as the seed's JSON and as Prometheus text.
 * Plain fields for the JSON figures; the per-request families count into
 * cells cached per label set (see bound-metrics), which prom-client's
 * registry reads at scrape time.
 */
export class GatewayMetrics {
  activeRequests = 0;
  totalRequests = 0;
  errorCount = 0;
  activeStreams = 0;
  readonly registry = new client.Registry();
  /** Tokens, unknown usage, limits and their counter store. */
  readonly policy = new PolicyMetrics(this.registry);
  readonly #startedAt = Date.now();
  readonly #loopDelay: ReturnType<typeof monitorEventLoopDelay>;
  readonly #requests: CounterFamily;
  readonly #duration: HistogramFamily;
  readonly #ttfb: HistogramFamily;
  readonly #upstreamErrors: CounterFamily;
  readonly #reloads: CounterFamily;
  readonly #keyRequests: CounterFamily;
  readonly #queueWait: HistogramFamily;
  readonly #redactions: CounterFamily;
  readonly #clientErrors: CounterFamily;
  readonly #upstreamTimeouts: CounterFamily;
  readonly #saturated: CounterFamily;
  readonly #attempts: CounterFamily;
  readonly #fallbacks: CounterFamily;
  /** upstream -> outcome -> cell. */
  readonly #attemptCells = new Map<string, Map<AttemptOutcome, CounterCell>>();
  readonly #answerModels: CounterFamily;
  readonly #requestCells = new Map<string, CounterCell>();
  readonly #keyCells = new Map<string, CounterCell>();
  readonly #durationCells = new Map<string, HistogramCell>();
  readonly #ttfbCells = new Map<string, HistogramCell>();
  #routeCount = (): number => 0;
  #admissions = (): Iterable<{ readonly name: string; readonly inFlight: number; readonly queued: number }> => [];
  #ejections = (): Iterable<{ readonly name: string; readonly ejected: boolean }> => [];

  constructor() {
    const registers = [this.registry];
    client.collectDefaultMetrics({ register: this.registry });
    this.#requests = new CounterFamily(this.registry, {
      name: 'apiproxy_requests_total',
      help: 'Requests answered, by route and HTTP status.',
      labelNames: ['route', 'status'],
    });
    this.#keyRequests = new CounterFamily(this.registry, {
      name: 'apiproxy_key_requests_total',
      help: 'Authenticated requests by consumer, client key id and status class (2xx, 4xx, 5xx); never the key itself.',
      labelNames: ['consumer', 'key_id', 'class'],
    });
    this.#duration = new HistogramFamily(this.registry, {
      name: 'apiproxy_request_duration_seconds',
      help: 'Time from request to the end of the response, by route.',
      labelNames: ['route'],
      buckets: LATENCY_BUCKETS,
    });
    this.#ttfb = new HistogramFamily(this.registry, {
      name: 'apiproxy_upstream_ttfb_seconds',
      help: "Time from dispatch to the upstream's response headers, by upstream.",
      labelNames: ['upstream'],
      buckets: LATENCY_BUCKETS,
    });
    this.#upstreamErrors = new CounterFamily(this.registry, {
      name: 'apiproxy_upstream_errors_total',
      help: 'Upstream exchanges that failed (unreachable, reset, timeout), by upstream and error code.',
      labelNames: ['upstream', 'code'],
    });
    this.#reloads = new CounterFamily(this.registry, {
      name: 'apiproxy_config_reloads_total',
      help: 'Configuration updates by source and result (success, failure).',
      labelNames: ['source', 'result'],
    });
    this.#queueWait = new HistogramFamily(this.registry, {
      name: 'apiproxy_upstream_queue_wait_seconds',
      help: "Time requests waited for a slot at an upstream's max_connections, by upstream (only capped upstreams queue).",
      labelNames: ['upstream'],
      buckets: LATENCY_BUCKETS,
    });
    this.#saturated = new CounterFamily(this.registry, {
      name: 'apiproxy_upstream_saturated_total',
      help: 'Requests refused with 503 upstream_saturated: no slot freed within queue_timeout_ms, by upstream.',
      labelNames: ['upstream'],
    });
    this.#redactions = new CounterFamily(this.registry, {
      name: 'apiproxy_redactions_total',
      help: 'Configured secrets (upstream keys) taken out of upstream answers before they reached a client, by upstream and where (header, body).',
      labelNames: ['upstream', 'where'],
    });
    this.#attempts = new CounterFamily(this.registry, {
      name: 'apiproxy_upstream_attempts_total',
      help: 'Attempts at each upstream by how they ended: success, client_error, rate_limited, server_error (by status), connect_failure, timeout, reset, stale_connection, error, abandoned.',
      labelNames: ['upstream', 'outcome'],
    });
    this.#fallbacks = new CounterFamily(this.registry, {
      name: 'apiproxy_fallbacks_total',
      help: "Requests that moved on to another target of their route after a failed attempt, by route (the client's model).",
      labelNames: ['route'],
    });
    const ejections = (): Iterable<{ readonly name: string; readonly ejected: boolean }> => this.#ejections();
    new client.Gauge({
      name: 'apiproxy_upstream_ejected',
      help: 'Whether each upstream is out of rotation after failures in a row (1) or not (0); with WORKERS > 1, the number of workers that ejected it.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const upstream of ejections()) this.set({ upstream: upstream.name }, upstream.ejected ? 1 : 0);
      },
    });
    this.#clientErrors = new CounterFamily(this.registry, {
      name: 'apiproxy_client_errors_total',
      help: 'Client connections the server refused or closed itself, by reason: request_timeout (head or body too slow), header_overflow (head over 16 KiB), bad_request (not HTTP), silent_connection (nothing sent).',
      labelNames: ['reason'],
    });
    this.#upstreamTimeouts = new CounterFamily(this.registry, {
      name: 'apiproxy_upstream_timeouts_total',
      help: 'Upstream timeouts by upstream and phase: connect (connect_ms), headers (headers_ms), idle (idle_ms, a body or stream gone silent).',
      labelNames: ['upstream', 'phase'],
    });
    for (const reason of ['request_timeout', 'header_overflow', 'bad_request', 'silent_connection']) this.#clientErrors.cell(reason);
    this.#answerModels = new CounterFamily(this.registry, {
      name: 'apiproxy_answer_model_total',
      help:
        'Answers whose model the gateway was to replace with the requested one (answer_model: requested), by requested model, ' +
        'the model sent upstream, and result: rewritten, absent (no model in the answer), compressed or too_large (both passed unchanged).',
      labelNames: ['model', 'upstream_model', 'result'],
    });
    const admissions = (): Iterable<{ readonly name: string; readonly inFlight: number; readonly queued: number }> => this.#admissions();
    const activeRequests = (): number => this.activeRequests;
    const activeStreams = (): number => this.activeStreams;
    const routeCount = (): number => this.#routeCount();
    new client.Gauge({
      name: 'apiproxy_upstream_in_flight',
      help: 'Requests in flight to each upstream.',
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const admission of admissions()) this.set({ upstream: admission.name }, admission.inFlight);
      },
    });
    new client.Gauge({
      name: 'apiproxy_upstream_queued',
      help: "Requests waiting for a slot at an upstream's max_connections.",
      labelNames: ['upstream'],
      registers,
      collect() {
        this.reset();
        for (const admission of admissions()) this.set({ upstream: admission.name }, admission.queued);
      },
    });
    new client.Gauge({
      name: 'apiproxy_active_requests',
      help: 'Requests in flight.',
      registers,
      collect() {
        this.set(activeRequests());
      },
    });
    new client.Gauge({
      name: 'apiproxy_active_streams',
      help: 'Event streams being relayed.',
      registers,
      collect() {
        this.set(activeStreams());
      },
    });
    new client.Gauge({
      name: 'apiproxy_model_routes',
      help: 'Model routes in the current snapshot.',
      registers,
      aggregator: 'max', // every cluster worker holds the same snapshot
      collect() {
        this.set(routeCount());
      },
    });
    this.#loopDelay = monitorEventLoopDelay({ resolution: 20 });
    this.#loopDelay.enable();
  }

  /** Where the in-flight and queued gauges read each upstream's counts. */
  countAdmissionsWith(admissions: () => Iterable<{ readonly name: string; readonly inFlight: number; readonly queued: number }>): void {
    this.#admissions = admissions;
  }

  /** Where the ejected gauge reads each upstream's state. */
  countEjectionsWith(ejections: () => Iterable<{ readonly name: string; readonly ejected: boolean }>): void {
    this.#ejections = ejections;
  }

  /** Starts an upstream's attempt series at zero, one per outcome. */
  attemptsOpened(upstream: string, outcomes: readonly AttemptOutcome[]): void {
    for (const outcome of outcomes) this.#attemptCell(upstream, outcome);
  }

  attempted(upstream: string, outcome: AttemptOutcome): void {
    this.#attemptCell(upstream, outcome).inc();
  }

  fellBack(route: string): void {
    this.#fallbacks.cell(route).inc();
  }

  #attemptCell(upstream: string, outcome: AttemptOutcome): CounterCell {
    let cells = this.#attemptCells.get(upstream);
    if (cells === undefined) {
      cells = new Map();
      this.#attemptCells.set(upstream, cells);
    }
    let cell = cells.get(outcome);
    if (cell === undefined) {
      cell = this.#attempts.cell(upstream, outcome);
      cells.set(outcome, cell);
    }
    return cell;
  }

  /** Starts an upstream's queue series at zero, so "nothing waited" is a series, not a gap. */
  queueOpened(upstream: string): void {
    this.#queueWait.cell(upstream);
    this.#saturated.cell(upstream);
  }

  queueWaited(upstream: string, seconds: number, outcome: 'admitted' | 'refused' | 'abandoned'): void {
    this.#queueWait.cell(upstream).observe(seconds);
    if (outcome === 'refused') this.#saturated.cell(upstream).inc();
  }

  clientError(reason: string): void {
    this.#clientErrors.cell(reason).inc();
  }

  upstreamTimedOut(upstream: string, phase: string): void {
    this.#upstreamTimeouts.cell(upstream, phase).inc();
  }

  redacted(upstream: string, where: 'header' | 'body'): void {
    this.#redactions.cell(upstream, where).inc();
  }

  answerModel(model: string, upstreamModel: string, result: string): void {
    this.#answerModels.cell(model, upstreamModel, result).inc();
  }

  /**
   * Tracing started: its series appear, at zero. Finished spans wait in a
   * bounded queue (read by `queueLength`) for export; each is then exported
   * or dropped (the queue was full, or the collector failed or timed out).
   */
  tracingStarted(queueLength: () => number): { exported(count: number): void; dropped(reason: 'queue_full' | 'export_failed', count: number): void } {
    const exported = new CounterFamily(this.registry, {
      name: 'apiproxy_tracing_spans_exported_total',
      help: 'Spans the trace collector accepted.',
      labelNames: [],
    }).cell();
    const dropped = new CounterFamily(this.registry, {
      name: 'apiproxy_tracing_spans_dropped_total',
      help: 'Spans lost: the export queue was full (queue_full) or the collector failed or timed out (export_failed).',
      labelNames: ['reason'],
    });
    const cells = { queue_full: dropped.cell('queue_full'), export_failed: dropped.cell('export_failed') };
    new client.Gauge({
      name: 'apiproxy_tracing_queue_spans',
      help: 'Finished spans waiting for export.',
      registers: [this.registry],
      collect() {
        this.set(queueLength());
      },
    });
    return {
      exported: (count) => exported.inc(count),
      dropped: (reason, count) => cells[reason].inc(count),
    };
  }

  /** Where the JSON and the gauge read the number of model routes. */
  countRoutesWith(count: () => number): void {
    this.#routeCount = count;
  }

  requestFinished(route: RouteLabel, status: number, seconds: number, keyId: string | null, consumer: string | null): void {
    if (status >= 400) this.errorCount++;
    if (keyId !== null && consumer !== null) {
      const statusClass = STATUS_CLASSES[Math.floor(status / 100)] ?? 'other';
      const keyLabel = consumer + '\0' + keyId + '\0' + statusClass;
      let keyCounter = this.#keyCells.get(keyLabel);
      if (keyCounter === undefined) {
        keyCounter = this.#keyRequests.cell(consumer, keyId, statusClass);
        this.#keyCells.set(keyLabel, keyCounter);
      }
      keyCounter.inc();
    }
    const key = route + status;
    let counter = this.#requestCells.get(key);
    if (counter === undefined) {
      counter = this.#requests.cell(route, String(status));
      this.#requestCells.set(key, counter);
    }
    counter.inc();
    let histogram = this.#durationCells.get(route);
    if (histogram === undefined) {
      histogram = this.#duration.cell(route);
      this.#durationCells.set(route, histogram);
    }
    histogram.observe(seconds);
  }

  upstreamResponded(upstream: string, seconds: number): void {
    let histogram = this.#ttfbCells.get(upstream);
    if (histogram === undefined) {
      histogram = this.#ttfb.cell(upstream);
      this.#ttfbCells.set(upstream, histogram);
    }
    histogram.observe(seconds);
  }

  upstreamFailed(upstream: string, code: string): void {
    this.#upstreamErrors.cell(upstream, code).inc();
  }

  configReload(source: 'file' | 'kubernetes', result: 'success' | 'failure'): void {
    this.#reloads.cell(source, result).inc();
  }

  /** The seed's JSON, with Node's figures in place of goroutines. */
  json(): Record<string, number> {
    const memory = process.memoryUsage();
    const lag = this.#loopDelay;
    return {
      active_requests: this.activeRequests,
      total_requests: this.totalRequests,
      error_count: this.errorCount,
      uptime_seconds: Math.floor((Date.now() - this.#startedAt) / 1000),
      cpu_cores: os.availableParallelism(),
      model_redirects: this.#routeCount(),
      active_streams: this.activeStreams,
      event_loop_lag_p99_ms: Number((lag.percentile(99) / 1e6).toFixed(3)),
      heap_used_bytes: memory.heapUsed,
      rss_bytes: memory.rss,
    };
  }

  /** Prometheus text format 0.0.4, which Prometheus accepts whatever else its Accept header offers. */
  prometheus(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  close(): void {
    this.#loopDelay.disable();
  }
}
