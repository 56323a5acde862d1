import type { Context, Next } from 'koa';
import { errorBody, GatewayError } from '../errors/gateway-error.js';
import type { Logger } from '../observability/logger.js';
import type { RequestRecord } from './request-record.js';

/**
 * Turns anything thrown below into an OpenAI-shaped error. Unknown errors
 * become a 500 whose message reveals nothing; they are logged with the request id.
 */
export function createErrorHandler(logger: Logger) {
  return async function errorHandler(ctx: Context, next: Next): Promise<void> {
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined && ctx.respond !== false) throw new GatewayError('not_found');
    } catch (caught) {
      const record = ctx.state['record'] as RequestRecord | undefined;
      const error = toGatewayError(caught);
      if (error.code === 'internal_error') logger.error({ err: caught, req_id: record?.id }, 'unhandled error');
      if (record !== undefined) record.errorCode = error.code;
      if (ctx.res.headersSent) {
        ctx.res.destroy();
        return;
      }
      ctx.respond = true;
      ctx.status = error.status;
      ctx.type = 'application/json';
      ctx.body = errorBody(error);
      if (record !== undefined) ctx.set('x-request-id', record.id);
      // Never keep reading a body we refused: close the connection instead of draining it.
      if (!ctx.req.complete) {
        ctx.set('connection', 'close');
        ctx.res.once('finish', () => ctx.req.socket.destroySoon());
      }
    }
  };
}

function toGatewayError(caught: unknown): GatewayError {
  if (caught instanceof GatewayError) return caught;
  const status = (caught as { status?: unknown } | null)?.status;
  if (status === 405) return new GatewayError('method_not_allowed');
  if (status === 404) return new GatewayError('not_found');
  return new GatewayError('internal_error', undefined, { cause: caught });
}
