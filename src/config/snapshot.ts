import type {
  ClientKeySpec,
  FileInputs,
  GatewaySettings,
  KubeInputs,
  KubeRouteInput,
  KubernetesSettings,
  RouteSpec,
  RouteStatus,
  UpstreamSpec,
} from './model.js';
import { keyDigest } from './key-digest.js';

/** An upstream ready for the request path: the Authorization header is precomputed. */
export interface Upstream extends UpstreamSpec {
  readonly authorization: string | null;
  /** The cap on requests in flight and the queue's timeout, one object per snapshot. */
  readonly admission: { readonly maxInFlight: number | null; readonly queueTimeoutMs: number };
  /** Upstreams with equal pool keys share one connection pool across snapshots. */
  readonly poolKey: string;
}

export interface CompiledTarget {
  readonly upstream: Upstream;
  readonly model: string;
}

export interface CompiledRoute {
  readonly model: string;
  readonly source: string;
  readonly targets: readonly CompiledTarget[];
  /** Running sums of the targets' weights, for the weighted pick. */
  readonly cumulativeWeights: readonly number[];
}

/**
 * Everything a request needs, immutable and swapped in one assignment. A
 * request reads it once and finishes on it, whatever reloads happen meanwhile.
 */
export interface RoutingSnapshot {
  readonly version: number;
  readonly settings: GatewaySettings;
  readonly kubernetes: KubernetesSettings;
  readonly upstreams: ReadonlyMap<string, Upstream>;
  readonly defaultUpstream: Upstream;
  readonly routes: ReadonlyMap<string, CompiledRoute>;
  /** Client key digest -> key id. */
  readonly keys: ReadonlyMap<string, string>;
  /** The verdict on every ModelRoute, for the status writer. */
  readonly routeStatuses: readonly RouteStatus[];
}

export class SnapshotError extends Error {
  readonly code = 'SNAPSHOT_INVALID';
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotError';
  }
}

export interface SnapshotInputs {
  readonly file: FileInputs;
  readonly kube: KubeInputs | null;
  /** The gateway's own namespace, for Secret references without one. */
  readonly namespace: string;
  readonly version: number;
}

/** Merges every source into a snapshot; a pure function of its inputs. */
export function buildSnapshot(inputs: SnapshotInputs): RoutingSnapshot {
  const { file, kube } = inputs;
  const upstreams = new Map<string, Upstream>();
  for (const spec of file.upstreams) {
    upstreams.set(spec.name, compileUpstream(spec, kube, inputs.namespace));
  }
  const defaultUpstream = upstreams.get(file.settings.defaultUpstream);
  if (defaultUpstream === undefined) {
    throw new SnapshotError(`the default upstream '${file.settings.defaultUpstream}' is not defined`);
  }

  const routes = new Map<string, CompiledRoute>();
  for (const spec of file.routes) {
    routes.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
  }
  let routeStatuses: RouteStatus[] = [];
  if (kube !== null) {
    const resolved = resolveKubeRoutes(kube.routes, upstreams);
    routeStatuses = resolved.statuses;
    // Kubernetes routes win over file redirects for the same model.
    for (const spec of resolved.routes) routes.set(spec.model, compileRoute(spec, upstreams, defaultUpstream));
  }

  const keys = new Map<string, string>();
  addKeys(keys, file.clientKeys);
  if (kube !== null) addKeys(keys, kube.clientKeys);

  return {
    version: inputs.version,
    settings: file.settings,
    kubernetes: file.kubernetes,
    upstreams,
    defaultUpstream,
    routes,
    keys,
    routeStatuses,
  };
}

function addKeys(keys: Map<string, string>, specs: readonly ClientKeySpec[]): void {
  for (const spec of specs) if (!keys.has(spec.digest)) keys.set(spec.digest, spec.id);
}

function compileUpstream(spec: UpstreamSpec, kube: KubeInputs | null, namespace: string): Upstream {
  let apiKey = spec.apiKey;
  if (spec.apiKeySecret !== null) {
    const ref = spec.apiKeySecret;
    apiKey = kube?.upstreamKeys.get(`${ref.namespace ?? namespace}/${ref.name}/${ref.key}`) ?? null;
  }
  return {
    ...spec,
    apiKey,
    authorization: apiKey === null || apiKey === '' ? null : `Bearer ${apiKey}`,
    admission: { maxInFlight: spec.maxConnections, queueTimeoutMs: spec.queueTimeoutMs },
    // A changed CA or connection setting needs a new pool; a changed key or timeout does not.
    poolKey: `${spec.origin}|${spec.connectTimeoutMs}|${spec.maxIdleConnections}|${spec.tlsInsecureSkipVerify}|${spec.tlsCa === null ? '' : keyDigest(spec.tlsCa)}`,
  };
}

function compileRoute(spec: RouteSpec, upstreams: ReadonlyMap<string, Upstream>, fallback: Upstream): CompiledRoute {
  const targets: CompiledTarget[] = [];
  const cumulativeWeights: number[] = [];
  let total = 0;
  for (const target of spec.targets) {
    if (target.weight <= 0) continue;
    const upstream = target.upstream === null ? fallback : upstreams.get(target.upstream);
    if (upstream === undefined) throw new SnapshotError(`route '${spec.model}' (${spec.source}) names unknown upstream '${target.upstream}'`);
    total += target.weight;
    targets.push({ upstream, model: target.model });
    cumulativeWeights.push(total);
  }
  if (targets.length === 0) throw new SnapshotError(`route '${spec.model}' (${spec.source}) has no target with a weight above 0`);
  return { model: spec.model, source: spec.source, targets, cumulativeWeights };
}

/** Picks a target by weight; `random` is in [0, 1). */
export function pickTarget(route: CompiledRoute, random: number = Math.random()): CompiledTarget {
  const { targets, cumulativeWeights } = route;
  if (targets.length === 1) return targets[0]!;
  const point = random * cumulativeWeights[cumulativeWeights.length - 1]!;
  for (let i = 0; i < targets.length; i++) {
    if (point < cumulativeWeights[i]!) return targets[i]!;
  }
  return targets[targets.length - 1]!;
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
  candidates.sort(
    (a, b) => a.createdAt - b.createdAt || compare(a.namespace, b.namespace) || compare(a.name, b.name),
  );
  const winners = new Map<string, KubeRouteInput>();
  const routes: RouteSpec[] = [];
  for (const route of candidates) {
    const winner = winners.get(route.model);
    if (winner !== undefined) {
      statuses.push(
        status(route, false, 'Conflict', `model '${route.model}' is already routed by ModelRoute ${winner.namespace}/${winner.name}`),
      );
      continue;
    }
    winners.set(route.model, route);
    statuses.push(status(route, true, 'Accepted', `routes model '${route.model}'`));
    routes.push({
      model: route.model,
      source: `ModelRoute ${route.namespace}/${route.name}`,
      targets: route.targets.map((t) => ({ model: t.model, upstream: t.upstream ?? null, weight: t.weight ?? 1 })),
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
