import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SnapshotStore } from '../config/store.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { LingerLimits } from '../io/lingering-close.js';
import { routeLabel } from '../observability/metrics.js';
import type { TracerRef } from '../observability/tracing/request-trace.js';
import { defaultPlan, resolveModel } from '../routing/resolve.js';
import type { RequestAccounting } from './account.js';
import { authenticate } from './authenticate.js';
import { forward, type ForwardDeps } from './forward.js';
import { RequestLifecycle } from './lifecycle.js';
import { modelsEndpoint } from './models-endpoint.js';
import { readClientBody, type ClientRequestBody } from './read-body.js';
import { checkMethod, checkPath } from './request-path.js';
import { enforceLimits, usesTokens } from './enforce-limits.js';
import type { PolicyLimiter } from '../policy/limiter.js';
import type { Principal } from '../policy/types.js';
import { UsageMeter } from './usage-meter.js';

export interface ProxyDeps extends ForwardDeps {
  readonly store: SnapshotStore;
  readonly accounting: RequestAccounting;
  /** The tracer while tracing is on; its `tracer` is null otherwise. */
  readonly tracing: TracerRef;
  /** The consumers' limits (the counter store behind it changes with the config). */
  readonly limits: { readonly limiter: PolicyLimiter };
  readonly linger: LingerLimits;
}

/**
 * Who a key is until consumers arrive (issue 16, part 1: authenticate then
 * returns the Principal from the snapshot): each key its own consumer, no policy.
 */
function principalOf(keyId: string): Principal {
  return { keyId, consumer: keyId, namespace: null, policy: null };
}

/**
 * Every `/v1/*` request, one way through: accept (the lifecycle opens the
 * record), authenticate, read the body, the consumer's limits, resolve the
 * route, forward, relay (with the usage read from the answer); the lifecycle
 * records it, and charges the limits, when the response closes. Whatever a
 * stage throws is answered by the lifecycle, once.
 */
export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { store, accounting, tracing, limits, linger } = deps;

  async function proxy(lifecycle: RequestLifecycle): Promise<void> {
    const { req, record } = lifecycle;
    checkMethod(record.method);
    const snapshot = store.current;
    if (snapshot === null) throw new GatewayError('not_ready');
    const principal = principalOf(authenticate(req.headers.authorization, snapshot));
    record.keyId = principal.keyId;
    record.consumer = principal.consumer;
    checkPath(record.path);

    const models = modelsEndpoint(lifecycle, snapshot);
    if (models === true) return;

    const request = await readClientBody(lifecycle, snapshot.settings.bodyLimit);
    record.bytesIn = request.contentLength ?? 0;
    const model = request.model;
    if (model !== null) record.model = model;
    const limited = enforceLimits(lifecycle, limits.limiter, principal, request);
    if (limited !== undefined) await limited;
    const plan = model === null ? defaultPlan(snapshot) : resolveModel(snapshot, model, Math.random());
    await forward(deps, lifecycle, plan, request, models, usageMeter(lifecycle, request, snapshot.usage.requestStreamUsage));
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
