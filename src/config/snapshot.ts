import type {
  FileInputs,
  GatewaySettings,
  KubeInputs,
  KubernetesSettings,
  ClientKeySpec,
  RateLimitSettings,
  RouteStatus,
  TracingConfig,
  UsageSettings,
} from './model.js';
import { compileUpstream, type Upstream } from './upstream.js';
import { buildRouteTable, RouteError, type CompiledRoute } from '../routing/table.js';

/**
 * Everything a request needs, immutable and swapped in one assignment. A
 * request reads it once and finishes on it, whatever reloads happen meanwhile.
 */
export interface RoutingSnapshot {
  readonly version: number;
  readonly settings: GatewaySettings;
  readonly kubernetes: KubernetesSettings;
  /** Read when tracing starts (with the first config that enables it); later changes wait for a restart. */
  readonly tracing: TracingConfig;
  /** Where limit counters live; the gateway swaps its counter store when this changes. */
  readonly rateLimits: RateLimitSettings;
  readonly usage: UsageSettings;
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
  for (const spec of file.upstreams) upstreams.set(spec.name, compileUpstream(spec, kube, inputs.namespace));
  const defaultUpstream = upstreams.get(file.settings.defaultUpstream);
  if (defaultUpstream === undefined) {
    throw new SnapshotError(`the default upstream '${file.settings.defaultUpstream}' is not defined`);
  }

  let table: ReturnType<typeof buildRouteTable>;
  try {
    table = buildRouteTable(file.routes, kube?.routes ?? null, upstreams, defaultUpstream);
  } catch (error) {
    if (error instanceof RouteError) throw new SnapshotError(error.message);
    throw error;
  }

  const keys = new Map<string, string>();
  addKeys(keys, file.clientKeys);
  if (kube !== null) addKeys(keys, kube.clientKeys);

  return {
    version: inputs.version,
    settings: file.settings,
    kubernetes: file.kubernetes,
    tracing: file.tracing,
    rateLimits: file.rateLimits,
    usage: file.usage,
    upstreams,
    defaultUpstream,
    routes: table.routes,
    keys,
    routeStatuses: table.statuses,
  };
}

function addKeys(keys: Map<string, string>, specs: readonly ClientKeySpec[]): void {
  for (const spec of specs) if (!keys.has(spec.digest)) keys.set(spec.digest, spec.id);
}
