import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { errorBody } from '../errors/gateway-error.js';
import { fromUpstreamError } from '../errors/upstream-errors.js';
import { clientResponseHeaders } from './headers.js';

export interface ForwardRequest {
  readonly method: string;
  /** Path and query on the upstream. */
  readonly path: string;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer | string | Readable | null;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly requestId: string;
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
export interface ForwardHooks<C = undefined> {
  onResponseStart(outcome: ForwardOutcome, context: C): void;
  onDone(outcome: ForwardOutcome, error: Error | null, context: C): void;
}

class ClientGoneError extends Error {
  readonly code = 'CLIENT_GONE';
  constructor() {
    super('the client closed the connection');
  }
}

/**
 * Relays one request to the upstream and its response into `res`, chunk by
 * chunk: backpressure pauses the upstream, a client that goes away aborts it.
 * Knows nothing of Koa.
 */
export function forward<C>(dispatcher: Dispatcher, request: ForwardRequest, res: ServerResponse, hooks: ForwardHooks<C>, context: C): void;
export function forward(dispatcher: Dispatcher, request: ForwardRequest, res: ServerResponse, hooks: ForwardHooks<undefined>): void;
export function forward<C>(dispatcher: Dispatcher, request: ForwardRequest, res: ServerResponse, hooks: ForwardHooks<C>, context?: C): void {
  const handler = new RelayHandler<C>(res, request.requestId, hooks, context as C);
  dispatcher.dispatch(
    {
      method: request.method as Dispatcher.HttpMethod,
      path: request.path,
      headers: request.headers,
      body: request.body,
      headersTimeout: request.headersTimeoutMs,
      bodyTimeout: request.idleTimeoutMs,
    },
    handler,
  );
}

class RelayHandler<C> implements Dispatcher.DispatchHandler {
  readonly #res: ServerResponse;
  readonly #requestId: string;
  readonly #hooks: ForwardHooks<C>;
  readonly #context: C;
  readonly #started = performance.now();
  readonly #outcome: ForwardOutcome = { status: 0, ttfbMs: -1, bytesOut: 0, stream: false, errorCode: null, clientAborted: false };
  #controller: Dispatcher.DispatchController | null = null;
  #done = false;

  constructor(res: ServerResponse, requestId: string, hooks: ForwardHooks<C>, context: C) {
    this.#res = res;
    this.#requestId = requestId;
    this.#hooks = hooks;
    this.#context = context;
    res.once('close', this.#onClientClose);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#res.destroyed) controller.abort(new ClientGoneError());
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const outcome = this.#outcome;
    outcome.status = statusCode;
    outcome.ttfbMs = performance.now() - this.#started;
    const contentType = headers['content-type'];
    outcome.stream = typeof contentType === 'string' && contentType.startsWith('text/event-stream');
    if (this.#res.destroyed) {
      controller.abort(new ClientGoneError());
      return;
    }
    this.#res.writeHead(statusCode, clientResponseHeaders(headers, this.#requestId));
    if (outcome.stream) this.#res.flushHeaders();
    this.#hooks.onResponseStart(outcome, this.#context);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#outcome.bytesOut += chunk.length;
    if (!this.#res.write(chunk)) {
      controller.pause();
      this.#res.once('drain', this.#resume);
    }
  }

  onResponseEnd(): void {
    this.#res.end();
    this.#finish(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    const res = this.#res;
    if (error instanceof ClientGoneError || res.destroyed) {
      this.#outcome.clientAborted = true;
      if (this.#outcome.status === 0) this.#outcome.status = 499;
      this.#finish(null);
      return;
    }
    const gatewayError = fromUpstreamError(error);
    this.#outcome.errorCode = gatewayError.code;
    if (!res.headersSent) {
      this.#outcome.status = gatewayError.status;
      const body = errorBody(gatewayError);
      res.writeHead(gatewayError.status, {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(body),
        'x-request-id': this.#requestId,
      });
      res.end(body);
    } else if (this.#outcome.stream) {
      // Headers are gone: end the event stream with an OpenAI-style error event the SDKs raise.
      res.end(`data: ${errorBody(gatewayError)}\n\n`);
    } else {
      // A truncated body must not look complete: close the connection.
      res.destroy();
    }
    this.#finish(error);
  }

  readonly #resume = (): void => {
    this.#controller?.resume();
  };

  readonly #onClientClose = (): void => {
    if (this.#done || this.#res.writableFinished) return;
    this.#controller?.abort(new ClientGoneError());
  };

  #finish(error: Error | null): void {
    if (this.#done) return;
    this.#done = true;
    this.#res.off('close', this.#onClientClose);
    this.#res.off('drain', this.#resume);
    this.#hooks.onDone(this.#outcome, error, this.#context);
  }
}

