import type { OTLP_PROTOCOLS, TRACE_SAMPLERS } from './schema.js';

/**
 * The plain data every config source produces and the snapshot builder
 * consumes. No Kubernetes types: the kube source translates into these.
 */

import type { LabelSelector } from '../policy/label-selector.js';
import type { PolicyLimits } from '../policy/types.js';

export interface UpstreamSpec {
  readonly name: string;
  /** scheme://host:port */
  readonly origin: string;
  /** Path prefix that replaces the client's `/v1`, e.g. `/v1` or `/openai/v1`; no trailing slash. */
  readonly basePath: string;
  /** Where the upstream key comes from; resolved into `apiKey` by the snapshot builder. */
  readonly apiKey: string | null;
  readonly apiKeySecret: SecretRef | null;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  /** Requests in flight at once; null: no cap. Past it requests wait up to the queue timeout. */
  readonly maxConnections: number | null;
  readonly queueTimeoutMs: number;
  /** Idle keep-alive connections kept for reuse. */
  readonly maxIdleConnections: number;
  /** PEM of the CA that signs an https upstream's certificate; null = the system's CAs. */
  readonly tlsCa: string | null;
  readonly tlsInsecureSkipVerify: boolean;
  readonly retry: RetrySpec;
  readonly outlier: OutlierSpec;
  /** SNI and the name the certificate must carry; null = the URL's host. */
  readonly tlsServername: string | null;
  /** mTLS: the client certificate read from files; null when none or when it comes from a Secret. */
  readonly tlsClientCert: ClientCertificate | null;
  /** mTLS: a kubernetes.io/tls Secret (tls.crt, tls.key) holding the client certificate; resolved by the snapshot builder. */
  readonly tlsClientCertSecret: SecretName | null;
  /** auto: HTTP/2 when an https upstream offers it (ALPN); on: always (h2c with prior knowledge on http); off: HTTP/1.1. */
  readonly http2: Http2Mode;
  /** The upstream's own forward proxy; null: `envProxy`, if any. */
  readonly proxy: ProxySpec | null;
  /** The process's HTTP_PROXY/HTTPS_PROXY/NO_PROXY, for an upstream without a proxy of its own; null when none applies. */
  readonly envProxy: EnvProxy | null;
}

/** What makes an attempt worth another try: a failure before any answer (connect, headers timeout, reset before any byte) or a status. */
export type RetryCondition = 'connect_failure' | 'headers_timeout' | 'reset' | number;

export interface RetrySpec {
  /** Tries of one target per request, the first included. */
  readonly attempts: number;
  /** Before the n-th try of the same target: a random wait up to min(max, base * 2^(n-2)) (full jitter). */
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly conditions: readonly RetryCondition[];
}

export interface OutlierSpec {
  /** Failures in a row that eject the upstream; 0: never ejected. */
  readonly consecutiveFailures: number;
  /** The first ejection's length, doubled by each ejection in a row up to the max. */
  readonly ejectionMs: number;
  readonly maxEjectionMs: number;
  /** Ejections stop while this share of the configured upstreams is ejected. */
  readonly maxEjectedPercent: number;
}

export type Http2Mode = 'auto' | 'on' | 'off';

/** PEM certificate (chain) and private key. */
export interface ClientCertificate {
  readonly cert: string;
  readonly key: string;
}

export interface SecretName {
  readonly namespace: string | null;
  readonly name: string;
}

export interface ProxySpec {
  /** http(s)://host:port, never with credentials. */
  readonly url: string;
  readonly username: string | null;
  /** Resolved from a file or the environment; a Secret's is resolved by the snapshot builder. */
  readonly password: string | null;
  readonly passwordSecret: SecretRef | null;
}

/** The proxy environment variables, as undici's EnvHttpProxyAgent reads them (lower case first). */
export interface EnvProxy {
  readonly httpProxy: string | null;
  /** Null: https upstreams use `httpProxy` too (undici's rule). */
  readonly httpsProxy: string | null;
  /** Hosts (and ports) reached without the proxy; '' for none. */
  readonly noProxy: string;
}

export interface SecretRef {
  readonly namespace: string | null;
  readonly name: string;
  readonly key: string;
}

export interface RouteTarget {
  readonly model: string;
  /** Upstream name; null means the default upstream. */
  readonly upstream: string | null;
  readonly weight: number;
  /** Lower first; higher priorities are fallbacks. */
  readonly priority: number;
}

/**
 * Which model name an answer carries: the one the client asked for, written
 * back over the upstream's (the seed's behaviour), or the upstream's own.
 */
export type AnswerModel = 'requested' | 'upstream';

export interface RouteSpec {
  readonly model: string;
  readonly targets: readonly RouteTarget[];
  /** This route's answer_model; null: the gateway's setting. */
  readonly answerModel: AnswerModel | null;
  /** Where it came from, for logs: `file` or `ModelRoute ns/name`. */
  readonly source: string;
}

/** A client key as its SHA-256 digest: sources hash once, so the raw key never reaches the snapshot. */
export interface ClientKeySpec {
  readonly id: string;
  readonly digest: string;
}

/** A consumer's policy as a source states it: the allow-list's patterns (null: every model) and the limits. */
export interface PolicySpec {
  readonly models: readonly string[] | null;
  readonly limits: PolicyLimits;
}

/** A consumer of the config file: a named group of keys and its policy. */
export interface ConsumerSpec {
  readonly name: string;
  readonly keys: readonly ClientKeySpec[];
  readonly policy: PolicySpec | null;
}

export interface GatewaySettings {
  readonly bodyLimit: number;
  readonly unknownModels: 'passthrough' | 'reject';
  /** What answers to a request a route sent upstream under another name carry, unless the route says. */
  readonly answerModel: AnswerModel;
  readonly logLevel: string;
  readonly accessLog: boolean;
  readonly port: number | null;
  readonly drainDelayMs: number;
  readonly shutdownTimeoutMs: number;
  readonly defaultUpstream: string;
  /** From a request's arrival, the time within which retries and fallbacks may start. */
  readonly retryBudgetMs: number;
}

export interface KubernetesSettings {
  readonly enabled: boolean;
  readonly namespaces: readonly string[];
  readonly clientKeySelector: string;
  readonly watchTimeoutSeconds: number;
  /** The coordination.k8s.io Lease in the gateway's namespace that the replica writing statuses holds. */
  readonly leaseName: string;
}

/** The config's `tracing:` block; null fields fall back to the OTEL_* environment (see observability/tracing/settings). */
export interface TracingConfig {
  readonly enabled: boolean;
  readonly endpoint: string | null;
  readonly protocol: (typeof OTLP_PROTOCOLS)[number] | null;
  readonly timeoutMs: number | null;
  readonly serviceName: string | null;
  readonly sampler: (typeof TRACE_SAMPLERS)[number] | null;
  readonly samplerArg: number | null;
  readonly maxQueueSize: number | null;
  readonly maxExportBatchSize: number | null;
  readonly scheduleDelayMs: number | null;
  readonly exportTimeoutMs: number | null;
}

/** How to reach the Redis that replicas share their counters through: `rate_limits.redis`, secrets read. */
export interface RedisSettings {
  /** redis:// or rediss:// (TLS), with an optional /<db>. */
  readonly url: string;
  readonly username: string | null;
  readonly password: string | null;
  /** PEM of a private CA for rediss://; null: the system's. */
  readonly tlsCa: string | null;
  readonly tlsInsecureSkipVerify: boolean;
  /** A call slower than this counts as Redis being away. */
  readonly timeoutMs: number;
  /** Prepended to every key, so several gateways (or other users) can share one Redis. */
  readonly keyPrefix: string;
}

export interface RateLimitSettings {
  /** null: counters in each process. */
  readonly redis: RedisSettings | null;
  /** Redis away: let requests through (true) or refuse them (false). */
  readonly failOpen: boolean;
}

export interface UsageSettings {
  /** Ask for a stream's usage (stream_options.include_usage) when the client did not, and hide it from the client. */
  readonly requestStreamUsage: boolean;
}

/** What the config file yields once its secrets are resolved. */
export interface FileInputs {
  readonly settings: GatewaySettings;
  readonly kubernetes: KubernetesSettings;
  readonly tracing: TracingConfig;
  readonly rateLimits: RateLimitSettings;
  readonly usage: UsageSettings;
  readonly upstreams: readonly UpstreamSpec[];
  readonly routes: readonly RouteSpec[];
  /** `allowed_keys` and `client_keys`: each key id is a consumer of its own, without a policy. */
  readonly clientKeys: readonly ClientKeySpec[];
  /** The `consumers` block. */
  readonly consumers: readonly ConsumerSpec[];
}

/** A ModelRoute as the kube source reports it. */
export interface KubeRouteInput {
  readonly namespace: string;
  readonly name: string;
  readonly generation: number;
  /** creationTimestamp in ms since the epoch. */
  readonly createdAt: number;
  readonly model: string;
  readonly targets: readonly { model: string; upstream?: string | undefined; weight?: number | undefined; priority?: number | undefined }[];
  readonly answerModel?: AnswerModel | undefined;
  /** Why the object cannot be used (a spec that slipped past the CRD's validation), else null. */
  readonly invalid: string | null;
}

/** A client-key Secret: one consumer, named `namespace/name`, each data entry one key. */
export interface KubeConsumerInput {
  readonly namespace: string;
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly keys: readonly ClientKeySpec[];
}

/** A ClientPolicy as the kube source reports it. */
export interface KubePolicyInput {
  readonly namespace: string;
  readonly name: string;
  readonly generation: number;
  /** creationTimestamp in ms since the epoch. */
  readonly createdAt: number;
  /** The client-key Secrets of its namespace it governs: by name, or by label selector (exactly one is set). */
  readonly secretNames: readonly string[] | null;
  readonly selector: LabelSelector | null;
  readonly policy: PolicySpec;
  /** Why the object cannot be used (a spec that slipped past the CRD's validation), else null. */
  readonly invalid: string | null;
}

export interface KubeInputs {
  readonly routes: readonly KubeRouteInput[];
  readonly consumers: readonly KubeConsumerInput[];
  readonly policies: readonly KubePolicyInput[];
  /** `namespace/name/key` -> value, for the Secrets upstreams name (keys, proxy passwords, client certificates). */
  readonly upstreamKeys: ReadonlyMap<string, string>;
}

export type RouteCondition = 'Accepted' | 'Conflict' | 'UnknownUpstream' | 'Invalid';

/** The `Accepted` condition the gateway reports on one of its custom resources. */
export interface ResourceStatus<Reason extends string = string> {
  readonly namespace: string;
  readonly name: string;
  readonly generation: number;
  readonly accepted: boolean;
  readonly reason: Reason;
  readonly message: string;
}

/** The status the gateway reports on a ModelRoute. */
export type RouteStatus = ResourceStatus<RouteCondition>;

export type PolicyCondition = 'Accepted' | 'Conflict' | 'Invalid';

/** The status the gateway reports on a ClientPolicy. */
export type PolicyStatus = ResourceStatus<PolicyCondition>;
