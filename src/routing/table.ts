import type { AnswerModel, KubeRouteInput, RouteSpec, RouteStatus } from '../config/model.js';
import type { Upstream } from '../config/upstream.js';

/** A route target with its upstream resolved. */
export interface CompiledTarget {
  readonly upstream: Upstream;
  readonly model: string;
  readonly weight: number;
}

/** A route ready for requests: the client-facing model, its targets, and where it came from. */
export interface CompiledRoute {
  readonly model: string;
  /** For logs: `file` or `ModelRoute ns/name`. */
  readonly source: string;
  readonly targets: readonly CompiledTarget[];
  /** The route's own answer_model; null: the gateway's setting. */
  readonly answerModel: AnswerModel | null;
  /** Running sums of the targets' weights, for the weighted pick. */
  readonly cumulativeWeights: readonly number[];
}

/** A route that cannot be compiled (e.g. it names an upstream the config does not define). */
export class RouteError extends Error {
  readonly code = 'ROUTE_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RouteError';
  }
}

/**
 * The route table of a snapshot: file routes, then the ModelRoutes in effect,
 * which win over file routes for the same model.
 */
export function buildRouteTable(
  fileRoutes: readonly RouteSpec[],
  kubeRoutes: readonly KubeRouteInput[] | null,
  upstreams: ReadonlyMap<string, Upstream>,
  defaultUpstream: Upstream,
): { routes: Map<string, CompiledRoute>; statuses: RouteStatus[] } {
  const routes = new Map<string, CompiledRoute>();
  for (const spec of fileRoutes) routes.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
  let statuses: RouteStatus[] = [];
  if (kubeRoutes !== null) {
    const resolved = resolveKubeRoutes(kubeRoutes, upstreams);
    statuses = resolved.statuses;
    for (const spec of resolved.routes) routes.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
  }
  return { routes, statuses };
}

function compileRoute(spec: RouteSpec, upstreams: ReadonlyMap<string, Upstream>, fallback: Upstream): CompiledRoute {
  const targets: CompiledTarget[] = [];
  const cumulativeWeights: number[] = [];
  let total = 0;
  for (const target of spec.targets) {
    if (target.weight <= 0) continue;
    const upstream = target.upstream === null ? fallback : upstreams.get(target.upstream);
    if (upstream === undefined) throw new RouteError(`route '${spec.model}' (${spec.source}) names unknown upstream '${target.upstream}'`);
    total += target.weight;
    targets.push({ upstream, model: target.model, weight: target.weight });
    cumulativeWeights.push(total);
  }
  if (targets.length === 0) throw new RouteError(`route '${spec.model}' (${spec.source}) has no target with a weight above 0`);
  return { model: spec.model, source: spec.source, targets, answerModel: spec.answerModel, cumulativeWeights };
}

/**
 * Decides which ModelRoutes apply: routes naming an unknown upstream are
 * rejected; of the rest, the oldest per model wins (then namespace/name).
 */
export function resolveKubeRoutes(
  inputs: readonly KubeRouteInput[],
  upstreams: ReadonlyMap<string, unknown>,
): { routes: RouteSpec[]; statuses: RouteStatus[] } {
  const statuses: RouteStatus[] = [];
  const candidates: KubeRouteInput[] = [];
  for (const route of inputs) {
    if (route.invalid !== null) {
      statuses.push(status(route, false, 'Invalid', route.invalid));
      continue;
    }
    const unknown = route.targets.find((t) => t.upstream !== undefined && !upstreams.has(t.upstream));
    if (unknown !== undefined) {
      statuses.push(status(route, false, 'UnknownUpstream', `upstream '${unknown.upstream}' is not defined in the gateway's config`));
    } else if (!route.targets.some((t) => (t.weight ?? 1) > 0)) {
      statuses.push(status(route, false, 'Invalid', 'no target has a weight above 0'));
    } else {
      candidates.push(route);
    }
  }
  candidates.sort((a, b) => a.createdAt - b.createdAt || compare(a.namespace, b.namespace) || compare(a.name, b.name));
  const winners = new Map<string, KubeRouteInput>();
  const routes: RouteSpec[] = [];
  for (const route of candidates) {
    const winner = winners.get(route.model);
    if (winner !== undefined) {
      statuses.push(status(route, false, 'Conflict', `model '${route.model}' is already routed by ModelRoute ${winner.namespace}/${winner.name}`));
      continue;
    }
    winners.set(route.model, route);
    statuses.push(status(route, true, 'Accepted', `routes model '${route.model}'`));
    routes.push({
      model: route.model,
      source: `ModelRoute ${route.namespace}/${route.name}`,
      targets: route.targets.map((t) => ({ model: t.model, upstream: t.upstream ?? null, weight: t.weight ?? 1 })),
      answerModel: route.answerModel ?? null,
    });
  }
  return { routes, statuses };
}

function status(route: KubeRouteInput, accepted: boolean, reason: RouteStatus['reason'], message: string): RouteStatus {
  return { namespace: route.namespace, name: route.name, generation: route.generation, accepted, reason, message };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
