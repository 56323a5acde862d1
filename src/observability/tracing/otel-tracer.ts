import { hostname } from 'node:os';
import type { IncomingHttpHeaders } from 'node:http';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api';
import { W3CTraceContextPropagator, parseKeyPairsIntoRecord } from '@opentelemetry/core';
import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type Sampler,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { ERROR_CODES } from '../../errors/codes.js';
import type { Upstream } from '../../config/upstream.js';
import type { RequestRecord } from '../../pipeline/request-record.js';
import { ExportMeterProvider, type SpanExportReport } from './export-meter.js';
import type { AttemptTrace, RequestTrace, RequestTracer } from './request-trace.js';
import type { TraceSamplerName, TracingSettings } from './settings.js';
import { operationName, providerName, requestOutcome, serverAttributes, spanName, type Attributes } from './span-attributes.js';

/**
 * The OpenTelemetry SDK behind the request path's tracing interfaces,
 * loaded (with the exporter its protocol needs) only when tracing is on.
 * Contexts are passed explicitly from span to span: no context manager, no
 * global provider, nothing patched.
 */

/** Tracing, started. */
export interface OtelTracing {
  readonly tracer: RequestTracer;
  /** Exports what is queued and stops; false when `timeoutMs` passed first (what was still queued is lost). */
  shutdown(timeoutMs: number): Promise<boolean>;
}

const PROPAGATOR = new W3CTraceContextPropagator();

const HEADER_GETTER: TextMapGetter<IncomingHttpHeaders> = {
  get: (headers, key) => headers[key],
  keys: (headers) => Object.keys(headers),
};

const HEADER_SETTER: TextMapSetter<Record<string, string | string[]>> = {
  set: (headers, key, value) => {
    headers[key] = value;
  },
};

export async function startOtelTracing(settings: TracingSettings, report: SpanExportReport): Promise<OtelTracing> {
  const exporter = await otlpExporter(settings);
  const processor = new BatchSpanProcessor({
    exporter,
    maxQueueSize: settings.maxQueueSize,
    maxExportBatchSize: settings.maxExportBatchSize,
    scheduledDelayMillis: settings.scheduleDelayMs,
    exportTimeoutMillis: settings.exportTimeoutMs,
    selfObsMeterProvider: new ExportMeterProvider(report),
  });
  const provider = new TracerProvider({
    resource: defaultResource().merge(
      resourceFromAttributes({
        ...(settings.resourceAttributes === null ? {} : parseKeyPairsIntoRecord(settings.resourceAttributes)),
        'service.name': settings.serviceName,
        'host.name': hostname(),
        'process.pid': process.pid,
      }),
    ),
    sampler: sampler(settings.sampler, settings.samplerArg),
    spanProcessors: [processor],
  });
  return {
    tracer: new OtelRequestTracer(provider.getTracer('api-proxy')),
    async shutdown(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
      const done = provider.shutdown().then(
        () => true,
        () => true, // a failed export is counted by the processor; shutdown is over either way
      );
      try {
        return await Promise.race([done, timedOut]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

/** The exporter for the protocol; each is its own package, loaded only when chosen. */
async function otlpExporter(settings: TracingSettings): Promise<SpanExporter> {
  // Headers, compression and certificates: the exporter reads OTEL_EXPORTER_OTLP_* itself.
  const options = { url: settings.url, timeoutMillis: settings.timeoutMs };
  switch (settings.protocol) {
    case 'grpc':
      return new (await import('@opentelemetry/exporter-trace-otlp-grpc')).OTLPTraceExporter(options);
    case 'http/json':
      return new (await import('@opentelemetry/exporter-trace-otlp-http')).OTLPTraceExporter(options);
    case 'http/protobuf':
      return new (await import('@opentelemetry/exporter-trace-otlp-proto')).OTLPTraceExporter(options);
  }
}

/** OTEL_TRACES_SAMPLER's samplers. */
function sampler(name: TraceSamplerName, ratio: number): Sampler {
  switch (name) {
    case 'always_on':
      return new AlwaysOnSampler();
    case 'always_off':
      return new AlwaysOffSampler();
    case 'traceidratio':
      return new TraceIdRatioBasedSampler(ratio);
    case 'parentbased_always_on':
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
    case 'parentbased_always_off':
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case 'parentbased_traceidratio':
      return new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(ratio) });
  }
}

class OtelRequestTracer implements RequestTracer {
  readonly #tracer: Tracer;

  constructor(tracer: Tracer) {
    this.#tracer = tracer;
  }

  startRequest(headers: IncomingHttpHeaders, record: RequestRecord): RequestTrace {
    // An invalid traceparent is ignored (with its tracestate): the request starts a trace of its own.
    const parent = PROPAGATOR.extract(ROOT_CONTEXT, headers, HEADER_GETTER);
    const span = this.#tracer.startSpan(
      record.method,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': record.method, 'url.path': record.path } },
      parent,
    );
    return new OtelRequestTrace(this.#tracer, span);
  }
}

class OtelRequestTrace implements RequestTrace {
  readonly #tracer: Tracer;
  readonly #span: Span;
  readonly #context: Context;

  constructor(tracer: Tracer, span: Span) {
    this.#tracer = tracer;
    this.#span = span;
    this.#context = trace.setSpan(ROOT_CONTEXT, span);
  }

  attemptStarted(upstream: Upstream, record: RequestRecord, headers: Record<string, string | string[]>): AttemptTrace {
    const operation = operationName(record.route);
    const span = this.#tracer.startSpan(
      spanName(record.method, record.path, operation, record.targetModel),
      { kind: SpanKind.CLIENT, attributes: clientAttributes(upstream, record, operation) },
      this.#context,
    );
    // The client's tracestate was copied with its other headers; the attempt's own (inherited from it) replaces it.
    delete headers['tracestate'];
    PROPAGATOR.inject(trace.setSpan(ROOT_CONTEXT, span), headers, HEADER_SETTER);
    return new OtelAttemptTrace(span);
  }

  completed(record: RequestRecord): void {
    const span = this.#span;
    if (span.isRecording()) {
      span.updateName(spanName(record.method, record.path, operationName(record.route), record.model));
      span.setAttributes(serverAttributes(record));
      const outcome = requestOutcome(record);
      if (outcome.errorType !== null) span.setAttribute('error.type', outcome.errorType);
      if (outcome.error) span.setStatus({ code: SpanStatusCode.ERROR, ...(outcome.message === undefined ? {} : { message: outcome.message }) });
    }
    span.end();
  }
}

/** What an attempt's span says of its upstream, worked out once per upstream (of a snapshot). */
interface UpstreamAttributes {
  readonly address: string;
  readonly port: number;
  readonly provider: string | null;
}

const upstreamAttributes = new WeakMap<Upstream, UpstreamAttributes>();

function attributesOf(upstream: Upstream): UpstreamAttributes {
  let known = upstreamAttributes.get(upstream);
  if (known === undefined) {
    const url = new URL(upstream.origin);
    known = { address: url.hostname, port: url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port), provider: providerName(url.hostname) };
    upstreamAttributes.set(upstream, known);
  }
  return known;
}

/** The attempt's attributes: GenAI's for the model call, HTTP client's for the exchange, the upstream's name. */
function clientAttributes(upstream: Upstream, record: RequestRecord, operation: string | null): Attributes {
  const known = attributesOf(upstream);
  const attributes: Attributes = {
    'http.request.method': record.method,
    'server.address': known.address,
    'server.port': known.port,
    'url.full': upstream.origin + upstream.basePath + record.path.slice(3),
    'apiproxy.upstream': upstream.name,
  };
  if (operation !== null) attributes['gen_ai.operation.name'] = operation;
  if (record.targetModel !== null) attributes['gen_ai.request.model'] = record.targetModel;
  if (known.provider !== null) attributes['gen_ai.provider.name'] = known.provider;
  return attributes;
}

class OtelAttemptTrace implements AttemptTrace {
  readonly #span: Span;
  readonly #startedAt = performance.now();

  constructor(span: Span) {
    this.#span = span;
  }

  responded(status: number, stream: boolean): void {
    const span = this.#span;
    span.setAttribute('http.response.status_code', status);
    if (stream) span.setAttribute('apiproxy.stream', true);
    if (status >= 400) {
      // A client span marks any 4xx or 5xx as an error (the HTTP conventions' rule); error.type is the status.
      span.setAttribute('error.type', String(status));
      span.setStatus({ code: SpanStatusCode.ERROR });
    }
  }

  firstChunk(): void {
    this.#span.addEvent('apiproxy.first_token', { 'apiproxy.time_to_first_token_s': (performance.now() - this.#startedAt) / 1000 });
  }

  ended(errorCode: string | null): void {
    const span = this.#span;
    if (errorCode !== null) {
      span.setAttribute('error.type', errorCode);
      const message = (ERROR_CODES as Record<string, { message: string } | undefined>)[errorCode]?.message;
      span.setStatus({ code: SpanStatusCode.ERROR, ...(message === undefined ? {} : { message }) });
    }
    span.end();
  }
}
