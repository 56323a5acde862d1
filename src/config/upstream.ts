import { keyDigest } from './key-digest.js';
import type { KubeInputs, UpstreamSpec } from './model.js';

/** An upstream ready for the request path: its key resolved, the Authorization header precomputed. */
export interface Upstream extends UpstreamSpec {
  readonly authorization: string | null;
  /** Values that must never reach a client (the upstream's key): redacted from response headers and bodies. */
  readonly secrets: readonly string[];
  /** The cap on requests in flight and the queue's timeout, one object per snapshot. */
  readonly admission: { readonly maxInFlight: number | null; readonly queueTimeoutMs: number };
  /** Upstreams with equal pool keys share one transport (connection pool) across snapshots. */
  readonly poolKey: string;
  /** `retry.conditions` as the attempt loop reads them. */
  readonly retryOn: RetryOn;
}

/** The retry conditions, one flag per kind of failure and the statuses. */
export interface RetryOn {
  readonly connectFailure: boolean;
  readonly headersTimeout: boolean;
  readonly reset: boolean;
  readonly statuses: ReadonlySet<number>;
}

function retryOn(conditions: UpstreamSpec['retry']['conditions']): RetryOn {
  const statuses = new Set<number>();
  for (const condition of conditions) if (typeof condition === 'number') statuses.add(condition);
  return {
    connectFailure: conditions.includes('connect_failure'),
    headersTimeout: conditions.includes('headers_timeout'),
    reset: conditions.includes('reset'),
    statuses,
  };
}

/** Resolves an upstream's key (inline, or from a watched Secret) and precomputes what requests need. */
export function compileUpstream(spec: UpstreamSpec, kube: KubeInputs | null, namespace: string): Upstream {
  let apiKey = spec.apiKey;
  if (spec.apiKeySecret !== null) {
    const ref = spec.apiKeySecret;
    apiKey = kube?.upstreamKeys.get(`${ref.namespace ?? namespace}/${ref.name}/${ref.key}`) ?? null;
  }
  const hasKey = apiKey !== null && apiKey !== '';
  return {
    ...spec,
    apiKey,
    authorization: hasKey ? `Bearer ${apiKey}` : null,
    secrets: hasKey ? [apiKey!] : [],
    admission: { maxInFlight: spec.maxConnections, queueTimeoutMs: spec.queueTimeoutMs },
    retryOn: retryOn(spec.retry.conditions),
    // A changed CA or connection setting needs a new pool; a changed key or timeout does not.
    poolKey: `${spec.origin}|${spec.connectTimeoutMs}|${spec.maxIdleConnections}|${spec.tlsInsecureSkipVerify}|${spec.tlsCa === null ? '' : keyDigest(spec.tlsCa)}`,
  };
}
