import type {
  FileInputs,
  GatewaySettings,
  KubeInputs,
  KubernetesSettings,
  PolicyStatus,
  RateLimitSettings,
  RouteStatus,
  TracingConfig,
  UsageSettings,
} from './model.js';
import { redactableSecrets } from './secrets.js';
import { compileUpstream, type Upstream } from './upstream.js';
import { resolveClientPolicies } from '../policy/client-policies.js';
import { principalsByDigest } from '../policy/principals.js';
import type { ConsumerPolicy, Principal } from '../policy/types.js';
import { buildRouteTable, RouteError, type CompiledRoute, type RouteTable } from '../routing/table.js';

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
  /** The shared routes, seen by every key: file routes, then the gateway namespace's ModelRoutes. */
  readonly routes: ReadonlyMap<string, CompiledRoute>;
  /** Namespace -> its ModelRoutes, seen first by that namespace's keys (routing/resolve.ts). */
  readonly tenantRoutes: ReadonlyMap<string, ReadonlyMap<string, CompiledRoute>>;
  /** Routes in effect over all scopes. */
  readonly routeCount: number;
  /** Client key digest -> who the key is: key id, consumer, tenant, policy. */
  readonly keys: ReadonlyMap<string, Principal>;
  /** The verdict on every ModelRoute, for the status writer. */
  readonly routeStatuses: readonly RouteStatus[];
  /** The verdict on every ClientPolicy, for the status writer. */
  readonly policyStatuses: readonly PolicyStatus[];
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
  /** The gateway's own namespace: Secret references without one, and the shared scope of ModelRoutes. */
  readonly namespace: string;
  readonly version: number;
}

const NO_POLICIES: ReadonlyMap<string, ConsumerPolicy> = new Map();

/** Merges every source into a snapshot; a pure function of its inputs. */
export function buildSnapshot(inputs: SnapshotInputs): RoutingSnapshot {
  const { file, kube } = inputs;
  const compiled = file.upstreams.map((spec) => compileUpstream(spec, kube, inputs.namespace));
  // Any upstream's answer may carry any secret (one upstream proxying another, a shared debugging echo): each is cleaned of all.
  const secrets = redactableSecrets(compiled.flatMap((upstream) => upstream.secrets));
  const upstreams = new Map<string, Upstream>();
  for (const upstream of compiled) upstreams.set(upstream.name, { ...upstream, secrets });
  const defaultUpstream = upstreams.get(file.settings.defaultUpstream);
  if (defaultUpstream === undefined) {
    throw new SnapshotError(`the default upstream '${file.settings.defaultUpstream}' is not defined`);
  }

  let table: RouteTable;
  try {
    table = buildRouteTable(file.routes, kube?.routes ?? null, upstreams, defaultUpstream, inputs.namespace);
  } catch (error) {
    if (error instanceof RouteError) throw new SnapshotError(error.message);
    throw error;
  }

  const policies = kube === null ? null : resolveClientPolicies(kube.policies, kube.consumers);
  const keys = principalsByDigest(file, kube?.consumers ?? null, policies?.byConsumer ?? NO_POLICIES);

  return {
    version: inputs.version,
    settings: file.settings,
    kubernetes: file.kubernetes,
    tracing: file.tracing,
    rateLimits: file.rateLimits,
    usage: file.usage,
    upstreams,
    defaultUpstream,
    routes: table.shared,
    tenantRoutes: table.tenants,
    routeCount: table.size,
    keys,
    routeStatuses: table.statuses,
    policyStatuses: policies?.statuses ?? [],
  };
}
