import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { SnapshotStore } from './config/store.js';
import type { Readiness } from './http/readiness.js';
import { createSystemApp } from './http/system.js';
import type { LingerLimits } from './io/lingering-close.js';
import type { MetricsReport } from './observability/metrics-report.js';
import type { TracerRef } from './observability/tracing/request-trace.js';
import type { RequestAccounting } from './pipeline/account.js';
import type { Admissions } from './pipeline/admission.js';
import { createProxyHandler } from './pipeline/proxy-handler.js';
import { isV1Path } from './pipeline/request-path.js';
import type { TargetHealth } from './pipeline/target-health.js';
import type { Transports } from './transport/transports.js';
import type { PolicyLimiter } from './policy/limiter.js';

export interface AppDeps {
  readonly store: SnapshotStore;
  readonly transports: Transports;
  readonly admissions: Admissions;
  readonly health: TargetHealth;
  readonly accounting: RequestAccounting;
  readonly metricsReport: MetricsReport;
  readonly readiness: Readiness;
  readonly tracing: TracerRef;
  /** The consumers' limits; replaced when the config's rate_limits change. */
  readonly limits: { readonly limiter: PolicyLimiter };
  /** How a connection closes after an answer to a request not read to its end. */
  readonly linger: LingerLimits;
}

/**
 * The gateway's HTTP surface, no I/O: `/v1/*` goes to the proxy pipeline on
 * Node's request and response (the hot path skips Koa's per-request
 * context: docs/performance.md); everything else is a small Koa app.
 */
export function createRequestHandler(deps: AppDeps): RequestListener {
  const system = createSystemApp(deps.readiness, deps.metricsReport, deps.accounting, deps.linger);
  const proxy = createProxyHandler(deps);
  return (req: IncomingMessage, res: ServerResponse) => (isV1Path(req.url) ? proxy(req, res) : system(req, res));
}
