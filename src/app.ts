import Router from '@koa/router';
import Koa from 'koa';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { SnapshotStore } from './config/store.js';
import { createAccess } from './http/access.js';
import { createErrorHandler } from './http/errors.js';
import type { Readiness } from './http/readiness.js';
import { createMetricsEndpoint, createReady, health } from './http/system-endpoints.js';
import { createV1Handler, isV1Path } from './http/v1-handler.js';
import type { Logger } from './observability/logger.js';
import type { GatewayMetrics } from './observability/metrics.js';
import type { MetricsReport } from './observability/metrics-report.js';
import type { Admissions } from './proxy/admission.js';
import type { UpstreamPools } from './proxy/upstream-pools.js';

export interface AppDeps {
  readonly store: SnapshotStore;
  readonly pools: UpstreamPools;
  readonly admissions: Admissions;
  readonly metrics: GatewayMetrics;
  readonly metricsReport: MetricsReport;
  readonly readiness: Readiness;
  readonly logger: Logger;
}

/**
 * The gateway's HTTP surface, no I/O: `/v1/*` goes to the proxy handler on
 * Node's request and response (the hot path skips Koa's per-request context,
 * which cost a measurable share of each proxied request); everything else is
 * a small Koa app (health, readiness, metrics, 404s).
 */
export function createRequestHandler(deps: AppDeps): RequestListener {
  const { store, pools, admissions, metrics, metricsReport, readiness, logger } = deps;
  const access = createAccess(metrics, logger, () => store.current?.settings.accessLog ?? true);

  const router = new Router();
  router.get('/health', health);
  router.get('/health/ready', createReady(readiness));
  router.get('/metrics', createMetricsEndpoint(metricsReport));
  const app = new Koa();
  app.silent = true; // errors are answered and logged by the error middleware
  app.use(access.access);
  app.use(createErrorHandler(logger));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  const system = app.callback();

  const v1 = createV1Handler({ store, pools, admissions, metrics, access, logger });
  return (req: IncomingMessage, res: ServerResponse) => (isV1Path(req.url) ? v1(req, res) : system(req, res));
}
