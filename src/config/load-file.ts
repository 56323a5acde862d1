import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { prettifyError } from 'zod';
import { clientCertificateProblem } from './client-certificate.js';
import { ConfigError } from './config-error.js';
import { NO_LIMITS, type RateLimit } from '../policy/types.js';
import { clientKeyDigest } from './key-digest.js';
import {
  DEFAULT_OUTLIER,
  DEFAULT_RETRY,
  fileConfigSchema,
  type FileConfig,
  type OutlierFileConfig,
  type PolicyFileConfig,
  type RetryFileConfig,
  type UpstreamFileConfig,
} from './schema.js';
import type {
  ClientCertificate,
  ClientKeySpec,
  ConsumerSpec,
  EnvProxy,
  FileInputs,
  OutlierSpec,
  PolicySpec,
  ProxySpec,
  RateLimitSettings,
  RetrySpec,
  RouteSpec,
  UpstreamSpec,
} from './model.js';

export { ConfigError };

export interface LoadedFile {
  readonly inputs: FileInputs;
  /** Every file this config read (itself, key files), so a watcher can follow them. */
  readonly files: readonly string[];
}

export type Env = Readonly<Record<string, string | undefined>>;

/** Parses JSON or YAML text into a validated config (no I/O). */
export function parseConfigText(text: string, origin: string): FileConfig {
  let raw: unknown;
  try {
    raw = parseJsonOrYaml(text);
  } catch (error) {
    throw new ConfigError(`${origin}: not valid JSON or YAML: ${(error as Error).message}`);
  }
  if (raw === null || raw === undefined) raw = {};
  const result = fileConfigSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(`${origin}: ${prettifyError(result.error).replaceAll('\n', '; ')}`);
  return result.data;
}

/** JSON when it is JSON (fast: a 100,000-key file parses in tens of ms, not seconds), else YAML, a superset. */
function parseJsonOrYaml(text: string): unknown {
  if (text.trimStart().startsWith('{')) {
    try {
      return JSON.parse(text);
    } catch {
      // not JSON after all: YAML flow mappings also start with '{'
    }
  }
  return parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 });
}

/** Reads the config file and every secret it points at; throws ConfigError when unusable. */
export function loadConfigFile(path: string, env: Env): LoadedFile {
  const absolute = resolve(path);
  let text: string;
  try {
    text = readFileSync(absolute, 'utf8');
  } catch (error) {
    throw new ConfigError(`${path}: cannot read: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  const config = parseConfigText(text, path);
  const files = [absolute];
  const readSecret = (field: string, name: string | undefined, variable: string | undefined, file: string | undefined): string | null => {
    if (name !== undefined) return name;
    if (variable !== undefined) {
      const value = env[variable];
      if (value === undefined || value === '') throw new ConfigError(`${path}: ${field}: environment variable ${variable} is not set`);
      return value;
    }
    if (file !== undefined) {
      const target = resolve(dirname(absolute), file);
      files.push(target);
      try {
        return readFileSync(target, 'utf8').trim();
      } catch (error) {
        throw new ConfigError(`${path}: ${field}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
      }
    }
    return null;
  };
  const inputs = toInputs(config, readSecret, env);
  return { inputs, files };
}

type SecretReader = (field: string, inline: string | undefined, variable: string | undefined, file: string | undefined) => string | null;

/** What an upstream's config points at, read. */
interface UpstreamFiles {
  readonly apiKey: string | null;
  readonly tlsCa: string | null;
  readonly clientCert: ClientCertificate | null;
  readonly proxyPassword: string | null;
}

const NO_FILES: UpstreamFiles = { apiKey: null, tlsCa: null, clientCert: null, proxyPassword: null };

/** Translates a validated file config into source inputs; `env` gives the proxy variables (HTTPS_PROXY, ...). */
export function toInputs(config: FileConfig, readSecret: SecretReader, env: Env = {}): FileInputs {
  const proxyFromEnv = envProxy(env);
  const upstreams: UpstreamSpec[] = [];
  if (config.api !== undefined) {
    upstreams.push(upstreamSpec('default', { url: config.api.url }, { ...NO_FILES, apiKey: config.api.key || null }, proxyFromEnv));
  }
  for (const [name, upstream] of Object.entries(config.upstreams)) {
    const field = `upstreams.${name}`;
    const tls = upstream.tls;
    const cert = readSecret(`${field}.tls.client_cert_file`, undefined, undefined, tls?.client_cert_file);
    const key = readSecret(`${field}.tls.client_key_file`, undefined, undefined, tls?.client_key_file);
    const files: UpstreamFiles = {
      apiKey: readSecret(`${field}.api_key`, upstream.api_key, upstream.api_key_env, upstream.api_key_file),
      tlsCa: readSecret(`${field}.tls.ca_file`, undefined, undefined, tls?.ca_file),
      clientCert: cert !== null && key !== null ? checkedPair(`${field}.tls.client_cert_file/client_key_file`, { cert, key }) : null,
      proxyPassword: readSecret(`${field}.proxy.password`, undefined, upstream.proxy?.password_env, upstream.proxy?.password_file),
    };
    upstreams.push(upstreamSpec(name, upstream, files, proxyFromEnv));
  }

  const routes: RouteSpec[] = [];
  for (const [model, redirect] of Object.entries(config.model_redirects)) {
    const target = typeof redirect === 'string' ? { model: redirect } : redirect;
    routes.push({
      model,
      targets: [{ model: target.model, upstream: null, weight: 1, priority: 0 }],
      answerModel: target.answer_model ?? null,
      source: 'file',
    });
  }
  for (const route of config.routes) {
    routes.push({
      model: route.model,
      targets: route.targets.map((t) => ({ model: t.model, upstream: t.upstream ?? null, weight: t.weight ?? 1, priority: t.priority ?? 0 })),
      answerModel: route.answer_model ?? null,
      source: 'file',
    });
  }

  // The seed's allowed_keys and client_keys: each key id is a consumer of its own, without a policy.
  const clientKeys: ClientKeySpec[] = config.allowed_keys.map((key, index) => ({ id: `allowed-${index + 1}`, digest: clientKeyDigest(key) }));
  config.client_keys.forEach((entry, index) => {
    const key = readSecret(`client_keys[${index}]`, entry.key, entry.key_env, entry.key_file);
    if (key === null || key === '') throw new ConfigError(`client_keys[${index}]: the key is empty`);
    clientKeys.push({ id: entry.id, digest: clientKeyDigest(key) });
  });
  const consumers: ConsumerSpec[] = [];
  config.consumers.forEach((consumer, c) => {
    const keys = consumer.keys.map((entry, k) => {
      const key = readSecret(`consumers[${c}].keys[${k}]`, entry.key, entry.key_env, entry.key_file);
      if (key === null || key === '') throw new ConfigError(`consumers[${c}].keys[${k}]: the key is empty`);
      return { id: entry.id, digest: clientKeyDigest(key) };
    });
    consumers.push({ name: consumer.name, keys, policy: consumer.policy === undefined ? null : policySpec(consumer.policy) });
  });

  return {
    settings: {
      bodyLimit: config.body_limit,
      unknownModels: config.unknown_models,
      answerModel: config.answer_model,
      logLevel: config.log_level,
      accessLog: config.access_log,
      port: config.port ?? null,
      drainDelayMs: config.shutdown.drain_delay_ms,
      shutdownTimeoutMs: config.shutdown.timeout_ms,
      defaultUpstream: config.default_upstream,
      retryBudgetMs: config.retry_budget_ms,
    },
    kubernetes: {
      enabled: config.kubernetes.enabled,
      namespaces: config.kubernetes.namespaces,
      clientKeySelector: config.kubernetes.client_key_selector,
      watchTimeoutSeconds: config.kubernetes.watch_timeout_seconds,
      leaseName: config.kubernetes.lease_name,
    },
    tracing: {
      enabled: config.tracing.enabled,
      endpoint: config.tracing.endpoint ?? null,
      protocol: config.tracing.protocol ?? null,
      timeoutMs: config.tracing.timeout_ms ?? null,
      serviceName: config.tracing.service_name ?? null,
      sampler: config.tracing.sampler ?? null,
      samplerArg: config.tracing.sampler_arg ?? null,
      maxQueueSize: config.tracing.max_queue_size ?? null,
      maxExportBatchSize: config.tracing.max_export_batch_size ?? null,
      scheduleDelayMs: config.tracing.schedule_delay_ms ?? null,
      exportTimeoutMs: config.tracing.export_timeout_ms ?? null,
    },
    rateLimits: rateLimitSettings(config, readSecret),
    usage: { requestStreamUsage: config.usage.request_stream_usage },
    upstreams,
    routes,
    clientKeys,
    consumers,
  };
}

/** A file policy in the snapshot's terms. */
export function policySpec(policy: PolicyFileConfig): PolicySpec {
  const limits = policy.limits;
  const rate = (limit: { limit: number; per: 'key' | 'consumer' } | undefined): RateLimit | null =>
    limit === undefined ? null : { limit: limit.limit, scope: limit.per };
  return {
    models: policy.models ?? null,
    limits:
      limits === undefined
        ? NO_LIMITS
        : {
            requestsPerMinute: rate(limits.requests_per_minute),
            tokensPerMinute: rate(limits.tokens_per_minute),
            tokensPerDay: rate(limits.tokens_per_day),
            concurrentStreams: limits.concurrent_streams ?? null,
          },
  };
}

function rateLimitSettings(config: FileConfig, readSecret: SecretReader): RateLimitSettings {
  const redis = config.rate_limits.redis;
  if (redis === undefined) return { redis: null, failOpen: config.rate_limits.fail_open };
  return {
    redis: {
      url: redis.url,
      username: redis.username ?? null,
      password: readSecret('rate_limits.redis.password', redis.password, redis.password_env, redis.password_file),
      tlsCa: readSecret('rate_limits.redis.tls.ca_file', undefined, undefined, redis.tls?.ca_file),
      tlsInsecureSkipVerify: redis.tls?.insecure_skip_verify ?? false,
      timeoutMs: redis.timeout_ms,
      keyPrefix: redis.key_prefix,
    },
    failOpen: config.rate_limits.fail_open,
  };
}

function checkedPair(field: string, pair: ClientCertificate): ClientCertificate {
  const problem = clientCertificateProblem(pair);
  if (problem !== null) throw new ConfigError(`${field}: ${problem}`);
  return pair;
}

/**
 * The proxy variables as undici's EnvHttpProxyAgent reads them (lower case
 * first; an empty value is unset); null when neither proxy is set. A value
 * that is not an http(s) URL fails the config, as any bad setting does.
 */
export function envProxy(env: Env): EnvProxy | null {
  const httpProxy = env['http_proxy'] || env['HTTP_PROXY'] || null;
  const httpsProxy = env['https_proxy'] || env['HTTPS_PROXY'] || null;
  if (httpProxy === null && httpsProxy === null) return null;
  for (const [variable, value] of [
    ['HTTP_PROXY', httpProxy],
    ['HTTPS_PROXY', httpsProxy],
  ] as const) {
    if (value === null) continue;
    let url: URL | null = null;
    try {
      url = new URL(value);
    } catch {
      // reported below
    }
    // The value itself is not quoted: it may hold credentials.
    if (url === null || (url.protocol !== 'http:' && url.protocol !== 'https:'))
      throw new ConfigError(`${variable} (or its lower-case form) is not an http(s) URL`);
  }
  return { httpProxy, httpsProxy, noProxy: env['no_proxy'] ?? env['NO_PROXY'] ?? '' };
}

function proxySpec(proxy: UpstreamFileConfig['proxy'], password: string | null): ProxySpec | null {
  if (proxy === undefined) return null;
  const secret = proxy.password_secret;
  return {
    url: new URL(proxy.url).origin,
    username: proxy.username ?? null,
    password: secret === undefined ? password : null,
    passwordSecret: secret === undefined ? null : { namespace: secret.namespace ?? null, name: secret.name, key: secret.key },
  };
}

function upstreamSpec(
  name: string,
  upstream: Partial<UpstreamFileConfig> & { url: string },
  files: UpstreamFiles,
  proxyFromEnv: EnvProxy | null,
): UpstreamSpec {
  const url = new URL(upstream.url);
  // The seed's api.url is the full chat-completions URL; a bare origin forwards paths unchanged.
  let basePath = url.pathname.replace(/\/chat\/completions\/?$/, '').replace(/\/+$/, '');
  if (basePath === '') basePath = '/v1';
  const timeouts = upstream.timeouts ?? { connect_ms: 5_000, headers_ms: 600_000, idle_ms: 300_000 };
  const secret = upstream.api_key_secret;
  const certSecret = upstream.tls?.client_cert_secret;
  const proxy = proxySpec(upstream.proxy, files.proxyPassword);
  return {
    name,
    origin: url.origin,
    basePath,
    apiKey: secret === undefined ? files.apiKey : null,
    apiKeySecret: secret === undefined ? null : { namespace: secret.namespace ?? null, name: secret.name, key: secret.key },
    connectTimeoutMs: timeouts.connect_ms,
    headersTimeoutMs: timeouts.headers_ms,
    idleTimeoutMs: timeouts.idle_ms,
    maxConnections: upstream.max_connections ?? null,
    queueTimeoutMs: upstream.queue_timeout_ms ?? 10_000,
    maxIdleConnections: upstream.max_idle_connections ?? 256,
    tlsCa: files.tlsCa,
    tlsInsecureSkipVerify: upstream.tls?.insecure_skip_verify ?? false,
    tlsServername: upstream.tls?.servername ?? null,
    tlsClientCert: files.clientCert,
    tlsClientCertSecret: certSecret === undefined ? null : { namespace: certSecret.namespace ?? null, name: certSecret.name },
    http2: upstream.http2 ?? 'auto',
    proxy,
    envProxy: proxy === null ? proxyFromEnv : null,
    retry: retrySpec(upstream.retry ?? DEFAULT_RETRY),
    outlier: outlierSpec(upstream.outlier ?? DEFAULT_OUTLIER),
  };
}

function retrySpec(retry: RetryFileConfig): RetrySpec {
  return { attempts: retry.attempts, backoffBaseMs: retry.backoff.base_ms, backoffMaxMs: retry.backoff.max_ms, conditions: retry.conditions };
}

function outlierSpec(outlier: OutlierFileConfig): OutlierSpec {
  return {
    consecutiveFailures: outlier.consecutive_failures,
    ejectionMs: outlier.ejection_ms,
    maxEjectionMs: outlier.max_ejection_ms,
    maxEjectedPercent: outlier.max_ejected_percent,
  };
}
