import type { Readable } from 'node:stream';

/** Response header fields: lower-cased names; a repeated field is an array. */
export type ResponseHeaders = Record<string, string | string[]>;

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query on the upstream. */
  readonly path: string;
  /** Lower-cased names, hop-by-hop headers already removed; `host` is the transport's. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** Text is sent as UTF-8; a Readable without a content-length header is sent in chunked coding. */
  readonly body: string | Buffer | Readable | null;
  /** Longest wait for the response head. */
  readonly headersTimeoutMs: number;
  /** Longest silence inside the response body. */
  readonly idleTimeoutMs: number;
  /**
   * Sent at once rather than with the rest of this turn's writes (io/turn-end):
   * set for event streams, whose client waits on the first byte.
   */
  readonly sendNow: boolean;
  /**
   * On a new connection, not an idle kept-alive one: the request is sent
   * again after a reused connection closed under it (UPSTREAM_STALE_CONNECTION).
   */
  readonly freshConnection?: boolean;
}

/** Receives one response, in order: head, body, end; or an error at any point, after which nothing follows. */
export interface ResponseHandler {
  /** The final (non-1xx) response head. */
  onHead(status: number, headers: ResponseHeaders): void;
  /**
   * Body bytes (decoded: no transfer framing), owned by the handler.
   * `last`: the response completes with these bytes, so they can leave with
   * the end of the relayed response; false promises nothing.
   */
  onBody(bytes: Buffer, last: boolean): void;
  onEnd(): void;
  /**
   * The exchange failed or was aborted; nothing follows. Before the response's
   * head, the error says by its `code` what happened, so the attempt loop can
   * try again (errors/upstream.ts, attemptFailure): a connect failure (the
   * system's codes, UPSTREAM_CONNECT_TIMEOUT, UPSTREAM_CONNECT_FAILED), a
   * headers timeout (UPSTREAM_HEADERS_TIMEOUT), or a close or reset before any
   * response byte: UPSTREAM_STALE_CONNECTION on a reused connection (the
   * upstream never processed the request), UPSTREAM_NO_RESPONSE on a fresh one.
   */
  onError(error: Error): void;
}

/** A transport's caller: handed its exchange on dispatch, before any I/O, to abort it from then on. */
export interface ExchangeHandler extends ResponseHandler {
  onStart(exchange: Exchange): void;
}

/** What a handler can do to its exchange. */
export interface Exchange {
  /** Ends the exchange now; the handler gets `onError(error)`. */
  abort(error: Error): void;
  /** Stops reading the response (backpressure); the body timeout waits too. */
  pause(): void;
  resume(): void;
}

/** Carries requests to one upstream origin. */
export interface Transport {
  dispatch(request: UpstreamRequest, handler: ExchangeHandler): void;
  /** Lets in-flight exchanges finish, then closes. */
  close(): Promise<void>;
  /** Fails what is in flight and closes now. */
  destroy(): Promise<void>;
}
