import Router from '@koa/router';
import Koa from 'koa';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SnapshotStore } from './config/store.js';
import { createAccess } from './http/access.js';
import { createErrorHandler, respondWithError } from './http/errors.js';
import { createProxy, createProxyEndpoint } from './http/proxy-endpoint.js';
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

/**
 * The Koa application: middleware and routes, no I/O.
 *
 * `app.callback()` sends `/v1/*` requests (GET, HEAD, POST, DELETE) down a
 * fast path that skips Koa's context, middleware chain and router: the same
 * record, proxy and error answers, on Node's request and response directly.
 * Everything else (system endpoints, 405s, odd spellings of /v1) goes
 * through Koa as before.
 */
export function createApp(deps: AppDeps): Koa {
  const { store, pools, metrics, readiness, logger } = deps;
  const app = new Koa();
  app.silent = true; // errors are answered and logged by the error middleware

  const { access, open, settle, complete } = createAccess(metrics, logger, () => store.current?.settings.accessLog ?? true);
  const proxyDeps = { store, pools, metrics, complete };
  const proxyEndpoint = createProxyEndpoint(proxyDeps);
  const proxy = createProxy(proxyDeps);

  const router = new Router();
  router.get('/health', health);
  router.get('/health/ready', createReady(readiness));
  router.get('/metrics', createMetricsEndpoint(metrics));
  const v1 = (ctx: Koa.Context): Promise<void> => {
    (ctx.state['record'] as RequestRecord).route = routeLabel(ctx.path);
    return proxyEndpoint(ctx);
  };
  router.get('/v1/{*path}', v1);
  router.post('/v1/{*path}', v1);
  router.delete('/v1/{*path}', v1);

  app.use(access);
  app.use(createErrorHandler(logger));
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));

  function fastProxy(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const record = open(req);
    record.route = routeLabel(record.path);
    return proxy(req, res, record).then(
      () => {
        if (!record.forwarded) settle(record, res);
      },
      (caught: unknown) => {
        respondWithError(req, res, record, caught, logger);
        if (!record.forwarded) settle(record, res);
      },
    );
  }

  const koaCallback = app.callback.bind(app);
  app.callback = () => {
    const koa = koaCallback();
    // The gateway serves HTTP/1.1 only (node:http), so requests are IncomingMessages.
    return (req, res) => (isFastPath(req as IncomingMessage) ? fastProxy(req as IncomingMessage, res as ServerResponse) : koa(req, res));
  };
  return app;
}

/** Requests the router would hand to the `/v1/{*path}` routes, spelled exactly. */
export function isFastPath(req: IncomingMessage): boolean {
  const url = req.url;
  if (url === undefined || !url.startsWith('/v1/')) return false;
  const method = req.method;
  return method === 'POST' || method === 'GET' || method === 'DELETE' || method === 'HEAD';
}
