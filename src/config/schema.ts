import { z } from 'zod';

/**
 * The config file (JSON or YAML). The seed's keys (`api`, `allowed_keys`,
 * `model_redirects`) keep working unchanged; everything else is optional.
 */

const SIZE_UNITS: Record<string, number> = { b: 1, kb: 1000, kib: 1024, mb: 1000 ** 2, mib: 1024 ** 2, gb: 1000 ** 3, gib: 1024 ** 3 };

/** A byte size: a number of bytes, or a string such as "8MiB" or "512 KiB". */
export const byteSize = z.union([
  z.number().int().positive(),
  z
    .string()
    .regex(/^\s*\d+(\.\d+)?\s*([kmg]i?b|b)?\s*$/i, 'expected a size such as 8388608, "8MiB" or "512KiB"')
    .transform((text) => {
      const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(text)!;
      return Math.floor(Number(match[1]) * (SIZE_UNITS[(match[2] || 'b').toLowerCase()] ?? 1));
    }),
]);

const nonEmpty = z.string().min(1);
const upstreamName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/, 'expected a lowercase name of letters, digits and dashes')
  .max(63);

/** A model name: printable, no control characters (it reaches headers and logs). */
export const modelName = z
  .string()
  .min(1)
  .max(256)
  // eslint-disable-next-line no-control-regex -- refusing control characters is the point
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'must not contain control characters');

const timeoutMs = z
  .number()
  .int()
  .min(0)
  .max(24 * 3600 * 1000);

/** What makes an attempt at an upstream worth another try: a failure before any answer, or an answer's status. */
export const retryCondition = z.union([
  z.enum(['connect_failure', 'headers_timeout', 'reset']),
  z.number().int().min(400, 'retry on a status from 400 to 599').max(599, 'retry on a status from 400 to 599'),
]);

export const DEFAULT_RETRY = {
  attempts: 2,
  backoff: { base_ms: 100, max_ms: 2_000 },
  conditions: ['connect_failure', 429, 502, 503, 504] as z.infer<typeof retryCondition>[],
};

/** How often a target is tried per request, how long to wait before trying it again, and on what. */
const retrySchema = z
  .object({
    /** Tries of one target per request, the first included; 1: never the same target twice (fallbacks still happen). */
    attempts: z.number().int().min(1).max(10).default(DEFAULT_RETRY.attempts),
    backoff: z
      .object({ base_ms: timeoutMs.default(DEFAULT_RETRY.backoff.base_ms), max_ms: timeoutMs.default(DEFAULT_RETRY.backoff.max_ms) })
      .strict()
      .refine((b) => b.base_ms <= b.max_ms, { message: 'base_ms must not exceed max_ms' })
      .default(DEFAULT_RETRY.backoff),
    conditions: z.array(retryCondition).max(64).default(DEFAULT_RETRY.conditions),
  })
  .strict();

export const DEFAULT_OUTLIER = { consecutive_failures: 5, ejection_ms: 30_000, max_ejection_ms: 300_000, max_ejected_percent: 50 };

/** When an upstream is taken out of rotation (ejected) and for how long. */
const outlierSchema = z
  .object({
    /** Failures in a row (connect, timeout, reset, 5xx) that eject the upstream; 0: never ejected. */
    consecutive_failures: z.number().int().min(0).max(10_000).default(DEFAULT_OUTLIER.consecutive_failures),
    /** The first ejection's length; each ejection in a row doubles it. */
    ejection_ms: timeoutMs.min(1).default(DEFAULT_OUTLIER.ejection_ms),
    max_ejection_ms: timeoutMs.min(1).default(DEFAULT_OUTLIER.max_ejection_ms),
    /** At most this share of the configured upstreams is ejected at once. */
    max_ejected_percent: z.number().int().min(0).max(100).default(DEFAULT_OUTLIER.max_ejected_percent),
  })
  .strict()
  .refine((o) => o.ejection_ms <= o.max_ejection_ms, { message: 'ejection_ms must not exceed max_ejection_ms' });

/** A secret given inline, by environment variable, or by a file (e.g. a mounted Secret). */
const secretSources = {
  key: nonEmpty.optional(),
  key_env: nonEmpty.optional(),
  key_file: nonEmpty.optional(),
};

/** A key id, or a file consumer's name: what logs and metrics show. */
const keyId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected letters, digits, ".", "_" or "-" (at most 63)');

/** One limit of a policy: how many per window, counted per key or shared by the whole consumer. */
const rateLimit = (max: number) =>
  z
    .object({ limit: z.number().int().min(1).max(max), per: z.enum(['key', 'consumer']) })
    .strict()
    .optional();

/** The largest limits accepted: far above any real budget, small enough to stay exact in a double. */
export const MAX_REQUESTS_PER_MINUTE = 1_000_000_000;
export const MAX_TOKENS = 1_000_000_000_000;
export const MAX_CONCURRENT_STREAMS = 1_000_000;

/** A consumer's policy (the file's form of a ClientPolicy's spec, less the selection). */
export const policySchema = z
  .object({
    /** Client-facing model names the consumer may use; `*` globs. Absent: every model. */
    models: z.array(modelName).min(1).max(256).optional(),
    limits: z
      .object({
        requests_per_minute: rateLimit(MAX_REQUESTS_PER_MINUTE),
        tokens_per_minute: rateLimit(MAX_TOKENS),
        tokens_per_day: rateLimit(MAX_TOKENS),
        /** Per key. */
        concurrent_streams: z.number().int().min(1).max(MAX_CONCURRENT_STREAMS).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

/** A Secret's name (a DNS subdomain). */
const secretName = z
  .string()
  .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a Secret name: lowercase letters, digits, "-" and "."')
  .max(253);
const secretRef = z.object({ name: secretName, key: z.string().min(1).max(253), namespace: upstreamName.optional() }).strict();

/** A DNS name (no port, no IP literal check: a name the certificate carries). */
const hostName = z
  .string()
  .regex(/^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$/, 'expected a host name')
  .max(253);

/**
 * An upstream's forward proxy. Credentials never go in the URL (the config may
 * be rendered into a ConfigMap): a user name, and a password from a file, an
 * environment variable or a watched Secret.
 */
const proxySchema = z
  .object({
    url: z
      .url({ protocol: /^https?$/, error: 'expected an http(s) URL of the proxy' })
      .refine((url) => {
        const parsed = new URL(url);
        return parsed.username === '' && parsed.password === '';
      }, 'no credentials in the proxy URL: use username and password_file, password_env or password_secret')
      .refine((url) => new URL(url).pathname === '/', 'a proxy URL has no path: http(s)://host:port'),
    username: z
      .string()
      .min(1)
      .max(256)
      .regex(/^[^:\r\n]+$/, 'a user name without ":" or line breaks')
      .optional(),
    password_file: nonEmpty.optional(),
    password_env: nonEmpty.optional(),
    password_secret: secretRef.optional(),
  })
  .strict()
  .refine((p) => [p.password_file, p.password_env, p.password_secret].filter((v) => v !== undefined).length <= 1, {
    message: 'give at most one of password_file, password_env, password_secret',
  })
  .refine((p) => p.username !== undefined || (p.password_file === undefined && p.password_env === undefined && p.password_secret === undefined), {
    message: 'a proxy password needs a username',
  });

export const upstreamSchema = z
  .object({
    url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }),
    api_key: nonEmpty.optional(),
    api_key_env: nonEmpty.optional(),
    api_key_file: nonEmpty.optional(),
    /** A key held in a Kubernetes Secret, watched live (namespace: the gateway's own unless given). */
    api_key_secret: secretRef.optional(),
    timeouts: z
      .object({
        connect_ms: timeoutMs.default(5_000),
        headers_ms: timeoutMs.default(600_000),
        idle_ms: timeoutMs.default(300_000),
      })
      .strict()
      .default({ connect_ms: 5_000, headers_ms: 600_000, idle_ms: 300_000 }),
    /** In-flight requests (one connection each) to this upstream; absent: no cap, nothing ever queues. */
    max_connections: z.number().int().min(1).max(1_000_000).optional(),
    /** With max_connections reached, how long a request waits for a slot before 503 upstream_saturated. */
    queue_timeout_ms: timeoutMs.default(10_000),
    /** Idle keep-alive connections kept for reuse; more are closed as they free up. */
    max_idle_connections: z.number().int().min(0).max(65_536).default(256),
    retry: retrySchema.default(DEFAULT_RETRY),
    outlier: outlierSchema.default(DEFAULT_OUTLIER),
    /** https upstreams: a private CA (e.g. in-cluster), the name to verify, a client certificate (mTLS); no verification for trials only. */
    tls: z
      .object({
        ca_file: nonEmpty.optional(),
        insecure_skip_verify: z.boolean().default(false),
        /** SNI and the name the upstream's certificate must carry, when it is not the URL's host (e.g. an IP address). */
        servername: hostName.optional(),
        /** mTLS: a PEM certificate and its key, as files ... */
        client_cert_file: nonEmpty.optional(),
        client_key_file: nonEmpty.optional(),
        /** ... or a kubernetes.io/tls Secret (entries tls.crt and tls.key), watched live. */
        client_cert_secret: z.object({ name: secretName, namespace: upstreamName.optional() }).strict().optional(),
      })
      .strict()
      .refine((t) => (t.client_cert_file === undefined) === (t.client_key_file === undefined), {
        message: 'give client_cert_file and client_key_file together',
      })
      .refine((t) => t.client_cert_file === undefined || t.client_cert_secret === undefined, {
        message: 'give client_cert_file/client_key_file or client_cert_secret, not both',
      })
      .optional(),
    /** HTTP/2: auto = when an https upstream offers it (ALPN); on = always (h2c, prior knowledge, on http); off = HTTP/1.1. */
    http2: z.enum(['auto', 'on', 'off']).default('auto'),
    /** A forward proxy for this upstream; without one, the process's HTTPS_PROXY/HTTP_PROXY/NO_PROXY apply. */
    proxy: proxySchema.optional(),
  })
  .strict()
  .refine((u) => [u.api_key, u.api_key_env, u.api_key_file, u.api_key_secret].filter((v) => v !== undefined).length <= 1, {
    message: 'give at most one of api_key, api_key_env, api_key_file, api_key_secret',
  });

export const clientKeySchema = z
  .object({
    id: keyId,
    ...secretSources,
  })
  .strict()
  .refine((k) => [k.key, k.key_env, k.key_file].filter((v) => v !== undefined).length === 1, {
    message: 'give exactly one of key, key_env, key_file',
  });

/** A named group of client keys and its policy. No keys is allowed: emptying the list revokes them all. */
export const consumerSchema = z
  .object({
    name: keyId,
    keys: z.array(clientKeySchema).default([]),
    policy: policySchema.optional(),
  })
  .strict()
  .refine((c) => new Set(c.keys.map((k) => k.id)).size === c.keys.length, { message: 'key ids must be unique within a consumer', path: ['keys'] });

/** A route target's priority: lower first, default 0. */
export const targetPriority = z.number().int().min(0).max(100);

export const routeTargetSchema = z
  .object({
    model: modelName,
    upstream: upstreamName.optional(),
    weight: z.number().int().min(0).max(1000).optional(),
    /** Lower first; a higher priority is a fallback, used when no target of a lower one is available or answered. */
    priority: targetPriority.optional(),
  })
  .strict();

/** The model name answers carry: the one requested (written over the upstream's), or the upstream's. */
export const answerModelSchema = z.enum(['requested', 'upstream']);

export const routeSchema = z
  .object({
    model: modelName,
    targets: z.array(routeTargetSchema).min(1).max(16),
    answer_model: answerModelSchema.optional(),
  })
  .strict()
  .refine((r) => r.targets.some((t) => (t.weight ?? 1) > 0), { message: 'at least one target needs a weight above 0' });

export const kubernetesSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** [] = the gateway's own namespace; ["*"] = all namespaces. */
    namespaces: z.array(z.union([z.literal('*'), upstreamName])).default([]),
    client_key_selector: z.string().min(1).default('apiproxy.io/client-keys=true'),
    /** Reconnect when a watch has been silent this long. */
    watch_timeout_seconds: z.number().int().min(5).max(3600).default(300),
    /** The Lease (in the gateway's namespace) held by the one replica that writes statuses. */
    lease_name: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'expected a lowercase name of letters, digits, "-" and "."')
      .max(253)
      .default('api-proxy'),
  })
  .strict();

/** OTLP protocols the exporter speaks (OTEL_EXPORTER_OTLP_PROTOCOL's values). */
export const OTLP_PROTOCOLS = ['http/protobuf', 'http/json', 'grpc'] as const;

/** The samplers of OTEL_TRACES_SAMPLER that the gateway builds. */
export const TRACE_SAMPLERS = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
] as const;

/**
 * OpenTelemetry tracing. Off by default. Each field left out falls back to
 * the spec's environment variable (named beside it), then the spec's default.
 */
export const tracingSchema = z
  .object({
    enabled: z.boolean().default(false),
    /** OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL (`/v1/traces` is added for HTTP). */
    endpoint: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }).optional(),
    /** OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL. */
    protocol: z.enum(OTLP_PROTOCOLS).optional(),
    /** OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT: how long one export may take. */
    timeout_ms: timeoutMs.optional(),
    /** OTEL_SERVICE_NAME. */
    service_name: z.string().min(1).max(255).optional(),
    /** OTEL_TRACES_SAMPLER. */
    sampler: z.enum(TRACE_SAMPLERS).optional(),
    /** OTEL_TRACES_SAMPLER_ARG: the ratio of the traceidratio samplers. */
    sampler_arg: z.number().min(0).max(1).optional(),
    /** OTEL_BSP_MAX_QUEUE_SIZE: finished spans waiting for export; past it new spans are dropped (and counted). */
    max_queue_size: z.number().int().min(1).max(1_000_000).optional(),
    /** OTEL_BSP_MAX_EXPORT_BATCH_SIZE. */
    max_export_batch_size: z.number().int().min(1).max(1_000_000).optional(),
    /** OTEL_BSP_SCHEDULE_DELAY. */
    schedule_delay_ms: timeoutMs.optional(),
    /** OTEL_BSP_EXPORT_TIMEOUT. */
    export_timeout_ms: timeoutMs.optional(),
  })
  .strict();

/** Counters shared by replicas through Redis; absent, each process counts alone (one replica needs nothing else). */
export const redisSchema = z
  .object({
    url: z.url({ protocol: /^rediss?$/, error: 'expected a redis:// or rediss:// (TLS) URL' }),
    username: nonEmpty.optional(),
    password: nonEmpty.optional(),
    password_env: nonEmpty.optional(),
    password_file: nonEmpty.optional(),
    /** For rediss:// with a private CA, or, for trials only, no verification. */
    tls: z
      .object({ ca_file: nonEmpty.optional(), insecure_skip_verify: z.boolean().default(false) })
      .strict()
      .optional(),
    /** A limiter call slower than this counts as Redis being away (fail_open decides). */
    timeout_ms: z.number().int().min(1).max(60_000).default(250),
    key_prefix: z.string().max(128).default('apiproxy:'),
  })
  .strict()
  .refine((r) => [r.password, r.password_env, r.password_file].filter((v) => v !== undefined).length <= 1, {
    message: 'give at most one of password, password_env, password_file',
  });

export const rateLimitsSchema = z
  .object({
    redis: redisSchema.optional(),
    /** Redis away: true lets requests through unlimited; false refuses them (503 rate_limit_unavailable). */
    fail_open: z.boolean().default(true),
  })
  .strict();

export const usageSchema = z
  .object({
    /**
     * Add stream_options.include_usage to streamed chat and completions requests that lack it, and take
     * what it adds out of the answer; false: such streams report no usage (charged an estimate).
     */
    request_stream_usage: z.boolean().default(true),
  })
  .strict();

export const fileConfigSchema = z
  .object({
    // The seed's keys.
    api: z
      .object({ url: z.url({ protocol: /^https?$/, error: 'expected an http(s) URL' }), key: z.string().optional() })
      .strict()
      .optional(),
    allowed_keys: z.array(nonEmpty).default([]),
    /** alias -> target, or alias -> { model: target, answer_model }. */
    model_redirects: z.record(modelName, z.union([modelName, z.object({ model: modelName, answer_model: answerModelSchema.optional() }).strict()])).default({}),
    // Extensions.
    upstreams: z.record(upstreamName, upstreamSchema).default({}),
    default_upstream: upstreamName.default('default'),
    client_keys: z.array(clientKeySchema).default([]),
    consumers: z.array(consumerSchema).default([]),
    routes: z.array(routeSchema).default([]),
    unknown_models: z.enum(['passthrough', 'reject']).default('passthrough'),
    answer_model: answerModelSchema.default('requested'),
    body_limit: byteSize.default(8 * 1024 * 1024),
    /**
     * From a request's arrival, the time within which its answer must start:
     * no retry, fallback or wait begins past it, and each attempt's headers
     * timeout is cut to what is left. A client may ask for less
     * (x-apiproxy-deadline-ms).
     */
    retry_budget_ms: timeoutMs.min(1).default(120_000),
    log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    access_log: z.boolean().default(true),
    port: z.number().int().min(0).max(65_535).optional(),
    shutdown: z
      .object({ drain_delay_ms: timeoutMs.default(5_000), timeout_ms: timeoutMs.default(120_000) })
      .strict()
      .default({ drain_delay_ms: 5_000, timeout_ms: 120_000 }),
    kubernetes: kubernetesSchema.default({
      enabled: false,
      namespaces: [],
      client_key_selector: 'apiproxy.io/client-keys=true',
      watch_timeout_seconds: 300,
      lease_name: 'api-proxy',
    }),
    tracing: tracingSchema.default({ enabled: false }),
    rate_limits: rateLimitsSchema.default({ fail_open: true }),
    usage: usageSchema.default({ request_stream_usage: true }),
  })
  .strict()
  .superRefine((c, context) => {
    // Consumer names appear in logs, metrics and limits: one name, one consumer.
    const names = new Set<string>();
    c.consumers.forEach((consumer, index) => {
      if (names.has(consumer.name))
        context.addIssue({ code: 'custom', message: `consumer '${consumer.name}' is defined twice`, path: ['consumers', index, 'name'] });
      names.add(consumer.name);
    });
    c.client_keys.forEach((key, index) => {
      if (names.has(key.id)) {
        context.addIssue({
          code: 'custom',
          message: `'${key.id}' is also a consumer's name: give the key to that consumer`,
          path: ['client_keys', index, 'id'],
        });
      }
    });
    c.allowed_keys.forEach((_key, index) => {
      if (names.has(`allowed-${index + 1}`)) {
        context.addIssue({ code: 'custom', message: `consumer name 'allowed-${index + 1}' is taken by allowed_keys[${index}]`, path: ['allowed_keys', index] });
      }
    });
  })
  .refine((c) => c.api === undefined || c.upstreams['default'] === undefined || c.default_upstream !== 'default', {
    message: "'api' and 'upstreams.default' both define the default upstream: keep one",
    path: ['api'],
  })
  .refine((c) => c.api !== undefined || c.upstreams[c.default_upstream] !== undefined, {
    message: 'no default upstream: set api.url or define upstreams.<default_upstream>',
    path: ['upstreams'],
  });

export type FileConfig = z.infer<typeof fileConfigSchema>;
export type UpstreamFileConfig = z.infer<typeof upstreamSchema>;
export type ClientKeyFileConfig = z.infer<typeof clientKeySchema>;
export type PolicyFileConfig = z.infer<typeof policySchema>;
export type RouteFileConfig = z.infer<typeof routeSchema>;
export type RetryFileConfig = z.infer<typeof retrySchema>;
export type OutlierFileConfig = z.infer<typeof outlierSchema>;
export type TracingFileConfig = z.infer<typeof tracingSchema>;
