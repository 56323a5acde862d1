import type { Dispatcher } from 'undici';
import { PoolClosedError } from '../../errors/upstream.js';
import type { ExchangeHandler, Transport, UpstreamRequest } from '../types.js';
import { createDispatcher, type UndiciConnection } from './dispatcher.js';
import { UndiciExchange } from './exchange.js';

/**
 * Carries requests to one upstream origin through undici (its dispatch API
 * with the gateway's own handler): everything but a plain-http HTTP/1.1
 * upstream without a proxy, which the native client in ../h1 serves
 * (docs/performance.md, "Hand-written where a library exists").
 */
export class UndiciTransport implements Transport {
  readonly #dispatcher: Dispatcher;
  readonly #origin: string;

  constructor(connection: UndiciConnection) {
    this.#dispatcher = createDispatcher(connection);
    this.#origin = connection.origin;
  }

  dispatch(request: UpstreamRequest, handler: ExchangeHandler): void {
    const exchange = new UndiciExchange(handler);
    handler.onStart(exchange);
    if (exchange.settled) return;
    this.#dispatcher.dispatch(
      {
        origin: this.#origin,
        method: request.method,
        path: request.path,
        headers: request.headers,
        body: request.body,
        headersTimeout: request.headersTimeoutMs,
        bodyTimeout: request.idleTimeoutMs,
      },
      exchange,
    );
  }

  /** Lets in-flight exchanges finish, then closes. */
  close(): Promise<void> {
    return this.#dispatcher.close();
  }

  destroy(): Promise<void> {
    return this.#dispatcher.destroy(new PoolClosedError());
  }
}
