import { GatewayError } from '../errors/gateway-error.js';
import type { RouteLabel } from '../observability/metrics.js';
import type { LimitDecision, PolicyLimiter, RequestShape } from '../policy/limiter.js';
import type { Principal } from '../policy/types.js';
import type { RequestLifecycle } from './lifecycle.js';
import type { ClientRequestBody } from './read-body.js';

/** The endpoints whose answers report token usage, and whose requests token budgets apply to. */
export function usesTokens(route: RouteLabel): boolean {
  return route === 'chat_completions' || route === 'completions' || route === 'responses' || route === 'embeddings';
}

const SHAPES: readonly RequestShape[] = [
  { tokens: false, stream: false },
  { tokens: false, stream: true },
  { tokens: true, stream: false },
  { tokens: true, stream: true },
];

function shapeOf(route: RouteLabel, request: ClientRequestBody): RequestShape {
  return SHAPES[(request.model !== null && usesTokens(route) ? 2 : 0) + (request.stream ? 1 : 0)]!;
}

/**
 * The limits stage (after authorize): every request forwarded upstream is
 * judged against its consumer's policy. Admitted, the lifecycle keeps the
 * budgets' headers for the answer and what the request owes afterwards;
 * refused, the request ends here with 429 `rate_limit_exceeded` (or 503
 * `rate_limit_unavailable` when Redis is away and the limiter fails closed).
 */
export function enforceLimits(lifecycle: RequestLifecycle, limiter: PolicyLimiter, principal: Principal, request: ClientRequestBody): void | Promise<void> {
  const decision = limiter.admit(principal, shapeOf(lifecycle.record.route, request));
  if (decision instanceof Promise) return decision.then((settled) => apply(lifecycle, settled));
  apply(lifecycle, decision);
}

function apply(lifecycle: RequestLifecycle, decision: LimitDecision): void {
  switch (decision.kind) {
    case 'allowed':
      lifecycle.admitted(decision.headers, decision.ticket);
      return;
    case 'refused':
      throw new GatewayError('rate_limit_exceeded', decision.message, {
        headers: decision.headers,
        type: decision.limit === 'tokens_per_minute' || decision.limit === 'tokens_per_day' ? 'tokens' : 'requests',
      });
    case 'unavailable':
      throw new GatewayError('rate_limit_unavailable', undefined, { headers: { 'retry-after': '1' } });
  }
}
