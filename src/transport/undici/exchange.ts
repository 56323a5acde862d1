import type { Dispatcher } from 'undici';
import type { Exchange, ExchangeHandler, ResponseHeaders } from '../types.js';
import { toUpstreamError } from './undici-errors.js';

/**
 * One request through undici, as the transport interface has it: undici's
 * dispatch handler (onRequestStart ... onResponseEnd | onResponseError) on
 * one side, the gateway's ExchangeHandler and its Exchange (abort, pause,
 * resume) on the other. After the exchange settles (end or error), nothing
 * more reaches the handler.
 */
export class UndiciExchange implements Dispatcher.DispatchHandler, Exchange {
  readonly #handler: ExchangeHandler;
  /** undici's handle on the request, from the moment it is written to a connection. */
  #controller: Dispatcher.DispatchController | null = null;
  /** An abort that came before the request reached a connection: applied when it does. */
  #abortOnStart: Error | null = null;
  #paused = false;
  settled = false;

  constructor(handler: ExchangeHandler) {
    this.#handler = handler;
  }

  abort(error: Error): void {
    if (this.settled) return;
    const controller = this.#controller;
    if (controller !== null) {
      controller.abort(error); // undici answers with onResponseError(error)
      if (this.settled) return;
    } else {
      this.#abortOnStart = error; // queued or connecting: undici has no handle on it yet
    }
    this.#settle();
    this.#handler.onError(error);
  }

  pause(): void {
    this.#paused = true;
    if (!this.settled) this.#controller?.pause();
  }

  resume(): void {
    this.#paused = false;
    if (!this.settled) this.#controller?.resume();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#abortOnStart !== null) controller.abort(this.#abortOnStart);
    else if (this.#paused) controller.pause();
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (this.settled) return;
    // undici's parsed headers: lower-case names, a repeated field as an array, never an undefined value.
    this.#handler.onHead(statusCode, headers as ResponseHeaders);
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (!this.settled) this.#handler.onBody(chunk, false);
  }

  onResponseEnd(): void {
    if (this.settled) return;
    this.#settle();
    this.#handler.onEnd();
  }

  onResponseError(_controller: Dispatcher.DispatchController | null, error: Error): void {
    if (this.settled) return;
    this.#settle();
    this.#handler.onError(toUpstreamError(error));
  }

  #settle(): void {
    this.settled = true;
    this.#controller = null;
  }
}
