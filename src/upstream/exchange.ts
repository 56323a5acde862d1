import type { Readable } from 'node:stream';
import type { ResponseHeaders } from './response-parser.js';

export interface UpstreamRequest {
  readonly method: string;
  /** Path and query on the upstream. */
  readonly path: string;
  /** Lower-cased names, hop-by-hop headers already removed; `host` is set by the connection. */
  readonly headers: Readonly<Record<string, string | string[]>>;
  /** A Readable without a content-length header is sent in chunked coding. */
  readonly body: Buffer | string | Readable | null;
  /** Longest wait for the response head. */
  readonly headersTimeoutMs: number;
  /** Longest silence inside the response body. */
  readonly idleTimeoutMs: number;
  /**
   * Sent at once rather than with the rest of this turn's writes (io/turn-end):
   * set for event streams, whose client waits on the first byte.
   */
  readonly sendNow: boolean;
}

/** Receives one response, in order: head, body, end; or an error at any point, after which nothing follows. */
export interface ResponseHandler {
  /** Return true to take a chunked body as raw framing (see ResponseSink.onHead). */
  onHead(status: number, headers: ResponseHeaders, chunked: boolean): boolean;
  /** Body bytes the handler owns; `payload` and `last` as in ResponseSink.onBody. */
  onBody(bytes: Buffer, payload: number, last: boolean): void;
  onEnd(): void;
  /**
   * The exchange failed or was aborted. `appendable`: the body relayed so far
   * ends at a blank line (or is empty) and, if raw, not inside a chunk, so an
   * event-stream error event may follow it.
   */
  onError(error: Error, appendable: boolean): void;
}

/** A pool's caller: also handed its exchange at once on dispatch, before any I/O, to abort it from then on. */
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
