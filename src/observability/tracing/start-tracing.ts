import type { TracingConfig } from '../../config/model.js';
import type { Logger } from '../logger.js';
import type { GatewayMetrics } from '../metrics.js';
import type { SpanExportReport } from './export-meter.js';
import type { RequestTracer } from './request-trace.js';
import { tracingSettings, type Env } from './settings.js';

/** Tracing, started. */
export interface Tracing {
  readonly tracer: RequestTracer;
  /** Exports what is queued and stops; false when `timeoutMs` passed first. */
  shutdown(timeoutMs: number): Promise<boolean>;
}

/**
 * Starts tracing: settings from the config and the environment, the
 * exporter's outcomes into the gateway's metrics and (once per episode, never
 * per span) its log, then the OpenTelemetry SDK, loaded here and only here.
 */
export async function startTracing(config: TracingConfig, env: Env, metrics: GatewayMetrics, logger: Logger): Promise<Tracing> {
  const { settings, warnings } = tracingSettings(config, env);
  for (const warning of warnings) logger.warn(`tracing: ${warning}`);
  let queueLength = (): number => 0;
  const counts = metrics.tracingStarted(() => queueLength());
  let exportFailing = false;
  let queueFull = false;
  const report: SpanExportReport = {
    exported(count) {
      counts.exported(count);
      if (exportFailing || queueFull) logger.info('tracing: the collector accepts spans again');
      exportFailing = false;
      queueFull = false;
    },
    dropped(reason, count) {
      counts.dropped(reason, count);
      if (reason === 'export_failed' && !exportFailing) {
        exportFailing = true;
        logger.warn({ url: settings.url, spans: count }, 'tracing: the collector did not take spans (down, slow or refusing); they are dropped and counted');
      } else if (reason === 'queue_full' && !queueFull) {
        queueFull = true;
        logger.warn({ max_queue_size: settings.maxQueueSize }, 'tracing: the export queue is full; new spans are dropped and counted');
      }
    },
    queueLength(read) {
      queueLength = read;
    },
  };
  const { startOtelTracing } = await import('./otel-tracer.js');
  const tracing = await startOtelTracing(settings, report);
  logger.info(
    { protocol: settings.protocol, url: settings.url, service_name: settings.serviceName, sampler: settings.sampler, sampler_arg: settings.samplerArg },
    'tracing on',
  );
  return tracing;
}
