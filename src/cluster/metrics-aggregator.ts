import type { Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { MetricsJson } from '../observability/metrics-report.js';
import { isClusterMessage, type CollectRequest, type CollectResult, type MetricsRequest, type MetricsResult } from './messages.js';

/** How long the primary waits for each worker's figures; a worker that is restarting is left out. */
const COLLECT_TIMEOUT_MS = 2_000;

/** JSON figures that describe the whole process tree rather than add up across workers. */
const SHARED_FIGURES = new Set(['uptime_seconds', 'cpu_cores', 'model_redirects', 'event_loop_lag_p99_ms']);

/** Sums each worker's JSON figures (max for the shared ones) and says how many workers answered. */
export function combineJson(parts: readonly MetricsJson[]): MetricsJson {
  const combined: MetricsJson = {};
  for (const part of parts) {
    for (const [name, value] of Object.entries(part)) {
      const soFar = combined[name];
      combined[name] = soFar === undefined ? value : SHARED_FIGURES.has(name) ? Math.max(soFar, value) : soFar + value;
    }
  }
  combined['workers'] = parts.length;
  return combined;
}

/**
 * The primary's side of cluster metrics: a worker asks for the cluster's
 * figures, every live worker is asked for its own, and the combination
 * (prom-client's aggregation for Prometheus text, combineJson for the JSON)
 * goes back to the one that asked.
 *
 * The collection round trip is ours, not prom-client's clusterMetrics(): that
 * one carries only the Prometheus registry (the JSON figures need the same
 * trip), and it rejects the whole scrape after 5 s when one connected worker
 * does not answer, where this leaves that worker out after 2 s
 * (test/unit/cluster.test.ts, "left out after 2 s"; docs/performance.md,
 * "Hand-written where a library exists").
 */
export class MetricsAggregator {
  readonly #liveWorkers: () => Worker[];
  readonly #collections = new Map<number, { parts: CollectResult[]; expected: number; done(): void }>();
  #nextId = 1;

  constructor(liveWorkers: () => Worker[]) {
    this.#liveWorkers = liveWorkers;
  }

  /** Handles the metrics messages among a worker's messages. */
  onMessage(from: Worker, message: unknown): void {
    if (!isClusterMessage(message)) return;
    if (message.type === 'api-proxy:metrics-request') void this.#answer(from, message);
    else if (message.type === 'api-proxy:collected') {
      const collection = this.#collections.get(message.id);
      if (collection === undefined) return;
      collection.parts.push(message);
      if (collection.parts.length === collection.expected) collection.done();
    }
  }

  #collect(): Promise<CollectResult[]> {
    const live = this.#liveWorkers();
    const id = this.#nextId++;
    return new Promise((resolveParts) => {
      const parts: CollectResult[] = [];
      const done = (): void => {
        clearTimeout(timer);
        this.#collections.delete(id);
        resolveParts(parts);
      };
      const timer = setTimeout(done, COLLECT_TIMEOUT_MS);
      this.#collections.set(id, { parts, expected: live.length, done });
      const request: CollectRequest = { type: 'api-proxy:collect', id };
      for (const worker of live) worker.send(request);
    });
  }

  async #answer(to: Worker, request: MetricsRequest): Promise<void> {
    const parts = await this.#collect();
    const body =
      request.format === 'json'
        ? combineJson(parts.map((part) => part.json))
        : await AggregatorRegistry.aggregate(parts.map((part) => part.prometheus)).metrics();
    const result: MetricsResult = { type: 'api-proxy:metrics-result', id: request.id, body };
    if (to.isConnected()) to.send(result);
  }
}
