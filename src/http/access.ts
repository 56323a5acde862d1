import type { Context, Next } from 'koa';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observability/logger.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import type { RequestRecord } from './request-record.js';
import { requestIdFrom } from './request-id.js';

export interface Access {
  /** Koa middleware: opens the record, settles it when a non-proxied response closes. */
  access(ctx: Context, next: Next): Promise<void>;
  /** Opens a RequestRecord for a request and counts it as active. */
  open(req: IncomingMessage): RequestRecord;
  /** For a request the proxy did not take over: completes the record once the response is done. */
  settle(record: RequestRecord, res: ServerResponse): void;
  /** Closes a record exactly once: counts, latency histogram and one access log line. */
  complete(record: RequestRecord): void;
}

/**
 * Opens a RequestRecord per request and closes it exactly once: counts,
 * latency histogram and one access log line. Proxied requests complete it
 * when the relay ends; everything else when the response closes.
 */
export function createAccess(metrics: GatewayMetrics, logger: Logger, accessLog: () => boolean): Access {
  // Access lines carry no secret by construction (ids only), so they skip the
  // redaction pass the main logger runs on every line; the level still follows
  // the main logger's (checked per line, as reloads may change it).
  const accessLogger = logger.child({}, { level: 'info', redact: [] });

  function complete(record: RequestRecord): void {
    if (record.completed) return;
    record.completed = true;
    metrics.activeRequests--;
    const seconds = (performance.now() - record.startedAt) / 1000;
    metrics.requestFinished(record.route, record.status, seconds, record.keyId);
    if (!accessLog() || !logger.isLevelEnabled('info')) return;
    accessLogger.info(
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

  function open(req: IncomingMessage): RequestRecord {
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
    metrics.activeRequests++;
    metrics.totalRequests++;
    return record;
  }

  function settle(record: RequestRecord, res: ServerResponse): void {
    const finish = (): void => {
      record.status = res.statusCode;
      record.clientAborted = !res.writableFinished;
      complete(record);
    };
    if (res.writableFinished || res.destroyed) finish();
    else res.once('close', finish);
  }

  async function access(ctx: Context, next: Next): Promise<void> {
    const record = open(ctx.req);
    ctx.state['record'] = record;
    try {
      await next();
    } finally {
      if (!record.forwarded) settle(record, ctx.res);
    }
  }

  return { access, open, settle, complete };
}
