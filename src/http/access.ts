import type { Context, Next } from 'koa';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pino } from 'pino';
import { CLIENT_CLOSED_REQUEST } from '../errors/client-gone.js';
import type { Logger } from '../observability/logger.js';
import { accessLine } from './access-line.js';
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
  // Access lines go straight to the logger's destination, after the logger's own
  // buffered lines: same stream, same format, no per-line serialisation by pino.
  const internals = logger as unknown as Record<symbol, unknown>;
  const destination = internals[pino.symbols.streamSym] as { write(line: string): unknown };
  const bindings = internals[pino.symbols.chindingsSym] as string;

  function complete(record: RequestRecord): void {
    if (record.completed) return;
    record.completed = true;
    metrics.activeRequests--;
    const latencyMs = performance.now() - record.startedAt;
    metrics.requestFinished(record.route, record.status, latencyMs / 1000, record.keyId);
    if (accessLog() && logger.isLevelEnabled('info')) destination.write(accessLine(record, latencyMs, bindings));
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
      slot: null,
      forwarded: false,
      completed: false,
    };
    metrics.activeRequests++;
    metrics.totalRequests++;
    return record;
  }

  function settle(record: RequestRecord, res: ServerResponse): void {
    const finish = (): void => {
      record.clientAborted = !res.writableFinished;
      record.status = record.clientAborted && !res.headersSent ? CLIENT_CLOSED_REQUEST : res.statusCode;
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
