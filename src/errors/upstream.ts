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

const TIMEOUT_CODES = new Set(['UPSTREAM_CONNECT_TIMEOUT', 'UPSTREAM_HEADERS_TIMEOUT', 'UPSTREAM_BODY_TIMEOUT', 'ETIMEDOUT']);
/** OpenSSL's certificate verification codes and Node's TLS errors. */
const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH)/;
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'UPSTREAM_CONNECT_FAILED']);

/** Maps an upstream exchange's error to the gateway error a client sees (502/504). The one place that decides it. */
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

/**
 * What went wrong with an attempt that ended before its answer's head, as the
 * attempt loop (pipeline/forward.ts) sees it. A transport reports these by
 * code, whatever its library: connect failures by the system's or its own
 * connect codes, `UPSTREAM_HEADERS_TIMEOUT`, `UPSTREAM_NO_RESPONSE` and
 * `UPSTREAM_STALE_CONNECTION` (reset or closed before any response byte, on a
 * fresh or a reused connection).
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
  if (code === 'UPSTREAM_NO_RESPONSE') return 'reset';
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
