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

/** The upstream's bytes are not a valid HTTP/1.1 response. */
export class BadResponseError extends UpstreamError {
  readonly code = 'UPSTREAM_BAD_RESPONSE';
  constructor(reason: string) {
    super(`invalid response from the upstream: ${reason}`);
    this.name = 'BadResponseError';
  }
}

/** The pool was destroyed (shutdown) with the request still queued or in flight. */
export class PoolClosedError extends UpstreamError {
  readonly code = 'UPSTREAM_POOL_CLOSED';
  constructor() {
    super('the upstream connection pool was closed');
    this.name = 'PoolClosedError';
  }
}
