import { GatewayError } from './gateway-error.js';

/** Failures of an upstream exchange that are not plain socket errors; each has a stable `code`. */
export abstract class UpstreamError extends Error {
  abstract readonly code: string;
}

export class ConnectTimeoutError extends UpstreamError {
  readonly code = 'UPSTREAM_CONNECT_TIMEOUT';
  constructor(ms: number) {
    super(`no connection to the upstream within ${ms} ms`);
    this.name = 'ConnectTimeoutError';
  }
}

export class HeadersTimeoutError extends UpstreamError {
  readonly code = 'UPSTREAM_HEADERS_TIMEOUT';
  constructor(ms: number) {
    super(`no response headers from the upstream within ${ms} ms`);
    this.name = 'HeadersTimeoutError';
  }
}

export class BodyTimeoutError extends UpstreamError {
  readonly code = 'UPSTREAM_BODY_TIMEOUT';
  constructor(ms: number) {
    super(`the upstream sent no body bytes for ${ms} ms`);
    this.name = 'BodyTimeoutError';
  }
}

/** The upstream closed the connection before the response was complete. */
export class UpstreamClosedError extends UpstreamError {
  readonly code = 'UPSTREAM_CLOSED';
  constructor() {
    super('the upstream closed the connection before the response was complete');
    this.name = 'UpstreamClosedError';
  }
}

/**
 * The request was written and the connection then closed or broke before a
 * single byte of the response came. On a fresh connection the upstream may
 * have processed the request; see StaleConnectionError for a reused one.
 */
export class NoResponseError extends UpstreamError {
  readonly code = 'UPSTREAM_NO_RESPONSE';
  constructor(cause?: unknown) {
    super('the upstream closed the connection before any byte of its response', cause === undefined ? undefined : { cause });
    this.name = 'NoResponseError';
  }
}

/**
 * A request written on a reused keep-alive connection that closed before any
 * response byte: the upstream closed an idle connection as the request went
 * out, so it never processed it. Safe to send again on a fresh connection.
 */
export class StaleConnectionError extends UpstreamError {
  readonly code = 'UPSTREAM_STALE_CONNECTION';
  constructor(cause?: unknown) {
    super('the reused upstream connection was closed before any byte of the response', cause === undefined ? undefined : { cause });
    this.name = 'StaleConnectionError';
  }
}

/** The connection could not be made (nothing was sent), for a cause that carries no connect code of its own. */
export class ConnectFailedError extends UpstreamError {
  readonly code = 'UPSTREAM_CONNECT_FAILED';
  constructor(cause: unknown) {
    super('the connection to the upstream could not be made', { cause });
    this.name = 'ConnectFailedError';
  }
}

/** The upstream's bytes are not a valid HTTP/1.1 response. */
export class BadResponseError extends UpstreamError {
  readonly code = 'UPSTREAM_BAD_RESPONSE';
  constructor(reason: string) {
    super(`invalid response from the upstream: ${reason}`);
    this.name = 'BadResponseError';
  }
}

/** The transport was destroyed (shutdown) with the request in flight. */
export class PoolClosedError extends UpstreamError {
  readonly code = 'UPSTREAM_POOL_CLOSED';
  constructor() {
    super('the upstream connection pool was closed');
    this.name = 'PoolClosedError';
  }
}

/** A header value the gateway may not send (e.g. a configured key with a trailing newline). */
export class InvalidHeaderError extends UpstreamError {
  readonly code = 'UPSTREAM_INVALID_HEADER';
  constructor(name: string) {
    super(`the value of header '${name}' contains a line break or NUL`);
    this.name = 'InvalidHeaderError';
  }
}

/** The connection to the upstream's forward proxy failed (refused, no such host, ...): `cause` says how. */
export class ProxyUnreachableError extends UpstreamError {
  readonly code = 'UPSTREAM_PROXY_UNREACHABLE';
  constructor(cause: Error) {
    super('the egress proxy could not be reached', { cause });
    this.name = 'ProxyUnreachableError';
  }
}

/** The proxy answered 407: no credentials, or not these. */
export class ProxyAuthError extends UpstreamError {
  readonly code = 'UPSTREAM_PROXY_AUTH';
  constructor() {
    super('the egress proxy wants other credentials (407)');
    this.name = 'ProxyAuthError';
  }
}

/** The proxy answered a CONNECT with a status other than 200 (and 407). */
export class ProxyRefusedError extends UpstreamError {
  readonly code = 'UPSTREAM_PROXY_REFUSED';
  readonly status: number;
  constructor(status: number) {
    super(`the egress proxy answered the tunnel request with ${status}`);
    this.name = 'ProxyRefusedError';
    this.status = status;
  }
}

/** `http2: on` and the upstream's TLS handshake chose another protocol (ALPN). */
export class Http2UnavailableError extends UpstreamError {
  readonly code = 'UPSTREAM_NO_HTTP2';
  constructor(protocol: string) {
    super(`the upstream chose ${protocol} over h2 in the TLS handshake`);
    this.name = 'Http2UnavailableError';
  }
}

const TIMEOUT_CODES = new Set([
  'UPSTREAM_CONNECT_TIMEOUT',
  'UPSTREAM_HEADERS_TIMEOUT',
  'UPSTREAM_BODY_TIMEOUT',
  'ETIMEDOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
]);
/** undici's and Node's codes for a response that breaks HTTP/1.1 or HTTP/2 (llhttp's HPE_* are matched apart). */
const BAD_RESPONSE_CODES = new Set([
  'UPSTREAM_BAD_RESPONSE',
  'UND_ERR_HEADERS_OVERFLOW',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_RES_EXCEEDED_MAX_SIZE',
  'UND_ERR_INFO',
  'ERR_HTTP2_PROTOCOL_ERROR',
  'ERR_HTTP2_ERROR',
]);
/** The gateway could not send its own request (a header value with a line break, say): its own fault. */
const OWN_FAULT_CODES = new Set(['UPSTREAM_INVALID_HEADER', 'UND_ERR_INVALID_ARG', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH']);
/** A proxy's answer to CONNECT that says the upstream is out of its reach, not that it refuses. */
const PROXY_COULD_NOT_REACH = new Set([502, 503, 504]);
/** OpenSSL's certificate verification codes, Node's TLS errors, and OpenSSL's own (a CA file it cannot read). */
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|ERR_OSSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UPSTREAM_CONNECT_FAILED']);

/** Maps an upstream exchange's error to the gateway error a client sees (502/504). The one place that decides it. */
export function fromUpstreamError(error: unknown): GatewayError {
  if (error instanceof GatewayError) return error; // e.g. a streamed upload that passed the body limit
  const code = errorCode(error);
  if (code === undefined) return new GatewayError('upstream_reset', undefined, { cause: error });
  if (TIMEOUT_CODES.has(code)) {
    return new GatewayError('upstream_timeout', undefined, { cause: error });
  }
  if (TLS_CODE.test(code)) {
    return new GatewayError('upstream_tls', undefined, { cause: error });
  }
  switch (code) {
    case 'UPSTREAM_PROXY_UNREACHABLE':
    case 'UND_ERR_PRX_CONN': // the proxy closed the connection before answering CONNECT
    case 'UND_ERR_PRX_TLS': // an https proxy's certificate does not name it
      return new GatewayError('upstream_proxy_unreachable', undefined, { cause: error });
    case 'UPSTREAM_PROXY_AUTH':
      return new GatewayError('upstream_proxy_auth', undefined, { cause: error });
    case 'UPSTREAM_PROXY_REFUSED': {
      const status = (error as ProxyRefusedError).status;
      if (PROXY_COULD_NOT_REACH.has(status)) {
        return new GatewayError('upstream_unreachable', `The upstream could not be reached (the egress proxy answered ${status}).`, { cause: error });
      }
      return new GatewayError('upstream_proxy_refused', `The egress proxy refused to connect to the upstream (${status}).`, { cause: error });
    }
    case 'UPSTREAM_NO_HTTP2':
      return new GatewayError('upstream_http2_unavailable', undefined, { cause: error });
  }
  if (BAD_RESPONSE_CODES.has(code) || code.startsWith('HPE_')) {
    return new GatewayError('upstream_bad_response', undefined, { cause: error });
  }
  if (OWN_FAULT_CODES.has(code)) return new GatewayError('internal_error', undefined, { cause: error });
  if (UNREACHABLE_CODES.has(code)) {
    return new GatewayError('upstream_unreachable', undefined, { cause: error });
  }
  return new GatewayError('upstream_reset', undefined, { cause: error });
}

/**
 * What went wrong with an attempt that ended before its answer's head, as the
 * attempt loop (pipeline/forward.ts) sees it. A transport reports these by
 * code, whatever its library: connect failures by the system's or its own
 * connect codes, `UPSTREAM_HEADERS_TIMEOUT`, `UPSTREAM_NO_RESPONSE` and
 * `UPSTREAM_STALE_CONNECTION` (reset or closed before any response byte, on a
 * fresh or a reused connection); undici's own codes for the same
 * (`UND_ERR_CONNECT_TIMEOUT`, `UND_ERR_HEADERS_TIMEOUT`, `UND_ERR_SOCKET`).
 */
export type AttemptFailure = 'connect_failure' | 'timeout' | 'reset' | 'stale_connection' | 'client_gone' | 'error';

const CONNECT_CODES = new Set([...UNREACHABLE_CODES, 'UPSTREAM_CONNECT_TIMEOUT', 'UND_ERR_CONNECT_TIMEOUT']);
const HEADERS_TIMEOUT_CODES = new Set(['UPSTREAM_HEADERS_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT']);

/** Classifies an error that ended an attempt before its answer's head. */
export function attemptFailure(error: unknown): AttemptFailure {
  const code = errorCode(error);
  if (code === undefined) return 'error';
  if (code === 'CLIENT_GONE') return 'client_gone';
  if (CONNECT_CODES.has(code) || TLS_CODE.test(code)) return 'connect_failure';
  if (HEADERS_TIMEOUT_CODES.has(code)) return 'timeout';
  // undici's socket error before the head: the connection closed or broke after the request, before any response byte
  // (undici cannot say whether the connection was reused, so its stale case counts as a reset).
  if (code === 'UPSTREAM_NO_RESPONSE' || code === 'UND_ERR_SOCKET') return 'reset';
  if (code === 'UPSTREAM_STALE_CONNECTION') return 'stale_connection';
  return 'error';
}

const TIMEOUT_PHASES: Record<string, 'connect' | 'headers' | 'idle'> = {
  UPSTREAM_CONNECT_TIMEOUT: 'connect',
  UPSTREAM_HEADERS_TIMEOUT: 'headers',
  UPSTREAM_BODY_TIMEOUT: 'idle',
  UND_ERR_CONNECT_TIMEOUT: 'connect',
  UND_ERR_HEADERS_TIMEOUT: 'headers',
  UND_ERR_BODY_TIMEOUT: 'idle',
};

/** Which of an upstream's timeouts an error is (connect, headers, idle), or null when it is none. */
export function timeoutPhase(error: unknown): 'connect' | 'headers' | 'idle' | null {
  const code = errorCode(error);
  return code === undefined ? null : (TIMEOUT_PHASES[code] ?? null);
}

/** The first error code on an error or its cause chain. */
export function errorCode(error: unknown): string | undefined {
  // Duck-typed: errors from Node's core may come from another realm (e.g. under a test VM).
  let current: unknown = error;
  for (let depth = 0; depth < 4 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}
