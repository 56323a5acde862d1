import type { Server } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import { createRequestHandler } from './app.js';
import { ConfigError } from './config/config-error.js';
import type { Env } from './config/load-file.js';
import type { KubeInputs } from './config/model.js';
import type { RoutingSnapshot } from './config/snapshot.js';
import { SnapshotStore } from './config/store.js';
import { Readiness } from './http/readiness.js';
import { listen } from './http/listen.js';
import { createHttpServer, SERVER_LIMITS, type ServerLimits } from './http/server.js';
import { createLogging, type DestinationStream, type Logger } from './observability/logger.js';
import { ATTEMPT_OUTCOMES, GatewayMetrics } from './observability/metrics.js';
import { localMetricsReport, type MetricsReport } from './observability/metrics-report.js';
import { registerListenQueueMetrics } from './observability/listen-queue-metrics.js';
import type { TracerRef } from './observability/tracing/request-trace.js';
import { tracingWanted } from './observability/tracing/settings.js';
import { startTracing, type Tracing } from './observability/tracing/start-tracing.js';
import { RequestAccounting } from './pipeline/account.js';
import { Admissions } from './pipeline/admission.js';
import { TargetHealth } from './pipeline/target-health.js';
import { FileSource } from './sources/file-source.js';
import { Transports, type ClientChoice } from './transport/transports.js';
import type { CounterStore } from './policy/counter-store.js';
import { RateLimiting } from './policy/rate-limiting.js';

/** A source that feeds Kubernetes data into the store (see sources/kube). */
export interface KubeSourceHandle {
  start(): Promise<void>;
  stop(): Promise<void>;
}

export type KubeSourceFactory = (deps: {
  readonly store: SnapshotStore;
  readonly readiness: Readiness;
  readonly metrics: GatewayMetrics;
  readonly logger: Logger;
  readonly snapshot: RoutingSnapshot;
  readonly setKube: (inputs: KubeInputs) => void;
}) => KubeSourceHandle | Promise<KubeSourceHandle>;

export interface GatewayOptions {
  readonly configPath: string;
  readonly env: Env;
  /** 0 picks a free port; undefined means the config's `port`, else 5000. */
  readonly port: number | undefined;
  readonly host?: string;
  /** Where log lines go (tests capture them); stdout by default. */
  readonly logDestination?: DestinationStream;
  /** Used when the config enables Kubernetes. */
  readonly kubeSource?: KubeSourceFactory;
  readonly namespace?: string;
  readonly pollMs?: number;
  /** This process's index when it is one of several cluster workers (see cluster/). */
  readonly worker?: number;
  /** What `/metrics` reports; by default this process's own figures. */
  readonly metricsReport?: (metrics: GatewayMetrics) => MetricsReport;
  /** The counters of limits without Redis; by default this process's own (a cluster worker's are the primary's). */
  readonly localCounters?: CounterStore;
  /** Overrides of SERVER_LIMITS (tests shorten the slowloris timeouts); the defaults are what production runs. */
  readonly serverLimits?: Partial<ServerLimits>;
}

export interface Gateway {
  readonly url: string;
  readonly port: number;
  readonly server: Server;
  /** Client connections open, whichever listening socket accepted them. */
  openConnections(): Promise<number>;
  readonly store: SnapshotStore;
  readonly metrics: GatewayMetrics;
  readonly readiness: Readiness;
  readonly logger: Logger;
  /** Readiness 503, drain delay, stop accepting, let in-flight requests finish up to the deadline, close. */
  shutdown(): Promise<void>;
}

const DEFAULT_PORT = 5000;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * API_PROXY_TRANSPORT, a diagnostic read at start: `undici` sends every upstream
 * request through undici, also what the native HTTP/1.1 client would carry
 * (the bench compares the two with it); unset, empty or `auto`: each client
 * for what it serves.
 */
function clientChoiceFromEnv(value: string | undefined): ClientChoice {
  if (value === undefined || value === '' || value === 'auto') return 'auto';
  if (value === 'undici') return 'undici';
  throw new ConfigError(`API_PROXY_TRANSPORT must be auto or undici, got '${value}'`);
}

/** LOG_LEVEL overrides the config's log_level; unset or empty means no override. */
function logLevelFromEnv(value: string | undefined): string | null {
  if (value === undefined || value === '') return null;
  if (!LOG_LEVELS.includes(value)) throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got '${value}'`);
  return value;
}

export { SERVER_LIMITS, type ServerLimits };

/** Composes and starts the gateway; resolves once it listens. */
export async function startGateway(options: GatewayOptions): Promise<Gateway> {
  const levelOverride = logLevelFromEnv(options.env['LOG_LEVEL']);
  const logging = createLogging(levelOverride ?? 'info', options.logDestination, options.worker);
  const logger = logging.logger;
  const store = new SnapshotStore(options.namespace ?? 'default');
  const metrics = new GatewayMetrics();
  const transports = new Transports(clientChoiceFromEnv(options.env['API_PROXY_TRANSPORT']));
  const admissions = new Admissions({
    opened: (upstream) => metrics.queueOpened(upstream),
    waited: (upstream, seconds, outcome) => metrics.queueWaited(upstream, seconds, outcome),
    saturated: (upstream, maxInFlight, queueTimeoutMs) =>
      logger.warn({ upstream, max_connections: maxInFlight, queue_timeout_ms: queueTimeoutMs }, 'upstream at its max_connections: requests are queuing'),
    drained: (upstream, queued, refused, longestWaitMs) =>
      logger[refused > 0 ? 'warn' : 'info']({ upstream, queued, refused, longest_wait_ms: longestWaitMs }, 'upstream queue drained'),
  });
  metrics.countAdmissionsWith(() => admissions.all());
  const health = new TargetHealth({
    opened: (upstream) => metrics.attemptsOpened(upstream, ATTEMPT_OUTCOMES),
    ejected: (upstream, ms, failures) => logger.warn({ upstream, ejection_ms: ms, failures }, 'upstream ejected after failures in a row'),
    readmitted: (upstream, ejectedMs) => logger.info({ upstream, ejected_ms: ejectedMs }, 'upstream readmitted'),
  });
  metrics.countEjectionsWith(() => health.ejections());
  const readiness = new Readiness(() => store.current !== null);
  metrics.countRoutesWith(() => store.current?.routeCount ?? 0);

  store.onSwap((snapshot) => {
    transports.retain(snapshot);
    health.retain(snapshot);
    if (levelOverride === null) logger.level = snapshot.settings.logLevel;
  });

  const rateLimiting = new RateLimiting(
    { redis: null, failOpen: true },
    {
      storeHealth: (up, error, settings) => {
        if (up) logger.info('rate limit store reachable again: limits are enforced');
        else
          logger.warn(
            { err: { message: (error as Error | null)?.message, code: (error as { code?: string } | null)?.code }, fail_open: settings.failOpen },
            settings.failOpen
              ? 'rate limit store unreachable: requests pass without limits until it is back (fail_open)'
              : 'rate limit store unreachable: requests with limits are refused (503) until it is back',
          );
      },
      decidedWithoutStore: (allowed) => metrics.policy.decidedWithoutStore(allowed),
      refused: (principal, limit) => metrics.policy.rateLimited(principal.consumer, principal.keyId, limit),
    },
    options.localCounters,
  );
  metrics.policy.countStoreHealthWith(() => rateLimiting.storeUp);
  store.onSwap((snapshot) => rateLimiting.configure(snapshot.rateLimits));

  const fileSource = new FileSource({
    path: options.configPath,
    env: options.env,
    pollMs: options.pollMs,
    apply: (inputs) => {
      store.setFile(inputs);
    },
    onResult: (result) => {
      metrics.configReload('file', result.ok ? 'success' : 'failure');
      if (result.ok) logger.info({ version: store.current?.version, routes: store.current?.routeCount }, 'config reloaded');
      else
        logger.error(
          { err: { message: result.error.message, code: (result.error as { code?: string }).code } },
          'config rejected; keeping the last good config',
        );
    },
  });
  try {
    fileSource.loadInitial();
    metrics.configReload('file', 'success');
    logger.info({ path: options.configPath, routes: store.current?.routeCount }, 'config loaded');
  } catch (error) {
    metrics.configReload('file', 'failure');
    logger.error({ err: { message: (error as Error).message } }, 'config not loaded; not ready until it is valid');
  }
  fileSource.start();

  // Kubernetes starts with the first config that enables it (at start, or once a broken file is fixed);
  // the readiness gate is added in the same synchronous step, so readiness never reports a half-loaded state.
  let kube: Promise<KubeSourceHandle> | null = null;
  const startKube = (snapshot: RoutingSnapshot): void => {
    if (kube !== null || !snapshot.kubernetes.enabled) return;
    if (options.kubeSource === undefined) throw new ConfigError('kubernetes.enabled is set but no Kubernetes source is available');
    readiness.addGate('kubernetes sync');
    kube = Promise.resolve(options.kubeSource({ store, readiness, metrics, logger, snapshot, setKube: (inputs) => void store.setKube(inputs) }));
    kube.then(
      (handle) => void handle.start(),
      (error: unknown) => logger.error({ err: { message: (error as Error).message } }, 'Kubernetes source failed to start'),
    );
  };
  if (store.current !== null) startKube(store.current);
  store.onSwap(startKube);

  // Tracing starts with the first config that enables it, like Kubernetes; the SDK is loaded only then.
  // A later change of the tracing block is logged and waits for a restart.
  const tracerRef: TracerRef = { tracer: null };
  let tracing: Promise<Tracing | null> | null = null;
  let tracingBlock = '';
  const startTracingOnce = (snapshot: RoutingSnapshot): Promise<Tracing | null> | null => {
    const block = JSON.stringify(snapshot.tracing);
    if (tracing !== null) {
      if (block !== tracingBlock) logger.warn('tracing settings changed; they apply at the next restart');
      tracingBlock = block;
      return tracing;
    }
    if (!tracingWanted(snapshot.tracing, options.env)) return null;
    tracingBlock = block;
    tracing = startTracing(snapshot.tracing, options.env, metrics, logger).then(
      (started) => {
        tracerRef.tracer = started.tracer;
        return started;
      },
      (error: unknown) => {
        logger.error({ err: { message: (error as Error).message, code: (error as { code?: string }).code } }, 'tracing failed to start; serving without it');
        return null;
      },
    );
    return tracing;
  };
  store.onSwap((snapshot) => void startTracingOnce(snapshot));
  // Requests from the first one on are traced when the config enables tracing at start.
  if (store.current !== null) await startTracingOnce(store.current);

  const metricsReport = (options.metricsReport ?? localMetricsReport)(metrics);
  const accounting = new RequestAccounting(metrics, logging, () => store.current?.settings.accessLog ?? true);
  const serverLimits = { ...SERVER_LIMITS, ...options.serverLimits };
  const handler = createRequestHandler({
    store,
    transports,
    admissions,
    health,
    accounting,
    metricsReport,
    readiness,
    tracing: tracerRef,
    linger: serverLimits,
    limits: rateLimiting,
  });
  const server = createHttpServer(handler, serverLimits, (reason) => metrics.clientError(reason));
  const listening = await listen(server, {
    port: options.port ?? store.current?.settings.port ?? DEFAULT_PORT,
    host: options.host ?? '0.0.0.0',
    backlog: serverLimits.listenBacklog,
    acceptors: serverLimits.acceptors,
  });
  const port = listening.address.port;
  await registerListenQueueMetrics(metrics.registry, listening.address, serverLimits.listenBacklog, listening.acceptors);

  let shuttingDown: Promise<void> | null = null;
  async function shutdown(): Promise<void> {
    const settings = store.current?.settings;
    readiness.startDraining();
    logger.info({ drain_delay_ms: settings?.drainDelayMs ?? 0 }, 'draining');
    await delay(settings?.drainDelayMs ?? 0);
    listening.closeAcceptors();
    const closed = new Promise<void>((resolveClose) => server.close(() => resolveClose()));
    const deadline = Date.now() + (settings?.shutdownTimeoutMs ?? 30_000);
    while (metrics.activeRequests > 0 && Date.now() < deadline) {
      server.closeIdleConnections();
      await delay(50);
    }
    if (metrics.activeRequests > 0) logger.warn({ active_requests: metrics.activeRequests }, 'shutdown deadline reached; closing');
    server.closeAllConnections();
    await closed;
    const started = await tracing;
    if (started !== null) {
      // The spans of the last requests go out within what is left of the deadline (never less than a second).
      tracerRef.tracer = null;
      const flushed = await started.shutdown(Math.max(1000, deadline - Date.now()));
      if (!flushed) logger.warn('tracing: spans still queued at the shutdown deadline were dropped');
    }
    fileSource.stop();
    await (await kube)?.stop();
    await transports.destroy();
    await rateLimiting.close();
    metrics.close();
    logger.info('stopped');
    await new Promise<void>((resolveFlush) => logger.flush(() => resolveFlush()));
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    server,
    openConnections: () => listening.connections(),
    store,
    metrics,
    readiness,
    logger,
    shutdown: () => (shuttingDown ??= shutdown()),
  };
}
