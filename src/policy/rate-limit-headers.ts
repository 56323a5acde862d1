import type { RateOutcome, RateSpec } from './gcra.js';

/**
 * OpenAI's rate-limit headers, as its API sends them: the request budget
 * (`x-ratelimit-*-requests`), the token budget (`x-ratelimit-*-tokens`) and,
 * on a refusal, when to retry.
 */
export type RateLimitHeaders = Record<string, string>;

/** A duration as OpenAI writes it (Go's time.Duration): `20ms`, `1s`, `1.5s`, `6m0s`, `1h2m3s`. */
export function formatDuration(ms: number): string {
  if (!(ms > 0)) return '0s';
  if (ms < 1000) return `${Math.max(1, Math.round(ms))}ms`;
  const totalMs = Math.round(ms);
  const hours = Math.floor(totalMs / 3_600_000);
  const minutes = Math.floor((totalMs % 3_600_000) / 60_000);
  const seconds = (totalMs % 60_000) / 1000;
  const secondsText = `${Number.isInteger(seconds) ? seconds : seconds.toFixed(3).replace(/0+$/, '')}s`;
  if (hours > 0) return `${hours}h${minutes}m${secondsText}`;
  if (minutes > 0) return `${minutes}m${secondsText}`;
  return secondsText;
}

/** Adds one budget's trio (`kind`: requests or tokens). */
export function addBudget(headers: RateLimitHeaders, kind: 'requests' | 'tokens', spec: RateSpec, outcome: RateOutcome): void {
  headers[`x-ratelimit-limit-${kind}`] = String(spec.limit);
  headers[`x-ratelimit-remaining-${kind}`] = String(outcome.remaining);
  headers[`x-ratelimit-reset-${kind}`] = formatDuration(outcome.resetMs);
}

/** `Retry-After` in whole seconds (at least 1), and the exact wait in `retry-after-ms`, which the openai SDKs prefer. */
export function addRetryAfter(headers: RateLimitHeaders, ms: number): void {
  headers['retry-after'] = String(Math.max(1, Math.ceil(ms / 1000)));
  headers['retry-after-ms'] = String(Math.max(1, Math.ceil(ms)));
}
