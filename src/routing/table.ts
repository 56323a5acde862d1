import type { AnswerModel, KubeRouteInput, RouteSpec, RouteStatus, RouteTarget } from '../config/model.js';
import type { Upstream } from '../config/upstream.js';

/** A route target with its upstream resolved. */
export interface CompiledTarget {
  readonly upstream: Upstream;
  readonly model: string;
  readonly weight: number;
  /** Lower first; higher priorities are fallbacks. */
  readonly priority: number;
}

/** The targets of one priority, between which requests are split by weight. */
export interface CompiledTier {
  readonly priority: number;
  readonly targets: readonly CompiledTarget[];
  /** Running sums of the targets' weights, for the weighted pick. */
  readonly cumulativeWeights: readonly number[];
}

/** A route ready for requests: the client-facing model, its targets, and where it came from. */
export interface CompiledRoute {
  readonly model: string;
  /** For logs: `file` or `ModelRoute ns/name`. */
  readonly source: string;
  /** Every target with a weight above 0, by priority (lowest first), then in the order given. */
  readonly targets: readonly CompiledTarget[];
  /** The route's own answer_model; null: the gateway's setting. */
  readonly answerModel: AnswerModel | null;
  /** The same targets grouped by priority, lowest first. */
  readonly tiers: readonly CompiledTier[];
}

/** A route that cannot be compiled (e.g. it names an upstream the config does not define). */
export class RouteError extends Error {
  readonly code = 'ROUTE_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'RouteError';
  }
}

/** A snapshot's routes by scope: what every consumer sees, and what each namespace's consumers see first. */
export interface RouteTable {
  /** File routes and the ModelRoutes of the gateway's own namespace, which win over file routes for the same model. */
  readonly shared: Map<string, CompiledRoute>;
  /** The ModelRoutes of every other namespace, by namespace: seen by that namespace's consumers only. */
  readonly tenants: Map<string, Map<string, CompiledRoute>>;
  /** Routes in effect, over every scope. */
  readonly size: number;
  readonly statuses: RouteStatus[];
}

/**
 * The route table of a snapshot. Namespaces are tenants: a ModelRoute in the
 * gateway's own namespace (`sharedNamespace`) is shared like a file route; one
 * in another namespace routes only that namespace's keys, never another's.
 */
export function buildRouteTable(
  fileRoutes: readonly RouteSpec[],
  kubeRoutes: readonly KubeRouteInput[] | null,
  upstreams: ReadonlyMap<string, Upstream>,
  defaultUpstream: Upstream,
  sharedNamespace: string,
): RouteTable {
  const shared = new Map<string, CompiledRoute>();
  const tenants = new Map<string, Map<string, CompiledRoute>>();
  for (const spec of fileRoutes) shared.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
  let statuses: RouteStatus[] = [];
  let size = shared.size;
  if (kubeRoutes !== null) {
    const resolved = resolveKubeRoutes(kubeRoutes, upstreams, defaultUpstream.name);
    statuses = resolved.statuses;
    for (const { namespace, spec } of resolved.routes) {
      let scope = shared;
      if (namespace !== sharedNamespace) {
        scope = tenants.get(namespace) ?? new Map<string, CompiledRoute>();
        tenants.set(namespace, scope);
      }
      if (!scope.has(spec.model)) size++;
      scope.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
    }
  }
  return { shared, tenants, size, statuses };
}

function compileRoute(spec: RouteSpec, upstreams: ReadonlyMap<string, Upstream>, fallback: Upstream): CompiledRoute {
  const targets: CompiledTarget[] = [];
  for (const target of spec.targets) {
    if (target.weight <= 0) continue;
    const upstream = target.upstream === null ? fallback : upstreams.get(target.upstream);
    if (upstream === undefined) throw new RouteError(`route '${spec.model}' (${spec.source}) names unknown upstream '${target.upstream}'`);
    targets.push({ upstream, model: target.model, weight: target.weight, priority: target.priority });
  }
  if (targets.length === 0) throw new RouteError(`route '${spec.model}' (${spec.source}) has no target with a weight above 0`);
  targets.sort((a, b) => a.priority - b.priority); // stable: the order given within a priority
  const tiers: CompiledTier[] = [];
  for (const target of targets) {
    let tier = tiers.at(-1);
    if (tier === undefined || tier.priority !== target.priority) {
      tier = { priority: target.priority, targets: [], cumulativeWeights: [] };
      tiers.push(tier);
    }
    (tier.targets as CompiledTarget[]).push(target);
    const cumulative = tier.cumulativeWeights as number[];
    cumulative.push((cumulative.at(-1) ?? 0) + target.weight);
  }
  return { model: spec.model, source: spec.source, targets, answerModel: spec.answerModel, tiers };
}

/**
 * Decides which ModelRoutes apply: routes naming an unknown upstream are
 * rejected; of the rest, the oldest per model and namespace wins (then by
 * name). Conflicts are judged within a namespace: each is its own scope. An
 * accepted route's status says what is in effect: its targets by priority.
 */
export function resolveKubeRoutes(
  inputs: readonly KubeRouteInput[],
  upstreams: ReadonlyMap<string, unknown>,
  defaultUpstream = 'default',
): { routes: { namespace: string; spec: RouteSpec }[]; statuses: RouteStatus[] } {
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
  const routes: { namespace: string; spec: RouteSpec }[] = [];
  for (const route of candidates) {
    const scoped = `${route.namespace}/${route.model}`;
    const winner = winners.get(scoped);
    if (winner !== undefined) {
      statuses.push(status(route, false, 'Conflict', `model '${route.model}' is already routed by ModelRoute ${winner.namespace}/${winner.name}`));
      continue;
    }
    winners.set(scoped, route);
    const targets = route.targets.map((t) => ({ model: t.model, upstream: t.upstream ?? null, weight: t.weight ?? 1, priority: t.priority ?? 0 }));
    statuses.push(status(route, true, 'Accepted', `routes model '${route.model}' to ${inEffect(targets, defaultUpstream)}`));
    routes.push({
      namespace: route.namespace,
      spec: { model: route.model, source: `ModelRoute ${route.namespace}/${route.name}`, targets, answerModel: route.answerModel ?? null },
    });
  }
  return { routes, statuses };
}

/**
 * What a route does, in words: the targets of the lowest priority with their
 * weights, then each fallback priority; targets of weight 0 are left out.
 */
export function inEffect(targets: readonly RouteTarget[], defaultUpstream: string): string {
  const used = targets.filter((t) => t.weight > 0).sort((a, b) => a.priority - b.priority);
  const parts: string[] = [];
  for (let at = 0; at < used.length;) {
    const priority = used[at]!.priority;
    let end = at;
    while (end < used.length && used[end]!.priority === priority) end++;
    const tier = used.slice(at, end);
    const total = tier.reduce((sum, t) => sum + t.weight, 0);
    const names = tier.map((t) => `${t.upstream ?? defaultUpstream}/${t.model}${tier.length > 1 ? ` (${Math.round((t.weight / total) * 1000) / 10}%)` : ''}`);
    parts.push(at === 0 ? names.join(', ') : `then, as fallback (priority ${priority}), ${names.join(', ')}`);
    at = end;
  }
  return parts.join('; ');
}

function status(route: KubeRouteInput, accepted: boolean, reason: RouteStatus['reason'], message: string): RouteStatus {
  return { namespace: route.namespace, name: route.name, generation: route.generation, accepted, reason, message };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
