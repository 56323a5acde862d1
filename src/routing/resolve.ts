import type { AnswerModel } from '../config/model.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import { GatewayError } from '../errors/gateway-error.js';
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
 * Resolves a requested model against the snapshot's routes: a pure function
 * of its inputs (`random` in [0, 1) draws the weighted pick). A routed model
 * yields the weighted pick first, then its other targets by weight; an unknown
 * model goes to the default upstream unchanged, or is refused with 404
 * `model_not_found` when `unknown_models: reject`.
 */
export function resolveModel(snapshot: RoutingSnapshot, model: string, random: number): RoutePlan {
  const route = snapshot.routes.get(model);
  if (route === undefined) {
    if (snapshot.settings.unknownModels === 'reject') throw new GatewayError('model_not_found', undefined, { param: 'model' });
    return { requestedModel: model, route: null, answerModel: 'upstream', targets: [{ upstream: snapshot.defaultUpstream, model }] };
  }
  const answerModel = route.answerModel ?? snapshot.settings.answerModel;
  return { requestedModel: model, route: route.source, answerModel, targets: orderTargets(route, random) };
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

/** The model names the gateway routes (aliases), for `GET /v1/models`. */
export function routedModels(snapshot: RoutingSnapshot): IterableIterator<string> {
  return snapshot.routes.keys();
}

/** Whether a model name is one of the gateway's routes. */
export function isRouted(snapshot: RoutingSnapshot, model: string): boolean {
  return snapshot.routes.has(model);
}
