import type { GatewayMetrics } from './metrics.js';

/** The seed's JSON metrics: flat numbers. */
export type MetricsJson = Record<string, number>;

/** What `/metrics` serves: this process's figures, or (in a cluster) every worker's combined. */
export interface MetricsReport {
  prometheus(): Promise<string>;
  json(): Promise<MetricsJson>;
  readonly contentType: string;
}

export function localMetricsReport(metrics: GatewayMetrics): MetricsReport {
  return {
    prometheus: () => metrics.prometheus(),
    json: () => Promise.resolve(metrics.json()),
    contentType: metrics.contentType,
  };
}
