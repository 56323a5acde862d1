import { ERROR_CODES, type ErrorCode } from './codes.js';

/** An error the gateway answers with itself; `code` is one of ERROR_CODES. */
export class GatewayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: string;
  readonly param: string | null;
  /** Headers the answer carries besides the error's own (e.g. `retry-after`). */
  readonly headers: Readonly<Record<string, string>> | null;

  /** `type` overrides the code's own where OpenAI varies it (a rate limit is of `requests` or of `tokens`). */
  constructor(code: ErrorCode, message?: string, options?: { param?: string; cause?: unknown; headers?: Record<string, string>; type?: string }) {
    const entry = ERROR_CODES[code];
    super(message ?? entry.message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GatewayError';
    this.code = code;
    this.status = entry.status;
    this.type = options?.type ?? entry.type;
    this.param = options?.param ?? null;
    this.headers = options?.headers ?? null;
  }
}

/** The OpenAI error envelope for a gateway error. */
export function errorBody(error: GatewayError): string {
  return JSON.stringify({
    error: { message: error.message, type: error.type, param: error.param, code: error.code },
  });
}

/**
 * Whatever a stage threw, as the error the client gets: a GatewayError as it
 * is, a router's 404/405 by its status, anything else a 500 whose message
 * reveals nothing.
 */
export function toGatewayError(caught: unknown): GatewayError {
  if (caught instanceof GatewayError) return caught;
  const status = (caught as { status?: unknown } | null)?.status;
  if (status === 405) return new GatewayError('method_not_allowed');
  if (status === 404) return new GatewayError('not_found');
  return new GatewayError('internal_error', undefined, { cause: caught });
}
