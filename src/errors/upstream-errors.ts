import { GatewayError } from './gateway-error.js';

const TIMEOUT_CODES = new Set(['UPSTREAM_CONNECT_TIMEOUT', 'UPSTREAM_HEADERS_TIMEOUT', 'UPSTREAM_BODY_TIMEOUT', 'ETIMEDOUT']);
/** OpenSSL's certificate verification codes and Node's TLS errors. */
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

/** Maps an upstream connection's or socket's error to the gateway error a client sees (502/504). */
export function fromUpstreamError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error; // e.g. a streamed upload that passed the body limit
  const code = errorCode(error);
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return new GatewayError('upstream_timeout', undefined, { cause: error });
  }
  if (code !== undefined && TLS_CODE.test(code)) {
    return new GatewayError('upstream_tls', undefined, { cause: error });
  }
  if (code === 'UPSTREAM_BAD_RESPONSE') return new GatewayError('upstream_bad_response', undefined, { cause: error });
  // The gateway could not even write the request (e.g. a configured key with a line break): its own fault.
  if (code === 'UPSTREAM_INVALID_HEADER') return new GatewayError('internal_error', undefined, { cause: error });
  if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    return new GatewayError('upstream_unreachable', undefined, { cause: error });
  }
  return new GatewayError('upstream_reset', undefined, { cause: error });
}

/** The first error code on an error or its cause chain. */
function errorCode(error: unknown): string | undefined {
  // Duck-typed: errors from Node's core may come from another realm (e.g. under a test VM).
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
