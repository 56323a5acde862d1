import type { AnswerModel } from '../config/model.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import { GatewayError } from '../errors/gateway-error.js';
import type { Principal } from '../policy/types.js';
import type { CompiledRoute, CompiledTarget, CompiledTier } from './table.js';

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
  /**
   * The first `preferred` targets were available when the plan was made; the
   * rest were not (ejected, or waiting out a Retry-After) and are tried only
   * once the others have failed.
   */
  readonly preferred: number;
}

/**
 * Which targets may be tried now: outlier ejections and Retry-After waits,
 * state the forward stage owns (pipeline/target-health.ts). Passed in, so
 * that resolving stays a pure function of its inputs.
 */
export interface Availability {
  /** Nothing is ejected or waiting anywhere: every target is available. */
  readonly allAvailable: boolean;
  /** Whether this target may be tried now. */
  available(upstream: Upstream, model: string): boolean;
}

/** Every target available: the view when nothing has failed. */
export const ALL_AVAILABLE: Availability = { allAvailable: true, available: () => true };

/**
 * Resolves a requested model against the routes the consumer sees
 * (`routeFor`): a pure function of its inputs (`random` in [0, 1) draws the
 * weighted pick). A routed model's plan starts in the lowest priority that
 * has an available target: the weighted pick among its available targets,
 * then the others by weight; then each higher priority (a fallback) the same
 * way; targets that are not available come last. An unknown model goes to
 * the default upstream unchanged, or is refused with 404 `model_not_found`
 * when `unknown_models: reject`.
 */
export function resolveModel(
  snapshot: RoutingSnapshot,
  principal: Principal,
  model: string,
  random: number,
  availability: Availability = ALL_AVAILABLE,
): RoutePlan {
  const route = routeFor(snapshot, principal, model);
  if (route === undefined) {
    if (snapshot.settings.unknownModels === 'reject') throw new GatewayError('model_not_found', undefined, { param: 'model' });
    const upstream = snapshot.defaultUpstream;
    const preferred = availability.allAvailable || availability.available(upstream, model) ? 1 : 0;
    return { requestedModel: model, route: null, answerModel: 'upstream', targets: [{ upstream, model }], preferred };
  }
  const answerModel = route.answerModel ?? snapshot.settings.answerModel;
  if (availability.allAvailable) {
    if (route.targets.length === 1) return { requestedModel: model, route: route.source, answerModel, targets: route.targets, preferred: 1 };
    const targets: PlannedTarget[] = [];
    for (const tier of route.tiers) orderTier(tier.targets, tier.cumulativeWeights, random, targets);
    return { requestedModel: model, route: route.source, answerModel, targets, preferred: targets.length };
  }
  const targets: PlannedTarget[] = [];
  const unavailable: PlannedTarget[] = [];
  for (const tier of route.tiers) orderAvailable(tier, availability, random, targets, unavailable);
  const preferred = targets.length;
  for (const target of unavailable) targets.push(target);
  return { requestedModel: model, route: route.source, answerModel, targets, preferred };
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
export function defaultPlan(snapshot: RoutingSnapshot, availability: Availability = ALL_AVAILABLE): RoutePlan {
  const upstream = snapshot.defaultUpstream;
  const preferred = availability.allAvailable || availability.available(upstream, '') ? 1 : 0;
  return { requestedModel: null, route: null, answerModel: 'upstream', targets: [{ upstream, model: '' }], preferred };
}

/** Appends a tier's targets to `into`: the weighted pick first, then the others by descending weight (ties keep their order). */
function orderTier(targets: readonly CompiledTarget[], cumulativeWeights: readonly number[], random: number, into: PlannedTarget[]): void {
  if (targets.length === 1) {
    into.push(targets[0]!);
    return;
  }
  const picked = pickIndex(cumulativeWeights, random);
  into.push(targets[picked]!);
  const rest = targets.filter((_, index) => index !== picked).sort((a, b) => b.weight - a.weight);
  for (const target of rest) into.push(target);
}

/** As orderTier over the tier's available targets; the others go to `unavailable`, by descending weight. */
function orderAvailable(tier: CompiledTier, availability: Availability, random: number, into: PlannedTarget[], unavailable: PlannedTarget[]): void {
  const available: CompiledTarget[] = [];
  const cumulativeWeights: number[] = [];
  const skipped: CompiledTarget[] = [];
  for (const target of tier.targets) {
    if (availability.available(target.upstream, target.model)) {
      available.push(target);
      cumulativeWeights.push((cumulativeWeights.at(-1) ?? 0) + target.weight);
    } else {
      skipped.push(target);
    }
  }
  if (available.length > 0) orderTier(available, cumulativeWeights, random, into);
  skipped.sort((a, b) => b.weight - a.weight);
  for (const target of skipped) unavailable.push(target);
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
