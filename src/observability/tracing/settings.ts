import type { TracingConfig } from '../../config/model.js';
import { OTLP_PROTOCOLS, TRACE_SAMPLERS } from '../../config/schema.js';

/**
 * Tracing's settings: the config's `tracing:` block first, then the
 * OpenTelemetry spec's environment variables, then the spec's defaults. No
 * OpenTelemetry code here: the gateway reads this to decide whether to load
 * the SDK at all.
 */

export type OtlpProtocol = (typeof OTLP_PROTOCOLS)[number];
export type TraceSamplerName = (typeof TRACE_SAMPLERS)[number];

export interface TracingSettings {
  readonly protocol: OtlpProtocol;
  /** Where spans go: the full URL for HTTP (`.../v1/traces`), the collector's address for gRPC. */
  readonly url: string;
  /** How long one export may take. */
  readonly timeoutMs: number;
  readonly serviceName: string;
  /** OTEL_RESOURCE_ATTRIBUTES as given (parsed by the SDK's own parser). */
  readonly resourceAttributes: string | null;
  readonly sampler: TraceSamplerName;
  /** The traceidratio samplers' ratio, 0 to 1. */
  readonly samplerArg: number;
  readonly maxQueueSize: number;
  readonly maxExportBatchSize: number;
  readonly scheduleDelayMs: number;
  readonly exportTimeoutMs: number;
}

export type Env = Readonly<Record<string, string | undefined>>;

const DEFAULT_SERVICE_NAME = 'api-proxy';
const DEFAULT_HTTP_ENDPOINT = 'http://localhost:4318';
const DEFAULT_GRPC_ENDPOINT = 'http://localhost:4317';

function envValue(env: Env, name: string): string | null {
  const value = env[name]?.trim();
  return value === undefined || value === '' ? null : value;
}

/** Whether tracing is on: the config enables it and neither OTEL_SDK_DISABLED nor OTEL_TRACES_EXPORTER=none turns it off. */
export function tracingWanted(config: TracingConfig, env: Env): boolean {
  if (!config.enabled) return false;
  if (envValue(env, 'OTEL_SDK_DISABLED')?.toLowerCase() === 'true') return false;
  return envValue(env, 'OTEL_TRACES_EXPORTER')?.toLowerCase() !== 'none';
}

/** The settings tracing starts with, and a warning for each environment variable that was ignored. */
export function tracingSettings(config: TracingConfig, env: Env): { settings: TracingSettings; warnings: string[] } {
  const warnings: string[] = [];
  const exporter = envValue(env, 'OTEL_TRACES_EXPORTER');
  if (exporter !== null && exporter.toLowerCase() !== 'otlp') warnings.push(`OTEL_TRACES_EXPORTER=${exporter}: only otlp is supported; exporting by OTLP`);

  const protocol =
    config.protocol ?? oneOf(env, ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL'], OTLP_PROTOCOLS, warnings) ?? 'http/protobuf';
  const url = config.endpoint !== null ? signalUrl(config.endpoint, protocol) : endpointFromEnv(env, protocol);
  const timeoutMs =
    config.timeoutMs ?? whole(env, 'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT', 0, warnings) ?? whole(env, 'OTEL_EXPORTER_OTLP_TIMEOUT', 0, warnings) ?? 10_000;

  const resourceAttributes = envValue(env, 'OTEL_RESOURCE_ATTRIBUTES');
  const serviceName = config.serviceName ?? envValue(env, 'OTEL_SERVICE_NAME') ?? serviceNameIn(resourceAttributes) ?? DEFAULT_SERVICE_NAME;

  const sampler = config.sampler ?? oneOf(env, ['OTEL_TRACES_SAMPLER'], TRACE_SAMPLERS, warnings) ?? 'parentbased_always_on';
  const samplerArg = config.samplerArg ?? ratioFromEnv(env, warnings) ?? 1;

  const maxQueueSize = config.maxQueueSize ?? whole(env, 'OTEL_BSP_MAX_QUEUE_SIZE', 1, warnings) ?? 2048;
  // A batch larger than the queue could never fill: the SDK would shrink it with a warning of its own.
  const maxExportBatchSize = Math.min(maxQueueSize, config.maxExportBatchSize ?? whole(env, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 1, warnings) ?? 512);
  const scheduleDelayMs = config.scheduleDelayMs ?? whole(env, 'OTEL_BSP_SCHEDULE_DELAY', 0, warnings) ?? 5000;
  const exportTimeoutMs = config.exportTimeoutMs ?? whole(env, 'OTEL_BSP_EXPORT_TIMEOUT', 0, warnings) ?? 30_000;

  return {
    settings: {
      protocol,
      url,
      timeoutMs,
      serviceName,
      resourceAttributes,
      sampler,
      samplerArg,
      maxQueueSize,
      maxExportBatchSize,
      scheduleDelayMs,
      exportTimeoutMs,
    },
    warnings,
  };
}

/** The spec's rule: the signal's own endpoint is used as it is; the general one gets `/v1/traces` for HTTP. */
function endpointFromEnv(env: Env, protocol: OtlpProtocol): string {
  const own = envValue(env, 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT');
  if (own !== null) return own;
  const general = envValue(env, 'OTEL_EXPORTER_OTLP_ENDPOINT');
  return signalUrl(general ?? (protocol === 'grpc' ? DEFAULT_GRPC_ENDPOINT : DEFAULT_HTTP_ENDPOINT), protocol);
}

function signalUrl(base: string, protocol: OtlpProtocol): string {
  if (protocol === 'grpc') return base;
  return base.endsWith('/') ? `${base}v1/traces` : `${base}/v1/traces`;
}

function oneOf<T extends string>(env: Env, names: readonly string[], allowed: readonly T[], warnings: string[]): T | null {
  for (const name of names) {
    const value = envValue(env, name);
    if (value === null) continue;
    const lower = value.toLowerCase() as T;
    if (allowed.includes(lower)) return lower;
    warnings.push(`${name}=${value} is not one of ${allowed.join(', ')}; ignored`);
  }
  return null;
}

function ratioFromEnv(env: Env, warnings: string[]): number | null {
  const value = envValue(env, 'OTEL_TRACES_SAMPLER_ARG');
  if (value === null) return null;
  const ratio = Number(value);
  if (Number.isFinite(ratio) && ratio >= 0 && ratio <= 1) return ratio;
  warnings.push(`OTEL_TRACES_SAMPLER_ARG=${value} is not a ratio from 0 to 1; ignored`);
  return null;
}

function whole(env: Env, name: string, min: number, warnings: string[]): number | null {
  const value = envValue(env, name);
  if (value === null) return null;
  const number = Number(value);
  if (Number.isInteger(number) && number >= min) return number;
  warnings.push(`${name}=${value} is not a whole number of at least ${min}; ignored`);
  return null;
}

/** `service.name` in OTEL_RESOURCE_ATTRIBUTES (`k=v,k=v`, values percent-encoded), which OTEL_SERVICE_NAME overrides. */
function serviceNameIn(attributes: string | null): string | null {
  if (attributes === null) return null;
  for (const pair of attributes.split(',')) {
    const at = pair.indexOf('=');
    if (at !== -1 && pair.slice(0, at).trim() === 'service.name') {
      try {
        return decodeURIComponent(pair.slice(at + 1).trim()) || null;
      } catch {
        return null;
      }
    }
  }
  return null;
}
