import type { TracingConfig } from '../../src/config/model.js';
import { parseConfigText } from '../../src/config/load-file.js';
import { tracingSettings, tracingWanted } from '../../src/observability/tracing/settings.js';

const OFF: TracingConfig = {
  enabled: false,
  endpoint: null,
  protocol: null,
  timeoutMs: null,
  serviceName: null,
  sampler: null,
  samplerArg: null,
  maxQueueSize: null,
  maxExportBatchSize: null,
  scheduleDelayMs: null,
  exportTimeoutMs: null,
};
const ON: TracingConfig = { ...OFF, enabled: true };

test('off unless the config enables it; OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none turn it off', () => {
  expect(tracingWanted(OFF, {})).toBe(false);
  expect(tracingWanted(OFF, { OTEL_TRACES_EXPORTER: 'otlp' })).toBe(false);
  expect(tracingWanted(ON, {})).toBe(true);
  expect(tracingWanted(ON, { OTEL_SDK_DISABLED: 'true' })).toBe(false);
  expect(tracingWanted(ON, { OTEL_SDK_DISABLED: 'false' })).toBe(true);
  expect(tracingWanted(ON, { OTEL_TRACES_EXPORTER: 'none' })).toBe(false);
});

test("the spec's defaults with nothing set", () => {
  expect(tracingSettings(ON, {})).toEqual({
    settings: {
      protocol: 'http/protobuf',
      url: 'http://localhost:4318/v1/traces',
      timeoutMs: 10_000,
      serviceName: 'api-proxy',
      resourceAttributes: null,
      sampler: 'parentbased_always_on',
      samplerArg: 1,
      maxQueueSize: 2048,
      maxExportBatchSize: 512,
      scheduleDelayMs: 5000,
      exportTimeoutMs: 30_000,
    },
    warnings: [],
  });
  expect(tracingSettings({ ...ON, protocol: 'grpc' }, {}).settings.url).toBe('http://localhost:4317');
});

test("the environment: the signal's own endpoint as it is, the general one with /v1/traces for HTTP", () => {
  const env = {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
    OTEL_SERVICE_NAME: 'gateway-eu',
    OTEL_TRACES_SAMPLER: 'traceidratio',
    OTEL_TRACES_SAMPLER_ARG: '0.1',
    OTEL_BSP_MAX_QUEUE_SIZE: '100',
    OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '500',
    OTEL_BSP_SCHEDULE_DELAY: '200',
    OTEL_BSP_EXPORT_TIMEOUT: '1000',
    OTEL_EXPORTER_OTLP_TIMEOUT: '3000',
  };
  const { settings, warnings } = tracingSettings(ON, env);
  expect(warnings).toEqual([]);
  expect(settings).toMatchObject({
    url: 'http://collector:4318/v1/traces',
    serviceName: 'gateway-eu',
    sampler: 'traceidratio',
    samplerArg: 0.1,
    maxQueueSize: 100,
    maxExportBatchSize: 100, // never more than the queue holds
    scheduleDelayMs: 200,
    exportTimeoutMs: 1000,
    timeoutMs: 3000,
  });
  expect(tracingSettings(ON, { ...env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:9999/custom' }).settings.url).toBe('http://traces:9999/custom');
  expect(tracingSettings(ON, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317' }).settings).toMatchObject({
    protocol: 'grpc',
    url: 'http://collector:4317',
  });
  expect(tracingSettings(ON, { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json' }).settings.protocol).toBe('http/json');
  expect(tracingSettings(ON, { OTEL_RESOURCE_ATTRIBUTES: 'service.name=from%20attributes,team=a' }).settings.serviceName).toBe('from attributes');
  expect(tracingSettings(ON, { OTEL_RESOURCE_ATTRIBUTES: 'service.name=x', OTEL_SERVICE_NAME: 'y' }).settings.serviceName).toBe('y');
});

test('the config block wins over the environment', () => {
  const config: TracingConfig = {
    ...ON,
    endpoint: 'https://otel.example:4318',
    serviceName: 'from-config',
    sampler: 'always_off',
    samplerArg: 0.5,
    maxQueueSize: 10,
  };
  const { settings } = tracingSettings(config, {
    OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4318',
    OTEL_SERVICE_NAME: 'env',
    OTEL_TRACES_SAMPLER: 'always_on',
    OTEL_BSP_MAX_QUEUE_SIZE: '99',
  });
  expect(settings).toMatchObject({
    url: 'https://otel.example:4318/v1/traces',
    serviceName: 'from-config',
    sampler: 'always_off',
    samplerArg: 0.5,
    maxQueueSize: 10,
  });
});

test('a bad environment value is ignored with a warning, never a failed start', () => {
  const { settings, warnings } = tracingSettings(ON, {
    OTEL_TRACES_SAMPLER: 'jaeger_remote',
    OTEL_TRACES_SAMPLER_ARG: '1.5',
    OTEL_BSP_MAX_QUEUE_SIZE: 'lots',
    OTEL_EXPORTER_OTLP_PROTOCOL: 'carrier-pigeon',
    OTEL_TRACES_EXPORTER: 'zipkin',
  });
  expect(settings).toMatchObject({ sampler: 'parentbased_always_on', samplerArg: 1, maxQueueSize: 2048, protocol: 'http/protobuf' });
  expect(warnings).toHaveLength(5);
  expect(warnings.join('\n')).toContain('OTEL_TRACES_SAMPLER=jaeger_remote');
});

test('the tracing block in the config file: off by default, validated', () => {
  expect(parseConfigText('api: { url: "http://u/v1" }', 'c').tracing).toEqual({ enabled: false });
  const parsed = parseConfigText(
    'api: { url: "http://u/v1" }\ntracing: { enabled: true, endpoint: "http://c:4318", sampler: traceidratio, sampler_arg: 0.2 }',
    'c',
  );
  expect(parsed.tracing).toEqual({ enabled: true, endpoint: 'http://c:4318', sampler: 'traceidratio', sampler_arg: 0.2 });
  expect(() => parseConfigText('api: { url: "http://u/v1" }\ntracing: { enabled: true, sampler_arg: 2 }', 'c')).toThrow(/sampler_arg/);
  expect(() => parseConfigText('api: { url: "http://u/v1" }\ntracing: { enabled: true, sampler: sometimes }', 'c')).toThrow(/sampler/);
  expect(() => parseConfigText('api: { url: "http://u/v1" }\ntracing: { enabled: true, protocol: udp }', 'c')).toThrow(/protocol/);
  expect(() => parseConfigText('api: { url: "http://u/v1" }\ntracing: { enabled: true, headers: {} }', 'c')).toThrow(/headers/);
});
