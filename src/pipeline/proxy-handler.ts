import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SnapshotStore } from '../config/store.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { LingerLimits } from '../io/lingering-close.js';
import { routeLabel } from '../observability/metrics.js';
import type { TracerRef } from '../observability/tracing/request-trace.js';
import { defaultPlan, resolveModel } from '../routing/resolve.js';
import { authenticate } from './authenticate.js';
import { authorize } from './authorize.js';
import { forward, type ForwardDeps } from './forward.js';
import { RequestLifecycle } from './lifecycle.js';
import { modelsEndpoint } from './models-endpoint.js';
import { readClientBody, type ClientRequestBody } from './read-body.js';
import { requestDeadline } from './deadline.js';
import { checkMethod, checkPath } from './request-path.js';
import { enforceLimits, usesTokens } from './enforce-limits.js';
import type { PolicyLimiter } from '../policy/limiter.js';
import { UsageMeter } from './usage-meter.js';

export interface ProxyDeps extends ForwardDeps {
  readonly store: SnapshotStore;
  /** The tracer while tracing is on; its `tracer` is null otherwise. */
  readonly tracing: TracerRef;
  /** The consumers' limits (the counter store behind it changes with the config). */
  readonly limits: { readonly limiter: PolicyLimiter };
  readonly linger: LingerLimits;
}

/**
 * Every `/v1/*` request, one way through: accept (the lifecycle opens the
 * record), authenticate (who: key, consumer, tenant, policy), read the body,
 * authorize (the consumer's allow-list, on the model the client named), the
 * consumer's limits (once per client request, however many attempts follow),
 * resolve the route (the consumer's tenant first, with the targets' health),
 * forward (the attempt loop), relay (with the usage read from the answer);
 * the lifecycle records it, and charges the limits, when the response closes.
 * Whatever a stage throws is answered by the lifecycle, once.
 */
export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { store, accounting, health, tracing, limits, linger } = deps;

  async function proxy(lifecycle: RequestLifecycle): Promise<void> {
    const { req, record } = lifecycle;
    checkMethod(record.method);
    const snapshot = store.current;
    if (snapshot === null) throw new GatewayError('not_ready');
    const principal = authenticate(req.headers.authorization, snapshot);
    record.keyId = principal.keyId;
    record.consumer = principal.consumer;
    checkPath(record.path);
    const deadline = requestDeadline(record.startedAt, req.headers, snapshot.settings.retryBudgetMs);

    const models = modelsEndpoint(lifecycle, snapshot, principal);
    if (models === true) return;

    const request = await readClientBody(lifecycle, snapshot.settings.bodyLimit);
    record.bytesIn = request.contentLength ?? 0;
    const model = request.model;
    if (model !== null) {
      record.model = model;
      authorize(principal, model);
    }
    const limited = enforceLimits(lifecycle, limits.limiter, principal, request);
    if (limited !== undefined) await limited;
    const plan = model === null ? defaultPlan(snapshot, health) : resolveModel(snapshot, principal, model, Math.random(), health);
    forward(deps, lifecycle, plan, request, models, deadline, usageMeter(lifecycle, request, snapshot.usage.requestStreamUsage));
  }

  /** The usage transform for the token endpoints' requests; it asks for a stream's usage when the client did not (and the switch is on). */
  function usageMeter(lifecycle: RequestLifecycle, request: ClientRequestBody, requestStreamUsage: boolean): UsageMeter | null {
    const route = lifecycle.record.route;
    if (request.model === null || !usesTokens(route)) return null;
    const adds = requestStreamUsage && request.stream && !request.includeUsage && (route === 'chat_completions' || route === 'completions');
    return new UsageMeter(adds, lifecycle.record.bytesIn);
  }

  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const lifecycle = new RequestLifecycle(req, res, accounting, tracing.tracer, linger);
    lifecycle.record.route = routeLabel(lifecycle.record.path);
    proxy(lifecycle).catch((caught: unknown) => lifecycle.fail(caught));
  };
}
