import type { ResponseHeaders } from '../transport/types.js';

/** The longest wait an upstream can put on a target: a bound on what it says, right or wrong. */
export const MAX_WAIT_MS = 3_600_000;

/** Header values longer than this are not read (an upstream controls them). */
const MAX_VALUE_LENGTH = 64;

/** A Map, not an object: a unit spelled like an inherited property (`0valueOf`) must not be one. */
const UNIT_MS: ReadonlyMap<string, number> = new Map([
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
  ['us', 0.001],
  ['µs', 0.001],
  ['ns', 0.000001],
]);

/**
 * How long an upstream's answer asks the gateway to wait before sending that
 * target another request, in ms, or null when it does not say: OpenAI's
 * `retry-after-ms`, else `Retry-After` (seconds or an HTTP date), else the
 * `x-ratelimit-reset-requests` / `-tokens` durations of the limits whose
 * remaining count is 0. Capped at MAX_WAIT_MS; `nowMs` is the epoch time an
 * HTTP date is measured from.
 */
export function requestedWaitMs(headers: ResponseHeaders, nowMs: number): number | null {
  const milliseconds = first(headers['retry-after-ms']);
  if (milliseconds !== undefined) {
    const ms = plainNumber(milliseconds);
    if (ms !== null) return bounded(ms);
  }
  const retryAfter = first(headers['retry-after']);
  if (retryAfter !== undefined) {
    const seconds = plainNumber(retryAfter);
    if (seconds !== null) return bounded(seconds * 1000);
    // An HTTP date is long ("Sun, 06 Nov 1994 08:49:37 GMT"); Date.parse alone would take "-5" for a year.
    if (retryAfter.length >= 20 && retryAfter.length <= MAX_VALUE_LENGTH) {
      const date = Date.parse(retryAfter);
      if (!Number.isNaN(date)) return bounded(date - nowMs);
    }
  }
  let wait: number | null = null;
  for (const limit of ['requests', 'tokens']) {
    const remaining = first(headers[`x-ratelimit-remaining-${limit}`]);
    if (remaining !== undefined && remaining.trim() !== '0') continue;
    const reset = first(headers[`x-ratelimit-reset-${limit}`]);
    const ms = reset === undefined ? null : durationMs(reset);
    if (ms !== null) wait = Math.max(wait ?? 0, ms);
  }
  return wait === null ? null : bounded(wait);
}

/**
 * A duration as OpenAI writes its rate-limit resets (Go's format: `20ms`,
 * `6m0s`, `1h2m3.5s`); a bare number is seconds. Scanned by hand: the text is
 * the upstream's. Null when it is not one.
 */
export function durationMs(text: string): number | null {
  const value = text.trim();
  if (value.length === 0 || value.length > MAX_VALUE_LENGTH) return null;
  const bare = plainNumber(value);
  if (bare !== null) return bare * 1000;
  let total = 0;
  let at = 0;
  while (at < value.length) {
    const numberStart = at;
    while (at < value.length && isNumberChar(value.charCodeAt(at))) at++;
    if (at === numberStart) return null;
    const amount = Number(value.slice(numberStart, at));
    const unitStart = at;
    while (at < value.length && !isNumberChar(value.charCodeAt(at))) at++;
    const factor = UNIT_MS.get(value.slice(unitStart, at));
    if (factor === undefined || !Number.isFinite(amount)) return null;
    total += amount * factor;
  }
  return total;
}

/** A non-negative decimal number and nothing else, or null. */
function plainNumber(text: string): number | null {
  const value = text.trim();
  if (value.length === 0 || value.length > MAX_VALUE_LENGTH) return null;
  for (let at = 0; at < value.length; at++) if (!isNumberChar(value.charCodeAt(at))) return null;
  const number = Number(value);
  return Number.isFinite(number) ? number : null;
}

function isNumberChar(code: number): boolean {
  return (code >= 48 && code <= 57) || code === 46; // 0-9 and '.'
}

function first(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function bounded(ms: number): number {
  return Math.min(MAX_WAIT_MS, Math.max(0, ms));
}
