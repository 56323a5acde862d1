import { accessLine } from '../observability/access-line.js';
import type { Logging } from '../observability/logger.js';
import type { AttemptOutcome, GatewayMetrics } from '../observability/metrics.js';
import type { AnswerModelResult } from './answer-model.js';
import type { RequestRecord } from './request-record.js';

export type { AttemptOutcome };

/**
 * The last stage of every request: metrics and the access line. A request's
 * lifecycle reports here as it goes; `completed` is called exactly once.
 */
export class RequestAccounting {
  readonly #metrics: GatewayMetrics;
  readonly #logging: Logging;
  readonly #accessLog: () => boolean;

  constructor(metrics: GatewayMetrics, logging: Logging, accessLog: () => boolean) {
    this.#metrics = metrics;
    this.#logging = logging;
    this.#accessLog = accessLog;
  }

  get logger(): Logging['logger'] {
    return this.#logging.logger;
  }

  opened(): void {
    this.#metrics.activeRequests++;
    this.#metrics.totalRequests++;
  }

  /** An attempt's answer head came from `upstream` after `seconds`. */
  attemptResponded(upstream: string, seconds: number): void {
    this.#metrics.upstreamResponded(upstream, seconds);
  }

  /** The answer the client gets is going out (`record.ttfbMs`, `record.stream` are set). */
  answerStarted(record: RequestRecord): void {
    if (record.stream) this.#metrics.activeStreams++;
  }

  /** An attempt at `upstream` ended with `outcome`. */
  attempted(upstream: string, outcome: AttemptOutcome): void {
    this.#metrics.attempted(upstream, outcome);
  }

  /** A request moved on to another target of its route (named by the client's model). */
  fellBack(route: string): void {
    this.#metrics.fellBack(route);
  }

  upstreamTimedOut(upstream: string, phase: string): void {
    this.#metrics.upstreamTimedOut(upstream, phase);
  }

  upstreamFailed(upstream: string, code: string): void {
    this.#metrics.upstreamFailed(upstream, code);
  }

  /** A secret was taken out of an upstream's answer; logged once per response, with the upstream that sent it. */
  redacted(record: RequestRecord, where: 'header' | 'body', log: boolean): void {
    this.#metrics.redacted(record.upstream ?? 'unknown', where);
    if (log) this.#logging.logger.warn({ upstream: record.upstream, req_id: record.id, where }, "the upstream's answer carried a configured secret; redacted");
  }

  #countUsage(record: RequestRecord, keyId: string): void {
    const consumer = record.consumer ?? keyId;
    if (record.inputTokens !== null) {
      this.#metrics.policy.tokens({
        consumer,
        keyId,
        model: record.model ?? 'unknown', // metered requests name their model (proxy-handler.ts)
        prompt: record.inputTokens,
        completion: record.outputTokens ?? 0,
        cached: record.cachedTokens,
        reasoning: record.reasoningTokens,
      });
    } else if (record.usageUnknown) {
      this.#metrics.policy.usageUnknown(consumer, keyId);
    }
  }

  /** An answer whose model was due to be replaced: by the requested model and the one sent upstream. */
  answerModel(record: RequestRecord, result: AnswerModelResult): void {
    this.#metrics.answerModel(record.model ?? '', record.targetModel ?? '', result);
  }

  /** The response is closed and no upstream exchange is open: counts, latency, one access line. */
  completed(record: RequestRecord, latencyMs: number, countedStream: boolean): void {
    const metrics = this.#metrics;
    metrics.activeRequests--;
    if (countedStream) metrics.activeStreams--;
    metrics.requestFinished(record.route, record.status, latencyMs / 1000, record.keyId, record.consumer);
    if (record.keyId !== null) this.#countUsage(record, record.keyId);
    const logger = this.#logging.logger;
    if (this.#accessLog() && logger.isLevelEnabled('info')) this.#logging.writeLine(accessLine(record, latencyMs, this.#logging.bindings));
  }
}
