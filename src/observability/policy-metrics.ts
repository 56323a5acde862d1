import client from 'prom-client';
import { CounterFamily, type CounterCell } from './bound-metrics.js';

/** Token series kept at most; past it, new models are counted under `model="other"` (a client names the model). */
const MAX_TOKEN_SERIES = 10_000;

/** What one answer reported, as the record holds it. */
export interface ReportedTokens {
  readonly consumer: string;
  readonly keyId: string;
  readonly model: string;
  readonly prompt: number;
  readonly completion: number;
  readonly cached: number | null;
  readonly reasoning: number | null;
}

interface TokenCells {
  /** The model label the cells count under (`other` past MAX_TOKEN_SERIES). */
  readonly model: string;
  readonly prompt: CounterCell;
  readonly completion: CounterCell;
  cached: CounterCell | null;
  reasoning: CounterCell | null;
}

/**
 * The consumers' side of the metrics: tokens used, answers whose usage is
 * unknown, requests refused by a limit, and the counter store's health.
 */
export class PolicyMetrics {
  readonly #tokens: CounterFamily;
  readonly #unknown: CounterFamily;
  readonly #limited: CounterFamily;
  readonly #bypassed: CounterFamily;
  readonly #tokenCells = new Map<string, TokenCells>();
  #storeUp = (): boolean => true;

  constructor(registry: client.Registry) {
    this.#tokens = new CounterFamily(registry, {
      name: 'apiproxy_tokens_total',
      help: 'Tokens the upstreams reported, by consumer, key id, model (as the client named it) and kind: prompt, completion, and of those cached (prompt) and reasoning (completion) where reported.',
      labelNames: ['consumer', 'key_id', 'model', 'kind'],
    });
    this.#unknown = new CounterFamily(registry, {
      name: 'apiproxy_usage_unknown_total',
      help: 'Answers that should have reported their token usage and did not (mostly streams the client left before the end); limits were charged an estimate.',
      labelNames: ['consumer', 'key_id'],
    });
    this.#limited = new CounterFamily(registry, {
      name: 'apiproxy_rate_limited_total',
      help: 'Requests refused with 429 rate_limit_exceeded, by consumer, key id and limit (requests_per_minute, tokens_per_minute, tokens_per_day, concurrent_streams).',
      labelNames: ['consumer', 'key_id', 'limit'],
    });
    this.#bypassed = new CounterFamily(registry, {
      name: 'apiproxy_rate_limit_store_bypassed_total',
      help: 'Requests with limits decided without the counter store (Redis away or too slow), by outcome: allowed (fail_open) or refused (503 rate_limit_unavailable).',
      labelNames: ['outcome'],
    });
    this.#bypassed.cell('allowed');
    this.#bypassed.cell('refused');
    const storeUp = (): number => (this.#storeUp() ? 1 : 0);
    new client.Gauge({
      name: 'apiproxy_rate_limit_store_up',
      help: 'Whether the counter store of the limits answers (1) or not (0); always 1 for in-process counters.',
      registers: [registry],
      aggregator: 'min',
      collect() {
        this.set(storeUp());
      },
    });
  }

  tokens(reported: ReportedTokens): void {
    const { consumer, keyId } = reported;
    const key = consumer + '\0' + keyId + '\0' + reported.model;
    let cells = this.#tokenCells.get(key);
    if (cells === undefined) {
      const full = this.#tokenCells.size >= MAX_TOKEN_SERIES;
      const model = full ? 'other' : reported.model;
      const other = full ? this.#tokenCells.get(consumer + '\0' + keyId + '\0' + model) : undefined;
      cells = other ?? {
        model,
        prompt: this.#tokens.cell(consumer, keyId, model, 'prompt'),
        completion: this.#tokens.cell(consumer, keyId, model, 'completion'),
        cached: null,
        reasoning: null,
      };
      if (other === undefined) this.#tokenCells.set(full ? consumer + '\0' + keyId + '\0' + model : key, cells);
    }
    cells.prompt.inc(reported.prompt);
    cells.completion.inc(reported.completion);
    if (reported.cached !== null) (cells.cached ??= this.#tokens.cell(consumer, keyId, cells.model, 'cached')).inc(reported.cached);
    if (reported.reasoning !== null) (cells.reasoning ??= this.#tokens.cell(consumer, keyId, cells.model, 'reasoning')).inc(reported.reasoning);
  }

  usageUnknown(consumer: string, keyId: string): void {
    this.#unknown.cell(consumer, keyId).inc();
  }

  rateLimited(consumer: string, keyId: string, limit: string): void {
    this.#limited.cell(consumer, keyId, limit).inc();
  }

  decidedWithoutStore(allowed: boolean): void {
    this.#bypassed.cell(allowed ? 'allowed' : 'refused').inc();
  }

  /** Where the store gauge reads whether the limiter's counter store answers. */
  countStoreHealthWith(up: () => boolean): void {
    this.#storeUp = up;
  }
}
