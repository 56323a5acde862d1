/**
 * Who a request is and what its consumer may do: the compiled form the
 * snapshot holds and the pipeline carries from authenticate on. Part 2 of
 * issue 16 (limits, the limiter, usage) builds against these shapes.
 */

export type LimitScope = 'key' | 'consumer';

export interface RateLimit {
  readonly limit: number;
  readonly scope: LimitScope;
}

export interface PolicyLimits {
  readonly requestsPerMinute: RateLimit | null;
  readonly tokensPerMinute: RateLimit | null;
  readonly tokensPerDay: RateLimit | null;
  /** Concurrent streams per key. */
  readonly concurrentStreams: number | null;
}

export interface ConsumerPolicy {
  /** 'file' or 'ClientPolicy ns/name'. */
  readonly source: string;
  /** The compiled allow-list; () => true when none. */
  readonly models: (model: string) => boolean;
  readonly limits: PolicyLimits;
}

/** Who a request is, after authentication: what the pipeline carries from authenticate on. */
export interface Principal {
  readonly keyId: string;
  /** e.g. 'team-a/client-keys' (Kubernetes) or the file consumer's name. */
  readonly consumer: string;
  /** The tenant (Kubernetes keys); null for file keys. */
  readonly namespace: string | null;
  readonly policy: ConsumerPolicy | null;
}

/** No limit at all: a policy that only restricts models. */
export const NO_LIMITS: PolicyLimits = { requestsPerMinute: null, tokensPerMinute: null, tokensPerDay: null, concurrentStreams: null };
