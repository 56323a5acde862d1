import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SnapshotStore } from '../config/store.js';
import { GatewayError } from '../errors/gateway-error.js';
import { routeLabel } from '../observability/metrics.js';
import type { TracerRef } from '../observability/tracing/request-trace.js';
import { defaultPlan, resolveModel } from '../routing/resolve.js';
import type { RequestAccounting } from './account.js';
import { authenticate } from './authenticate.js';
import { forward, type ForwardDeps } from './forward.js';
import { RequestLifecycle } from './lifecycle.js';
import { modelsEndpoint } from './models-endpoint.js';
import { readClientBody } from './read-body.js';
import { checkMethod, checkPath } from './request-path.js';

export interface ProxyDeps extends ForwardDeps {
  readonly store: SnapshotStore;
  readonly accounting: RequestAccounting;
  /** The tracer while tracing is on; its `tracer` is null otherwise. */
  readonly tracing: TracerRef;
}

/**
 * Every `/v1/*` request, one way through: accept (the lifecycle opens the
 * record), authenticate, read the body, resolve the route, forward, relay;
 * the lifecycle records it when the response closes. Whatever a stage throws
 * is answered by the lifecycle, once.
 */
export function createProxyHandler(deps: ProxyDeps): (req: IncomingMessage, res: ServerResponse) => void {
  const { store, accounting, tracing } = deps;

  async function proxy(lifecycle: RequestLifecycle): Promise<void> {
    const { req, record } = lifecycle;
    checkMethod(record.method);
    const snapshot = store.current;
    if (snapshot === null) throw new GatewayError('not_ready');
    record.keyId = authenticate(req.headers.authorization, snapshot);
    checkPath(record.path);

    const models = modelsEndpoint(lifecycle, snapshot);
    if (models === true) return;

    const request = await readClientBody(req, snapshot.settings.bodyLimit);
    record.bytesIn = request.contentLength ?? 0;
    const json = request.json;
    if (json !== null) record.model = json.model;
    const plan = json === null ? defaultPlan(snapshot) : resolveModel(snapshot, json.model, Math.random());
    await forward(deps, lifecycle, plan, request, models);
  }

  return function handle(req: IncomingMessage, res: ServerResponse): void {
    const lifecycle = new RequestLifecycle(req, res, accounting, tracing.tracer);
    lifecycle.record.route = routeLabel(lifecycle.record.path);
    proxy(lifecycle).catch((caught: unknown) => lifecycle.fail(caught));
  };
}
