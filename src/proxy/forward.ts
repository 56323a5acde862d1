import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { CLIENT_CLOSED_REQUEST, ClientGoneError } from '../errors/client-gone.js';
import { errorBody } from '../errors/gateway-error.js';
import { fromUpstreamError } from '../errors/upstream-errors.js';
import type { Exchange, ExchangeHandler, UpstreamRequest } from '../upstream/exchange.js';
import type { UpstreamPool } from '../upstream/pool.js';
import type { ResponseHeaders } from '../upstream/response-parser.js';
import { atTurnEnd, uncork } from '../io/turn-end.js';
import { clientResponseHeaders, redactHeaders } from './headers.js';

/** The upstream request, and what the relay needs to answer the client. */
export interface ForwardRequest extends UpstreamRequest {
  readonly requestId: string;
  /**
   * The upstream's own key: removed from error responses before they reach
   * the client, in case an upstream echoes request headers back.
   */
  readonly upstreamKey: string | null;
  /** Rewrites a successful (2xx) response body, which is then held and sent whole; null relays it as it comes. */
  readonly rewriteBody: ((body: Buffer) => Buffer) | null;
}

/** How a forwarded request ended, for metrics and the access log. */
export interface ForwardOutcome {
  status: number;
  /** ms from dispatch to the upstream's response headers; -1 when none came. */
  ttfbMs: number;
  bytesOut: number;
  stream: boolean;
  /** A gateway error code when the exchange failed, else null. */
  errorCode: string | null;
  /** The client went away before the response was complete. */
  clientAborted: boolean;
}

/** Called with the caller's `context` (e.g. its request record), so callers need no per-request closures. */
export interface ForwardHooks<C> {
  onResponseStart(outcome: ForwardOutcome, context: C): void;
  onDone(outcome: ForwardOutcome, error: Error | null, context: C): void;
}

/** Held bodies (errors, model lists) are small; a larger one is refused rather than relayed unchecked. */
const MAX_HELD_BODY = 1024 * 1024;
const REDACTED = '[redacted]';

/** Replaces every occurrence of `secret` in `body`, byte for byte elsewhere. */
export function scrub(body: Buffer, secret: string): Buffer {
  const needle = Buffer.from(secret);
  let at = body.indexOf(needle);
  if (at === -1) return body;
  const parts: Buffer[] = [];
  let from = 0;
  const replacement = Buffer.from(REDACTED);
  while (at !== -1) {
    parts.push(body.subarray(from, at), replacement);
    from = at + needle.length;
    at = body.indexOf(needle, from);
  }
  parts.push(body.subarray(from));
  return Buffer.concat(parts);
}


/**
 * Relays one request to the upstream and its response into `res`, chunk by
 * chunk: backpressure pauses the upstream, a client that goes away aborts it.
 * A chunked response to a chunked client goes out in the upstream's own
 * framing, straight to the socket. Knows nothing of Koa.
 */
export function forward<C>(pool: UpstreamPool, request: ForwardRequest, res: ServerResponse, hooks: ForwardHooks<C>, context: C): void {
  pool.dispatch(request, new RelayHandler<C>(res, request, hooks, context));
}

function endResponse(res: ServerResponse, lastBytes: Buffer | null): void {
  if (res.destroyed) return;
  if (lastBytes === null) res.end();
  else res.end(lastBytes);
}

/** Ends a raw relay: its last bytes are framed already, and leave in one write with the response's last chunk. */
function endRawResponse(res: ServerResponse, lastBytes: Buffer | null): void {
  const socket = res.socket;
  if (lastBytes === null || socket === null || res.destroyed) {
    endResponse(res, lastBytes);
    return;
  }
  socket.cork();
  socket.write(lastBytes);
  res.end();
  socket.uncork();
}

class RelayHandler<C> implements ExchangeHandler {
  readonly #res: ServerResponse;
  readonly #requestId: string;
  readonly #hooks: ForwardHooks<C>;
  readonly #context: C;
  readonly #started = performance.now();
  readonly #outcome: ForwardOutcome = { status: 0, ttfbMs: -1, bytesOut: 0, stream: false, errorCode: null, clientAborted: false };
  readonly #upstreamKey: string | null;
  readonly #rewriteBody: ((body: Buffer) => Buffer) | null;
  #exchange: Exchange | null = null;
  #done = false;
  /** Set while a response is held back whole: an error to scrub of the upstream key, or a body to rewrite. */
  #held: { headers: OutgoingHttpHeaders; chunks: Buffer[]; rewrite: boolean } | null = null;
  /** Set when the body goes out in the upstream's chunked framing, straight to the client's socket. */
  #rawSocket: Socket | null = null;
  /** Paused until the client's side drains. */
  #draining = false;
  /** The body's last bytes, when the upstream's response completes with them: they go out with its end. */
  #lastBytes: Buffer | null = null;

  constructor(res: ServerResponse, request: ForwardRequest, hooks: ForwardHooks<C>, context: C) {
    this.#res = res;
    this.#requestId = request.requestId;
    this.#upstreamKey = request.upstreamKey === '' ? null : request.upstreamKey;
    this.#rewriteBody = request.rewriteBody;
    this.#hooks = hooks;
    this.#context = context;
    res.once('close', this.#onClientClose);
  }

  onStart(exchange: Exchange): void {
    this.#exchange = exchange;
    if (this.#res.destroyed) exchange.abort(new ClientGoneError());
  }

  onHead(statusCode: number, headers: ResponseHeaders, chunked: boolean): boolean {
    const outcome = this.#outcome;
    outcome.status = statusCode;
    outcome.ttfbMs = performance.now() - this.#started;
    const contentType = headers['content-type'];
    outcome.stream = typeof contentType === 'string' && contentType.startsWith('text/event-stream');
    const res = this.#res;
    if (res.destroyed) {
      this.#exchange!.abort(new ClientGoneError());
      return false;
    }
    const relayed = clientResponseHeaders(headers, this.#requestId);
    // Any status: an upstream that echoes the request's Authorization in a header must not hand the key on.
    if (this.#upstreamKey !== null) redactHeaders(relayed, this.#upstreamKey, REDACTED);
    // Chunked coding overrides a Content-Length sent with it (RFC 9112 6.3); relaying it would misframe the answer.
    if (chunked) delete relayed['content-length'];
    const rewrite = this.#rewriteBody !== null && statusCode >= 200 && statusCode < 300;
    let raw = false;
    if (rewrite || (statusCode >= 400 && this.#upstreamKey !== null)) {
      this.#held = { headers: relayed, chunks: [], rewrite };
    } else {
      res.writeHead(statusCode, relayed);
      // Raw relay needs the client's response chunked too, and this response to own the socket (not pipelined behind another).
      const socket = res.socket;
      raw = chunked && res.chunkedEncoding && socket !== null;
      if (raw) {
        // The head usually arrives with the first event: send both in one write.
        socket!.cork();
        res.flushHeaders();
        process.nextTick(uncork, socket);
        this.#rawSocket = socket;
      } else if (outcome.stream) {
        res.flushHeaders();
      }
    }
    this.#hooks.onResponseStart(outcome, this.#context);
    return raw;
  }

  onBody(bytes: Buffer, payload: number, last: boolean): void {
    this.#outcome.bytesOut += payload;
    if (last && this.#held === null) {
      // One call then writes them and ends the response (with the head, when they are all there is).
      this.#lastBytes = bytes;
      return;
    }
    const socket = this.#rawSocket;
    if (socket !== null) {
      if (!socket.write(bytes)) this.#waitForDrain(socket);
      return;
    }
    const held = this.#held;
    if (held !== null) {
      held.chunks.push(bytes);
      if (this.#outcome.bytesOut > MAX_HELD_BODY) this.#exchange!.abort(new Error('upstream body too large to hold'));
      return;
    }
    if (!this.#res.write(bytes)) this.#waitForDrain(this.#res);
  }

  #waitForDrain(writable: Socket | ServerResponse): void {
    // The rest of an upstream read still arrives after the pause: wait for one drain, not one per write.
    if (this.#draining) return;
    this.#draining = true;
    this.#exchange!.pause();
    writable.once('drain', this.#resume);
  }

  onEnd(): void {
    const held = this.#held;
    let lastBytes = this.#lastBytes;
    if (held !== null) {
      this.#held = null;
      let body: Buffer = Buffer.concat(held.chunks);
      if (held.rewrite) body = this.#rewriteBody!(body);
      const key = this.#upstreamKey;
      if (key !== null) {
        body = scrub(body, key);
      }
      held.headers['content-length'] = body.length;
      this.#res.writeHead(this.#outcome.status, held.headers);
      lastBytes = body;
    }
    if (!this.#res.writableEnded) {
      const end = this.#rawSocket === null ? endResponse : endRawResponse;
      // A plain answer ends with the rest of this turn's writes; an event stream's end is never held back.
      if (this.#outcome.stream) end(this.#res, lastBytes);
      else atTurnEnd(end, this.#res, lastBytes);
    }
    this.#finish(null);
  }

  onError(error: Error, appendable: boolean): void {
    const res = this.#res;
    if (error instanceof ClientGoneError || res.destroyed) {
      this.#outcome.clientAborted = true;
      if (this.#outcome.status === 0) this.#outcome.status = CLIENT_CLOSED_REQUEST;
      this.#finish(null);
      return;
    }
    const gatewayError = fromUpstreamError(error);
    this.#outcome.errorCode = gatewayError.code;
    this.#held = null;
    if (!res.headersSent) {
      this.#outcome.status = gatewayError.status;
      const body = errorBody(gatewayError);
      res.writeHead(gatewayError.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-request-id': this.#requestId,
      });
      res.end(body);
    } else if (this.#outcome.stream && appendable) {
      // Headers are gone: end the event stream with an OpenAI-style error event the SDKs raise.
      res.end(`data: ${errorBody(gatewayError)}\n\n`);
    } else {
      // A truncated body (or event) must not look complete: close the connection.
      res.destroy();
    }
    this.#finish(error);
  }

  readonly #resume = (): void => {
    this.#draining = false;
    this.#exchange?.resume();
  };

  readonly #onClientClose = (): void => {
    if (this.#done || this.#res.writableFinished) return;
    this.#exchange?.abort(new ClientGoneError());
  };

  #finish(error: Error | null): void {
    if (this.#done) return;
    this.#done = true;
    this.#res.off('close', this.#onClientClose);
    this.#res.off('drain', this.#resume);
    this.#rawSocket?.off('drain', this.#resume);
    this.#hooks.onDone(this.#outcome, error, this.#context);
  }
}

