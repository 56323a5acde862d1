import type { Context, Next } from 'koa';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import type { RequestRecord } from './request-record.js';
import { requestIdFrom } from './request-id.js';

/**
 * Opens a RequestRecord per request and closes it exactly once: counts,
 * latency histogram and one access log line. Proxied requests complete it
 * when the relay ends; everything else when the response closes.
 */
export function createAccess(metrics: GatewayMetrics, logger: Logger, accessLog: () => boolean) {
  function complete(record: RequestRecord): void {
    if (record.completed) return;
    record.completed = true;
    metrics.activeRequests--;
    const seconds = (performance.now() - record.startedAt) / 1000;
    metrics.requestFinished(record.route, record.status, seconds);
    if (!accessLog()) return;
    logger.info(
      {
        req_id: record.id,
        key_id: record.keyId,
        method: record.method,
        path: record.path,
        model: record.model,
        target_model: record.targetModel,
        upstream: record.upstream,
        status: record.status,
        latency_ms: Math.round(seconds * 1e6) / 1e3,
        ttfb_ms: record.ttfbMs < 0 ? null : Math.round(record.ttfbMs * 1e3) / 1e3,
        bytes_in: record.bytesIn,
        bytes_out: record.bytesOut,
        stream: record.stream,
        error: record.errorCode,
        client_aborted: record.clientAborted || undefined,
      },
      'request',
    );
  }

  async function access(ctx: Context, next: Next): Promise<void> {
    const req = ctx.req;
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const record: RequestRecord = {
      id: requestIdFrom(req.headers['x-request-id']),
      startedAt: performance.now(),
      method: req.method ?? 'GET',
      path: queryAt === -1 ? url : url.slice(0, queryAt),
      route: 'unmatched',
      keyId: null,
      model: null,
      targetModel: null,
      upstream: null,
      status: 0,
      ttfbMs: -1,
      bytesIn: 0,
      bytesOut: 0,
      stream: false,
      errorCode: null,
      clientAborted: false,
      forwarded: false,
      completed: false,
    };
    ctx.state['record'] = record;
    metrics.activeRequests++;
    metrics.totalRequests++;
    try {
      await next();
    } finally {
      if (!record.forwarded) {
        const res = ctx.res;
        const finish = (): void => {
          record.status = res.statusCode;
          record.clientAborted = !res.writableFinished;
          complete(record);
        };
        if (res.writableFinished || res.destroyed) finish();
        else res.once('close', finish);
      }
    }
  }

  return { access, complete };
}
