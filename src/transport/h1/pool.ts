import { PoolClosedError } from '../../errors/upstream.js';
import type { Exchange, ExchangeHandler, ResponseHandler, ResponseHeaders, Transport, UpstreamRequest } from '../types.js';
import { UpstreamConnection, type ConnectionOwner, type Endpoint } from './connection.js';

export interface PoolOptions {
  /** http://host[:port] */
  readonly origin: string;
  /** Idle connections kept for reuse; one freed past this is closed. */
  readonly maxIdle: number;
  readonly connectTimeoutMs: number;
  /** How long an idle connection is kept (shortened to 1 s under an upstream's Keep-Alive timeout). */
  readonly keepAliveMs: number;
}

/**
 * Keep-alive HTTP/1.1 connections to one origin: the most recently used idle
 * one first, else a new one. The pool never queues: a cap on requests in
 * flight, if the operator sets one, is the admission's (proxy/admission.ts),
 * which bounds the wait and says when it happens.
 */
export class UpstreamPool implements ConnectionOwner, Transport {
  readonly #endpoint: Endpoint;
  readonly #maxIdle: number;
  readonly #keepAliveMs: number;
  readonly #connections = new Set<UpstreamConnection>();
  readonly #idle: UpstreamConnection[] = [];
  #closing: { resolve: () => void; promise: Promise<void> } | null = null;
  #destroyed = false;

  constructor(options: PoolOptions) {
    const url = new URL(options.origin);
    this.#endpoint = {
      hostname: url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname,
      port: url.port === '' ? 80 : Number(url.port),
      host: url.host,
      connectTimeoutMs: options.connectTimeoutMs,
    };
    this.#maxIdle = options.maxIdle;
    this.#keepAliveMs = options.keepAliveMs;
  }

  /** Open connections, busy or idle. */
  get connections(): number {
    return this.#connections.size;
  }

  dispatch(request: UpstreamRequest, handler: ExchangeHandler): void {
    const exchange = new PooledExchange(request, handler);
    handler.onStart(exchange);
    if (exchange.settled) return;
    if (this.#destroyed) {
      exchange.onError(new PoolClosedError());
      return;
    }
    exchange.runOn(request.freshConnection === true ? this.#open() : (this.#idle.pop() ?? this.#open()));
  }

  release(connection: UpstreamConnection, keepAliveMs: number | null): void {
    const idleMs = keepAliveMs === null ? this.#keepAliveMs : Math.min(this.#keepAliveMs, keepAliveMs - 1_000);
    if (this.#closing !== null || this.#destroyed || idleMs <= 0 || this.#idle.length >= this.#maxIdle) {
      connection.destroy(new PoolClosedError());
      return;
    }
    connection.idle(idleMs);
    this.#idle.push(connection);
  }

  remove(connection: UpstreamConnection): void {
    if (!this.#connections.delete(connection)) return;
    const at = this.#idle.lastIndexOf(connection);
    if (at !== -1) this.#idle.splice(at, 1);
    if (this.#closing !== null && this.#connections.size === 0) this.#closing.resolve();
  }

  /** Lets in-flight exchanges finish, closing each connection as it frees up. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing.promise;
    let resolve!: () => void;
    const promise = new Promise<void>((done) => (resolve = done));
    this.#closing = { resolve, promise };
    for (const connection of this.#idle.splice(0)) connection.destroy(new PoolClosedError());
    if (this.#connections.size === 0) resolve();
    return promise;
  }

  /** Closes every connection now, failing what is in flight. */
  destroy(): Promise<void> {
    this.#destroyed = true;
    const error = new PoolClosedError();
    for (const connection of [...this.#connections]) connection.destroy(error);
    this.#closing?.resolve();
    return Promise.resolve();
  }

  #open(): UpstreamConnection {
    const connection = new UpstreamConnection(this, this.#endpoint);
    this.#connections.add(connection);
    return connection;
  }
}

/** One request through the pool: on a connection, then settled. */
class PooledExchange implements Exchange, ResponseHandler {
  readonly #request: UpstreamRequest;
  readonly #handler: ExchangeHandler;
  #connection: UpstreamConnection | null = null;
  settled = false;

  constructor(request: UpstreamRequest, handler: ExchangeHandler) {
    this.#request = request;
    this.#handler = handler;
  }

  runOn(connection: UpstreamConnection): void {
    this.#connection = connection;
    connection.run(this.#request, this);
  }

  abort(error: Error): void {
    if (this.settled) return;
    const connection = this.#connection;
    if (connection !== null) connection.abort(error);
    else this.onError(error); // from onStart, before it runs on a connection
  }

  pause(): void {
    if (!this.settled) this.#connection?.pause();
  }

  resume(): void {
    if (!this.settled) this.#connection?.resume();
  }

  onHead(status: number, headers: ResponseHeaders): void {
    this.#handler.onHead(status, headers);
  }

  onBody(bytes: Buffer, last: boolean): void {
    this.#handler.onBody(bytes, last);
  }

  onEnd(): void {
    this.#settle();
    this.#handler.onEnd();
  }

  onError(error: Error): void {
    if (this.settled) return;
    this.#settle();
    this.#handler.onError(error);
  }

  #settle(): void {
    this.settled = true;
    this.#connection = null;
  }
}
