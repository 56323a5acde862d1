import Router from '@koa/router';
import Koa from 'koa';
import type { SnapshotStore } from './config/store.js';
import { createAccess } from './http/access.js';
import { createErrorHandler } from './http/errors.js';
import { createProxyEndpoint } from './http/proxy-endpoint.js';
import type { Readiness } from './http/readiness.js';
import type { RequestRecord } from './http/request-record.js';
import { createMetricsEndpoint, createReady, health } from './http/system-endpoints.js';
import type { Logger } from './observability/logger.js';
import { routeLabel, type GatewayMetrics } from './observability/metrics.js';
import type { UpstreamPools } from './proxy/upstream-pools.js';

export interface AppDeps {
  readonly store: SnapshotStore;
  readonly pools: UpstreamPools;
  readonly metrics: GatewayMetrics;
  readonly readiness: Readiness;
  readonly logger: Logger;
}

/** The Koa application: middleware and routes, no I/O. */
export function createApp(deps: AppDeps): Koa {
  const { store, pools, metrics, readiness, logger } = deps;
  const app = new Koa();
  app.silent = true; // errors are answered and logged by the error middleware

  const { access, complete } = createAccess(metrics, logger, () => store.current?.settings.accessLog ?? true);
  const proxy = createProxyEndpoint({ store, pools, metrics, complete });

  const router = new Router();
  router.get('/health', health);
  router.get('/health/ready', createReady(readiness));
  router.get('/metrics', createMetricsEndpoint(metrics));
  const v1 = (ctx: Koa.Context): Promise<void> => {
    (ctx.state['record'] as RequestRecord).route = routeLabel(ctx.path);
    return proxy(ctx);
  };
  router.get('/v1/{*path}', v1);
  router.post('/v1/{*path}', v1);
  router.delete('/v1/{*path}', v1);

  app.use(access);
  app.use(createErrorHandler(logger));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  return app;
}
