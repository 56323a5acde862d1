import type { GatewayMetrics } from '../observability/metrics.js';
import type { MetricsJson, MetricsReport } from '../observability/metrics-report.js';
import { isClusterMessage, type CollectResult, type MetricsRequest } from './messages.js';

/** How long a worker waits for the primary's combined figures before answering with an error. */
const RESULT_TIMEOUT_MS = 3_000;

interface Pending {
  resolve(body: string | MetricsJson): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/**
 * The worker's side of cluster metrics: it answers the primary's collection
 * requests with its own figures, and its `/metrics` asks the primary for
 * everyone's, combined, so a scrape that lands on any worker sees the whole.
 * (The round trip is ours rather than prom-client's: see MetricsAggregator.)
 */
export function clusterMetricsReport(metrics: GatewayMetrics): MetricsReport {
  const pending = new Map<number, Pending>();
  let nextId = 1;

  process.on('message', (message: unknown) => {
    if (!isClusterMessage(message)) return;
    if (message.type === 'api-proxy:collect') {
      void metrics.registry.getMetricsAsJSON().then((prometheus) => {
        const reply: CollectResult = { type: 'api-proxy:collected', id: message.id, prometheus, json: metrics.json() };
        process.send?.(reply);
      });
    } else if (message.type === 'api-proxy:metrics-result') {
      const waiting = pending.get(message.id);
      if (waiting === undefined) return;
      pending.delete(message.id);
      clearTimeout(waiting.timer);
      waiting.resolve(message.body);
    }
  });

  function ask(format: MetricsRequest['format']): Promise<string | MetricsJson> {
    return new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error('the cluster primary did not answer with metrics'));
      }, RESULT_TIMEOUT_MS);
      pending.set(id, { resolve, reject, timer });
      const request: MetricsRequest = { type: 'api-proxy:metrics-request', id, format };
      process.send!(request);
    });
  }

  return {
    prometheus: async () => (await ask('prometheus')) as string,
    json: async () => (await ask('json')) as MetricsJson,
    contentType: metrics.contentType,
  };
}
