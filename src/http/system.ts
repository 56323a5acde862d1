import Router from '@koa/router';
import Koa, { type Context, type Next } from 'koa';
import type { RequestListener } from 'node:http';
import { GatewayError } from '../errors/gateway-error.js';
import type { LingerLimits } from '../io/lingering-close.js';
import type { MetricsReport } from '../observability/metrics-report.js';
import type { RequestAccounting } from '../pipeline/account.js';
import { RequestLifecycle } from '../pipeline/lifecycle.js';
import type { Readiness } from './readiness.js';

const PROMETHEUS_ACCEPT = /text\/plain|application\/openmetrics-text/i;

function lifecycle(ctx: Context): RequestLifecycle {
  return ctx.state['lifecycle'] as RequestLifecycle;
}

/** Liveness: the seed's JSON. Depends on nothing external, so a control-plane blip never kills a pod. */
function health(ctx: Context): void {
  lifecycle(ctx).record.route = 'health';
  ctx.body = { status: 'healthy', time: new Date().toISOString() };
}

/**
 * The gateway's own endpoints, a small Koa app: /health, /health/ready,
 * /metrics (the seed's JSON by default; Prometheus text when the Accept
 * header asks for it, as Prometheus does), and the OpenAI-shaped 404/405 for
 * everything else outside /v1. Each request has a lifecycle like a proxied
 * one: the same record, access line and error answers.
 */
export function createSystemApp(readiness: Readiness, report: MetricsReport, accounting: RequestAccounting, linger: LingerLimits): RequestListener {
  const router = new Router();
  router.get('/health', health);
  router.get('/health/ready', (ctx: Context) => {
    lifecycle(ctx).record.route = 'health';
    const blocker = readiness.blocker();
    ctx.status = blocker === null ? 200 : 503;
    ctx.body = blocker === null ? { status: 'ready' } : { status: 'not_ready', reason: blocker };
  });
  router.get('/metrics', async (ctx: Context) => {
    lifecycle(ctx).record.route = 'metrics';
    if (PROMETHEUS_ACCEPT.test(ctx.get('accept'))) {
      ctx.body = await report.prometheus();
      ctx.type = report.contentType;
      return;
    }
    ctx.body = await report.json();
  });

  const app = new Koa();
  app.silent = true; // errors are answered by the lifecycle, which logs the unexpected ones
  app.use(async (ctx: Context, next: Next) => {
    // Probes and scrapes are not traced: they would bury the requests that matter.
    const owner = new RequestLifecycle(ctx.req, ctx.res, accounting, null, linger);
    ctx.state['lifecycle'] = owner;
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) throw new GatewayError('not_found');
    } catch (caught) {
      ctx.respond = false;
      owner.fail(caught);
    }
  });
  app.use(router.routes());
  app.use(router.allowedMethods({ throw: true }));
  const callback = app.callback();
  // Koa's callback answers every error itself (the middleware above), so its promise is never left to reject.
  return (req, res) => void callback(req, res);
}
