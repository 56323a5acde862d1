import type { AnswerModel } from '../config/model.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Principal } from '../policy/types.js';
import type { CompiledRoute } from './table.js';

/** One place a request may go: an upstream and the model name sent to it. */
export interface PlannedTarget {
  readonly upstream: Upstream;
  readonly model: string;
}

/** Where a request goes: its targets in the order to try them (the first is the one picked now). */
export interface RoutePlan {
  /** The model the client asked for; null for a request without a JSON model (uploads, GETs). */
  readonly requestedModel: string | null;
  /** Where the route came from (`file`, `ModelRoute ns/name`); null when no route applied. */
  readonly route: string | null;
  /** Which model name the answer carries when a target's model differs from the requested one; `upstream` when no route applied. */
  readonly answerModel: AnswerModel;
  readonly targets: readonly PlannedTarget[];
}

/**
 * Resolves a requested model against the routes the consumer sees: a pure
 * function of its inputs (`random` in [0, 1) draws the weighted pick). A
 * routed model yields the weighted pick first, then its other targets by
 * weight; an unknown model goes to the default upstream unchanged, or is
 * refused with 404 `model_not_found` when `unknown_models: reject`.
 */
export function resolveModel(snapshot: RoutingSnapshot, principal: Principal, model: string, random: number): RoutePlan {
  const route = routeFor(snapshot, principal, model);
  if (route === undefined) {
    if (snapshot.settings.unknownModels === 'reject') throw new GatewayError('model_not_found', undefined, { param: 'model' });
    return { requestedModel: model, route: null, answerModel: 'upstream', targets: [{ upstream: snapshot.defaultUpstream, model }] };
  }
  const answerModel = route.answerModel ?? snapshot.settings.answerModel;
  return { requestedModel: model, route: route.source, answerModel, targets: orderTargets(route, random) };
}

/**
 * The route a consumer gets for a model. Namespaces are tenants: a key from a
 * Secret in namespace N sees N's ModelRoutes first, then the shared routes
 * (the file's and the gateway namespace's); a file key (no namespace) sees the
 * shared routes only. A route in N never changes what another namespace's
 * keys get.
 */
export function routeFor(snapshot: RoutingSnapshot, principal: Principal, model: string): CompiledRoute | undefined {
  const namespace = principal.namespace;
  if (namespace !== null) {
    const own = snapshot.tenantRoutes.get(namespace)?.get(model);
    if (own !== undefined) return own;
  }
  return snapshot.routes.get(model);
}

/** The plan for a request that names no model (a GET, an upload): the default upstream, as sent. */
export function defaultPlan(snapshot: RoutingSnapshot): RoutePlan {
  return { requestedModel: null, route: null, answerModel: 'upstream', targets: [{ upstream: snapshot.defaultUpstream, model: '' }] };
}

/** The weighted pick first, then the remaining targets by descending weight (ties keep their order). */
function orderTargets(route: CompiledRoute, random: number): readonly PlannedTarget[] {
  const { targets } = route;
  if (targets.length === 1) return targets;
  const picked = pickIndex(route.cumulativeWeights, random);
  const rest = targets.filter((_, index) => index !== picked).sort((a, b) => b.weight - a.weight);
  return [targets[picked]!, ...rest];
}

function pickIndex(cumulativeWeights: readonly number[], random: number): number {
  const point = random * cumulativeWeights[cumulativeWeights.length - 1]!;
  for (let i = 0; i < cumulativeWeights.length; i++) {
    if (point < cumulativeWeights[i]!) return i;
  }
  return cumulativeWeights.length - 1;
}

/** The model names the gateway routes (aliases) for a consumer, each once, for `GET /v1/models`. */
export function routedModels(snapshot: RoutingSnapshot, principal: Principal): Set<string> {
  const models = new Set(principal.namespace === null ? [] : (snapshot.tenantRoutes.get(principal.namespace)?.keys() ?? []));
  for (const model of snapshot.routes.keys()) models.add(model);
  return models;
}

/** Whether a model name is one of the routes the consumer sees. */
export function isRouted(snapshot: RoutingSnapshot, principal: Principal, model: string): boolean {
  return routeFor(snapshot, principal, model) !== undefined;
}
