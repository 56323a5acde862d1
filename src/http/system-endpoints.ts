import type { Context } from 'koa';
import type { MetricsReport } from '../observability/metrics-report.js';
import type { Readiness } from './readiness.js';
import type { RequestRecord } from './request-record.js';

function record(ctx: Context): RequestRecord {
  return ctx.state['record'] as RequestRecord;
}

/** Liveness: the seed's JSON. Depends on nothing external, so a control-plane blip never kills a pod. */
export function health(ctx: Context): void {
  record(ctx).route = 'health';
  ctx.body = { status: 'healthy', time: new Date().toISOString() };
}

export function createReady(readiness: Readiness) {
  return function ready(ctx: Context): void {
    record(ctx).route = 'health';
    const blocker = readiness.blocker();
    ctx.status = blocker === null ? 200 : 503;
    ctx.body = blocker === null ? { status: 'ready' } : { status: 'not_ready', reason: blocker };
  };
}

const PROMETHEUS_ACCEPT = /text\/plain|application\/openmetrics-text/i;

/** The seed's JSON by default; Prometheus text when the Accept header asks for it (as Prometheus does). */
export function createMetricsEndpoint(report: MetricsReport) {
  return async function metricsEndpoint(ctx: Context): Promise<void> {
    record(ctx).route = 'metrics';
    const accept = ctx.get('accept');
    if (PROMETHEUS_ACCEPT.test(accept)) {
      ctx.body = await report.prometheus();
      ctx.type = report.contentType;
      return;
    }
    ctx.body = await report.json();
  };
}
