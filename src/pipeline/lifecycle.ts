import type { IncomingMessage, ServerResponse } from 'node:http';
import { CLIENT_CLOSED_REQUEST, ClientGoneError } from '../errors/client-gone.js';
import { toGatewayError } from '../errors/gateway-error.js';
import { writeError } from '../errors/write-error.js';
import type { Upstream } from '../config/upstream.js';
import { closeAfterLingering, type LingerLimits } from '../io/lingering-close.js';
import type { AttemptTrace, RequestTrace, RequestTracer } from '../observability/tracing/request-trace.js';
import type { RequestAccounting } from './account.js';
import type { UpstreamAdmission } from './admission.js';
import type { RateLimitHeaders } from '../policy/rate-limit-headers.js';
import type { LimitTicket } from '../policy/limiter.js';
import type { AnswerModelResult } from './answer-model.js';
import type { RequestRecord } from './request-record.js';
import { requestIdFrom } from './request-id.js';
import type { UsageMeter } from './usage-meter.js';

/** What the lifecycle stops when the client goes away: an upstream exchange, or the attempt loop's wait between two. */
export interface Abortable {
  abort(error: Error): void;
}

/**
 * The one owner of a request's life, from accept to record. Stages fill in
 * its record and report what happens; it answers errors, aborts the upstream
 * exchange (or the wait before the next attempt) when the client goes away,
 * gives back each attempt's upstream slot, and completes the record exactly
 * once: when the response is closed and the upstream phase (every attempt)
 * has ended.
 */
export class RequestLifecycle {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly record: RequestRecord;
  /** The request's trace; null when tracing is off. */
  readonly trace: RequestTrace | null;
  readonly #accounting: RequestAccounting;
  readonly #linger: LingerLimits;
  /** The span of the attempt in flight; null when tracing is off or none is. */
  #attempt: AttemptTrace | null = null;
  #exchange: Abortable | null = null;
  #slot: UpstreamAdmission | null = null;
  /** When the first attempt was dispatched (performance.now()), for the time to the answer's head. */
  #dispatchedAt = -1;
  #upstreamOpen = false;
  #responseClosed = false;
  #countedStream = false;
  #redactionLogged = false;
  #completed = false;
  /** What the request holds until it completes (a spooled upload), released then. */
  #releases: (() => void)[] | null = null;
  /** The consumer's budgets, for the answer's headers; null when no limit applies. */
  #rateLimitHeaders: RateLimitHeaders | null = null;
  /** What the request owes its limits once done (tokens, a stream's slot). */
  #ticket: LimitTicket | null = null;
  #meter: UsageMeter | null = null;

  /** `linger`: how the connection closes after an answer to a request not read to its end (io/lingering-close). */
  constructor(req: IncomingMessage, res: ServerResponse, accounting: RequestAccounting, tracer: RequestTracer | null, linger: LingerLimits) {
    this.req = req;
    this.res = res;
    this.#accounting = accounting;
    this.#linger = linger;
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    this.record = {
      id: requestIdFrom(req.headers['x-request-id']),
      startedAt: performance.now(),
      method: req.method ?? 'GET',
      path: queryAt === -1 ? url : url.slice(0, queryAt),
      route: 'unmatched',
      keyId: null,
      consumer: null,
      model: null,
      targetModel: null,
      upstream: null,
      status: 0,
      ttfbMs: -1,
      bytesIn: 0,
      bytesOut: 0,
      stream: false,
      errorCode: null,
      clientAborted: false,
      attempts: 0,
      responseModel: null,
      inputTokens: null,
      outputTokens: null,
      cachedTokens: null,
      reasoningTokens: null,
      usageUnknown: false,
    };
    this.trace = tracer === null ? null : tracer.startRequest(req.headers, this.record);
    accounting.opened();
    res.once('close', this.#onClose);
  }

  /**
   * An upstream attempt is about to go out with these headers: with tracing
   * on, its client span starts and its trace context is written into them.
   * Each attempt ends in `attemptEnded` (another attempt or a held answer
   * follows) or `upstreamSettled` (its answer was relayed, or it was the last).
   */
  attemptStarting(upstream: Upstream, headers: Record<string, string | string[]>): void {
    if (this.trace !== null) this.#attempt = this.trace.attemptStarted(upstream, this.record, headers);
  }

  /** The limits let the request through: `headers` go on its answer, `ticket` is settled when it completes. */
  admitted(headers: RateLimitHeaders | null, ticket: LimitTicket | null): void {
    this.#rateLimitHeaders = headers;
    this.#ticket = ticket;
  }

  /** OpenAI's rate-limit headers for the answer, when the consumer has limits. */
  get rateLimitHeaders(): RateLimitHeaders | null {
    return this.#rateLimitHeaders;
  }

  /** The answer's usage is read by `meter` (a transform of the relay); it is accounted when the request completes. */
  metering(meter: UsageMeter): void {
    this.#meter = meter;
  }

  /** An attempt goes to an upstream, holding `slot` until it ends; the upstream phase is open until `upstreamSettled`. */
  dispatching(slot: UpstreamAdmission): void {
    if (this.#dispatchedAt < 0) this.#dispatchedAt = performance.now();
    this.#slot = slot;
    this.#upstreamOpen = true;
  }

  /**
   * What a client that leaves must stop: the transport's exchange, or the
   * attempt loop while it waits to try again. Stopped at once when the client
   * is already gone.
   */
  attach(exchange: Abortable): void {
    this.#exchange = exchange;
    if (this.#responseClosed) exchange.abort(new ClientGoneError());
  }

  /** Releases `release` when the request completes: the response closed and no upstream exchange open. */
  onComplete(release: () => void): void {
    (this.#releases ??= []).push(release);
  }

  /** An attempt's answer head came (`status`), relayed or not: its span says so. */
  attemptResponded(status: number, stream: boolean): void {
    this.#attempt?.responded(status, stream);
  }

  /**
   * An attempt ended without its answer being relayed (`errorCode` when it
   * failed): its span ends, its slot goes back; another attempt or the held
   * answer follows.
   */
  attemptEnded(errorCode: string | null): void {
    this.#endAttempt(errorCode);
    this.#exchange = null;
    this.#slot?.leave();
    this.#slot = null;
  }

  /** The head of the answer the client gets is going out; `stream` when it is an event stream. */
  upstreamResponded(stream: boolean): void {
    const record = this.record;
    record.ttfbMs = performance.now() - this.#dispatchedAt;
    record.stream = stream;
    this.#countedStream = stream;
    this.#accounting.answerStarted(record);
  }

  /** The first bytes of an event stream's body reached the relay (reported only while a trace is open). */
  firstChunk(): void {
    this.#attempt?.firstChunk();
  }

  /** The upstream phase ended (the last exchange settled); `errorCode` when a relayed answer failed (a gateway error code). */
  upstreamSettled(errorCode: string | null): void {
    if (!this.#upstreamOpen) return;
    this.#upstreamOpen = false;
    this.#endAttempt(errorCode);
    this.#exchange = null;
    this.#slot?.leave();
    this.#slot = null;
    if (errorCode !== null) {
      this.record.errorCode = errorCode;
      this.#accounting.upstreamFailed(this.record.upstream!, errorCode);
    }
    this.#completeIfDone();
  }

  /** One of the upstream's timeouts ended the exchange. */
  timedOut(phase: 'connect' | 'headers' | 'idle'): void {
    this.#accounting.upstreamTimedOut(this.record.upstream!, phase);
  }

  /** The relay took a secret out of the upstream's answer (`where`: header or body). */
  redacted(where: 'header' | 'body'): void {
    this.#accounting.redacted(this.record, where, !this.#redactionLogged);
    this.#redactionLogged = true;
  }

  /** What became of an answer whose model was due to be replaced by the requested one. */
  answerModel(result: AnswerModelResult): void {
    this.#accounting.answerModel(this.record, result);
  }

  /**
   * Answers what a stage threw, before any of the answer has gone out: the
   * OpenAI error envelope (a 500 for anything that is not a GatewayError,
   * logged with the request id). Nothing is answered to a client that left,
   * and an answer already under way is cut.
   */
  fail(caught: unknown): void {
    const { req, res, record } = this;
    if (caught instanceof ClientGoneError || res.destroyed) {
      res.destroy();
      return;
    }
    const error = toGatewayError(caught);
    if (error.code === 'internal_error') this.#accounting.logger.error({ err: caught, req_id: record.id }, 'the gateway failed to handle the request');
    record.errorCode = error.code;
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // A refused body is not read to its end: the connection closes, after reading (and dropping) what the client
    // still sends, within bounds, so that a client that writes its whole body before reading gets the answer.
    const closeConnection = !req.complete;
    if (closeConnection) closeAfterLingering(req, this.#linger);
    writeError(res, error, record.id, { head: req.method === 'HEAD', closeConnection, attempts: record.attempts });
  }

  #endAttempt(errorCode: string | null): void {
    if (this.#attempt === null) return;
    this.#attempt.ended(errorCode);
    this.#attempt = null;
  }

  readonly #onClose = (): void => {
    this.#responseClosed = true;
    if (!this.res.writableFinished) {
      this.record.clientAborted = true;
      this.#exchange?.abort(new ClientGoneError());
    }
    this.#completeIfDone();
  };

  /** The answer's usage into the record, and to the limits: what was reported, else an estimate (never nothing). */
  #settleUsage(): void {
    const meter = this.#meter;
    const result = meter?.result() ?? null;
    let tokens = 0;
    if (result !== null) {
      const record = this.record;
      // Searched for only where it is read: the trace.
      if (this.trace !== null) record.responseModel = meter!.answerModel();
      if (result.kind === 'reported') {
        const usage = result.usage;
        record.inputTokens = usage.prompt;
        record.outputTokens = usage.completion;
        record.cachedTokens = usage.cached;
        record.reasoningTokens = usage.reasoning;
        tokens = usage.prompt + usage.completion;
      } else {
        record.usageUnknown = true;
        tokens = result.estimate;
      }
    }
    this.#ticket?.finish(tokens);
  }

  #completeIfDone(): void {
    if (this.#completed || !this.#responseClosed || this.#upstreamOpen) return;
    this.#completed = true;
    if (this.#releases !== null) for (const release of this.#releases) release();
    const { record, res } = this;
    record.status = res.headersSent ? res.statusCode : CLIENT_CLOSED_REQUEST;
    this.#settleUsage();
    this.#accounting.completed(record, performance.now() - record.startedAt, this.#countedStream);
    this.trace?.completed(record);
  }
}
