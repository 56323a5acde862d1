import type { IncomingHttpHeaders } from 'node:http';
import { GatewayError } from '../errors/gateway-error.js';

/** The client's own deadline, in ms from when the gateway got the request; not sent upstream. */
export const DEADLINE_HEADER = 'x-apiproxy-deadline-ms';

const MAX_DEADLINE_MS = 24 * 3600 * 1000;

/**
 * When the request's answer must have started (a performance.now() time):
 * `budgetMs` (the config's `retry_budget_ms`) after its arrival, or sooner
 * when the client asks for less. No retry, fallback or wait goes past it.
 */
export function requestDeadline(startedAt: number, headers: IncomingHttpHeaders, budgetMs: number): number {
  const value = headers[DEADLINE_HEADER];
  if (value === undefined) return startedAt + budgetMs;
  const ms = typeof value === 'string' ? wholeMilliseconds(value) : null;
  if (ms === null) throw new GatewayError('invalid_deadline');
  return startedAt + Math.min(budgetMs, ms);
}

/** 1 to 86,400,000 written as plain digits, else null. */
function wholeMilliseconds(text: string): number | null {
  if (text.length === 0 || text.length > 8) return null;
  for (let at = 0; at < text.length; at++) {
    const code = text.charCodeAt(at);
    if (code < 48 || code > 57) return null;
  }
  const ms = Number(text);
  return ms >= 1 && ms <= MAX_DEADLINE_MS ? ms : null;
}
