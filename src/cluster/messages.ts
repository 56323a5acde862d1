import type { MetricsJson } from '../observability/metrics-report.js';
import type { Admission, AdmissionResult, RateOp, SlotOp } from '../policy/counter-store.js';

/** A worker asks the primary for the cluster's metrics in one format. */
export interface MetricsRequest {
  readonly type: 'api-proxy:metrics-request';
  readonly id: number;
  readonly format: 'prometheus' | 'json';
}

/** The primary's answer to a MetricsRequest. */
export interface MetricsResult {
  readonly type: 'api-proxy:metrics-result';
  readonly id: number;
  readonly body: string | MetricsJson;
}

/** The primary asks every worker for its own figures. */
export interface CollectRequest {
  readonly type: 'api-proxy:collect';
  readonly id: number;
}

export interface CollectResult {
  readonly type: 'api-proxy:collected';
  readonly id: number;
  /** `registry.getMetricsAsJSON()`: what prom-client's AggregatorRegistry.aggregate takes. */
  readonly prometheus: object[];
  readonly json: MetricsJson;
}

/**
 * The primary tells a worker to drain and exit (SIGTERM to a single process),
 * or with `now` to exit at once (a second signal). Workers leave signals to
 * the primary: a terminal's Ctrl-C reaches the whole process group.
 */
export interface ShutdownRequest {
  readonly type: 'api-proxy:shutdown';
  readonly now: boolean;
}

/** A worker asks the primary, which holds the cluster's limit counters, to judge one request. */
export interface LimitsAdmit {
  readonly type: 'api-proxy:limits-admit';
  readonly id: number;
  readonly admission: Admission;
}

/** The primary's answer to a LimitsAdmit. */
export interface LimitsAdmitted {
  readonly type: 'api-proxy:limits-admitted';
  readonly id: number;
  readonly result: AdmissionResult;
}

/** What a worker's requests owe afterwards, batched: tokens to charge, slots to give back. */
export interface LimitsSettle {
  readonly type: 'api-proxy:limits-settle';
  readonly charges: readonly RateOp[];
  readonly releases: readonly { readonly slot: SlotOp; readonly handle: string }[];
}

export type ClusterMessage = MetricsRequest | MetricsResult | CollectRequest | CollectResult | ShutdownRequest | LimitsAdmit | LimitsAdmitted | LimitsSettle;

export function isClusterMessage(value: unknown): value is ClusterMessage {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { type?: unknown }).type === 'string' &&
    (value as { type: string }).type.startsWith('api-proxy:')
  );
}
