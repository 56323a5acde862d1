import { connect as connectTcp, type Socket } from 'node:net';
import type { Readable } from 'node:stream';
import {
  attemptFailure,
  BodyTimeoutError,
  ConnectFailedError,
  ConnectTimeoutError,
  HeadersTimeoutError,
  NoResponseError,
  StaleConnectionError,
  UpstreamClosedError,
} from '../../errors/upstream.js';
import { atTurnEnd, uncork } from '../../io/turn-end.js';
import type { Exchange, ResponseHandler, ResponseHeaders, UpstreamRequest } from '../types.js';
import { requestHead } from './request-head.js';
import { ResponseParser, type ResponseSink } from './response-parser.js';

/** Where a connection goes (plain TCP: https is undici's, see ../transports.ts). */
export interface Endpoint {
  readonly hostname: string;
  readonly port: number;
  /** The Host header. */
  readonly host: string;
  readonly connectTimeoutMs: number;
}

/** The pool's side of a connection. */
export interface ConnectionOwner {
  /** The exchange finished and the connection may carry another request; `keepAliveMs` is the upstream's hint. */
  release(connection: UpstreamConnection, keepAliveMs: number | null): void;
  /** The connection is gone. */
  remove(connection: UpstreamConnection): void;
}

/**
 * Plain TCP reads land in one buffer shared by every connection: a read is
 * handled before the next one starts, and whatever outlives it is copied.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);
const LAST_CHUNK = '0\r\n\r\n';

/**
 * One keep-alive HTTP/1.1 connection to a plain-http upstream, carrying one
 * exchange at a time. Reads bypass Node's stream machinery (`onread`): the
 * relay of an event stream is one read and one write per event. Kept beside
 * undici for plain HTTP/1.1 upstreams without a proxy (docs/performance.md,
 * "Hand-written where a library exists").
 */
export class UpstreamConnection implements ResponseSink, Exchange {
  readonly #owner: ConnectionOwner;
  readonly #endpoint: Endpoint;
  readonly #socket: Socket;
  readonly #parser: ResponseParser;
  #connected = false;
  #closed = false;
  #handler: ResponseHandler | null = null;
  #request: UpstreamRequest | null = null;
  /** Stops a request body still being streamed. */
  #stopUpload: (() => void) | null = null;
  #paused = false;
  /** Exchanges this connection has completed: a request on a connection that completed one went out on a reused connection. */
  #completed = 0;
  /** The current exchange runs on a reused connection. */
  #reused = false;
  /** Some byte of the current exchange's response came. */
  #answered = false;

  constructor(owner: ConnectionOwner, endpoint: Endpoint) {
    this.#owner = owner;
    this.#endpoint = endpoint;
    this.#parser = new ResponseParser(this);
    this.#socket = connectTcp({
      host: endpoint.hostname,
      port: endpoint.port,
      noDelay: true,
      keepAlive: true,
      keepAliveInitialDelay: 60_000,
      onread: { buffer: READ_BUFFER, callback: this.#onRead },
    });
    this.#socket.once('connect', this.#onConnect);
    this.#socket.setTimeout(endpoint.connectTimeoutMs);
    this.#socket.on('timeout', this.#onTimeout);
    this.#socket.on('error', this.#onSocketError);
    this.#socket.on('end', this.#onEnd);
    this.#socket.on('close', this.#onClose);
  }

  /** Sends `request`; the connection must be idle. */
  run(request: UpstreamRequest, handler: ResponseHandler): void {
    this.#handler = handler;
    this.#request = request;
    this.#paused = false;
    this.#reused = this.#completed > 0;
    this.#answered = false;
    this.#parser.reset(request.method !== 'HEAD');
    if (this.#connected) this.#socket.setTimeout(request.headersTimeoutMs);
    try {
      this.#write(request);
    } catch (error) {
      this.#fail(error as Error);
    }
  }

  /** Waits for the next request for at most `ms`, then closes. */
  idle(ms: number): void {
    this.#socket.setTimeout(ms);
  }

  /** Closes the connection, failing its exchange (if any) with `error`. */
  destroy(error: Error): void {
    if (this.#handler !== null) this.#fail(error);
    else this.#close();
  }

  abort(error: Error): void {
    if (this.#handler !== null) this.#fail(error);
  }

  pause(): void {
    if (this.#paused || this.#handler === null) return;
    this.#paused = true;
    this.#socket.pause();
    this.#socket.setTimeout(0); // a slow client is not a silent upstream
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#socket.resume();
    if (this.#handler !== null) this.#socket.setTimeout(this.#request!.idleTimeoutMs);
  }

  onHead(status: number, headers: ResponseHeaders): void {
    const handler = this.#handler;
    if (handler === null) return;
    if (!this.#paused) this.#socket.setTimeout(this.#request!.idleTimeoutMs);
    handler.onHead(status, headers);
  }

  onBody(bytes: Buffer, last: boolean): void {
    // Bytes from the shared read buffer are copied before a handler keeps them.
    this.#handler?.onBody(Buffer.from(bytes), last);
  }

  #write(request: UpstreamRequest): void {
    const socket = this.#socket;
    const body = request.body;
    if (body === null || typeof body === 'string' || Buffer.isBuffer(body)) {
      const head = requestHead(request.method, request.path, this.#endpoint.host, request.headers, false);
      // Head and body leave in one write: at once, or with the rest of this turn's writes.
      socket.cork();
      socket.write(head, 'latin1');
      if (body !== null && body.length > 0) socket.write(body);
      if (request.sendNow) process.nextTick(uncork, socket);
      else atTurnEnd(uncork, socket, null);
      return;
    }
    const chunked = request.headers['content-length'] === undefined;
    socket.write(requestHead(request.method, request.path, this.#endpoint.host, request.headers, chunked), 'latin1');
    this.#upload(body, chunked);
  }

  /** Streams a request body, with backpressure both ways. */
  #upload(body: Readable, chunked: boolean): void {
    const socket = this.#socket;
    const onData = (data: Buffer | string): void => {
      const chunk = typeof data === 'string' ? Buffer.from(data) : data;
      if (chunk.length === 0) return; // an empty chunk would end the body
      let written: boolean;
      if (chunked) {
        socket.write(`${chunk.length.toString(16)}\r\n`);
        socket.write(chunk);
        written = socket.write('\r\n');
      } else {
        written = socket.write(chunk);
      }
      if (!written) {
        body.pause();
        socket.once('drain', () => body.resume());
      }
    };
    const onEnd = (): void => {
      detach();
      if (chunked) socket.write(LAST_CHUNK);
    };
    const onError = (error: Error): void => {
      const current = this.#stopUpload === detach;
      detach();
      if (current) this.#fail(error);
    };
    const detach = (): void => {
      body.off('data', onData).off('end', onEnd).off('error', onError);
      if (this.#stopUpload === detach) this.#stopUpload = null;
    };
    this.#stopUpload = detach;
    body.on('data', onData).on('end', onEnd).on('error', onError);
  }

  readonly #onConnect = (): void => {
    this.#connected = true;
    this.#socket.setTimeout(this.#handler === null ? 0 : this.#request!.headersTimeoutMs);
  };

  readonly #onRead = (length: number, buffer: Uint8Array): boolean => {
    this.#onData((buffer as Buffer).subarray(0, length));
    return true;
  };

  readonly #onData = (data: Buffer): void => {
    const handler = this.#handler;
    if (handler === null) {
      // Bytes nobody asked for: the connection's framing can no longer be trusted.
      this.#close();
      return;
    }
    this.#answered = true;
    let complete: boolean;
    try {
      complete = this.#parser.feed(data);
    } catch (error) {
      if (this.#handler === handler) this.#fail(error as Error);
      return;
    }
    if (complete && this.#handler === handler) this.#complete();
  };

  #complete(): void {
    const handler = this.#handler!;
    const parser = this.#parser;
    this.#handler = null;
    this.#request = null;
    this.#completed++;
    // A response that came before its request body was sent leaves the connection mid-request.
    const reusable = parser.reusable && this.#stopUpload === null;
    this.#stopUpload?.();
    if (this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
    handler.onEnd();
    if (reusable) this.#owner.release(this, parser.keepAliveMs);
    else this.#close();
  }

  #fail(error: Error): void {
    const handler = this.#handler;
    this.#handler = null;
    this.#request = null;
    this.#stopUpload?.();
    this.#parser.close();
    this.#close();
    handler?.onError(error);
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
    this.#owner.remove(this);
  }

  readonly #onTimeout = (): void => {
    const request = this.#request;
    if (request === null) {
      this.#close(); // idle past the keep-alive time, or a connect nobody waits for
    } else if (!this.#connected) {
      this.#fail(new ConnectTimeoutError(this.#endpoint.connectTimeoutMs));
    } else if (!this.#parser.headComplete) {
      this.#fail(new HeadersTimeoutError(request.headersTimeoutMs));
    } else {
      this.#fail(new BodyTimeoutError(request.idleTimeoutMs));
    }
  };

  readonly #onSocketError = (error: Error): void => {
    if (this.#handler !== null) this.#fail(this.#broken(error));
    else this.#close();
  };

  readonly #onEnd = (): void => {
    if (this.#handler !== null && this.#parser.finish()) this.#complete();
    this.#onClose();
  };

  readonly #onClose = (): void => {
    if (this.#handler !== null) this.#fail(this.#broken(new UpstreamClosedError()));
    else this.#close();
  };

  /**
   * The connection broke (`error`) with an exchange on it: said so the attempt
   * loop can tell whether the request was sent and whether the upstream can
   * have processed it (errors/upstream.ts, attemptFailure).
   */
  #broken(error: Error): Error {
    if (!this.#connected) return attemptFailure(error) === 'connect_failure' ? error : new ConnectFailedError(error);
    if (this.#answered) return error;
    return this.#reused ? new StaleConnectionError(error) : new NoResponseError(error);
  }
}
