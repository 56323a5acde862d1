import type { Context, Next } from 'koa';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { ClientGoneError } from '../errors/client-gone.js';
import { errorBody, GatewayError } from '../errors/gateway-error.js';
import type { Logger } from '../observability/logger.js';
import type { RequestRecord } from './request-record.js';

/**
 * Koa middleware: turns anything thrown below into an OpenAI-shaped error.
 * Unknown errors become a 500 whose message reveals nothing; they are logged
 * with the request id.
 */
export function createErrorHandler(logger: Logger) {
  return async function errorHandler(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) throw new GatewayError('not_found');
    } catch (caught) {
      ctx.respond = false;
      respondWithError(ctx.req, ctx.res, ctx.state['record'] as RequestRecord, caught, logger);
    }
  };
}

/** Writes a caught error as the OpenAI error envelope, straight to the Node response. */
export function respondWithError(req: IncomingMessage, res: ServerResponse, record: RequestRecord, caught: unknown, logger: Logger): void {
  if (caught instanceof ClientGoneError || res.destroyed) {
    res.destroy(); // nobody to answer; the record is settled as a client abort
    return;
  }
  const error = toGatewayError(caught);
  if (error.code === 'internal_error') logger.error({ err: caught, req_id: record.id }, 'unhandled error');
  record.errorCode = error.code;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = errorBody(error);
  const headers: OutgoingHttpHeaders = {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': record.id,
    ...error.headers,
  };
  // Never keep reading a body we refused: close the connection instead of draining it.
  if (!req.complete) {
    headers['connection'] = 'close';
    res.once('finish', () => req.socket.destroySoon());
  }
  res.writeHead(error.status, headers);
  if (req.method === 'HEAD') res.end();
  else res.end(body);
}

function toGatewayError(caught: unknown): GatewayError {
  if (caught instanceof GatewayError) return caught;
  const status = (caught as { status?: unknown } | null)?.status;
  if (status === 405) return new GatewayError('method_not_allowed');
  if (status === 404) return new GatewayError('not_found');
  return new GatewayError('internal_error', undefined, { cause: caught });
}
