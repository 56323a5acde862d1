import cluster from 'node:cluster';
import { isClusterMessage } from './cluster/messages.js';
import { ConfigError } from './config/config-error.js';
import { StopRequests, type StopFunction } from './stop-requests.js';
import { workersFromEnv } from './cluster/workers-setting.js';
import type { Gateway, KubeSourceFactory } from './gateway.js';
import { ownNamespace } from './sources/kube/namespace.js';

/** Set by the cluster primary in each worker's environment: the worker's slot (0 contends for the status Lease). */
const WORKER_INDEX_ENV = 'API_PROXY_WORKER';

/**
 * The Kubernetes client is loaded only when the config enables it: it is
 * most of the gateway's idle memory (docs/performance.md).
 */
function lazyKubeSource(namespace: string, writeStatus: boolean): KubeSourceFactory {
  return async (deps) => {
    const { kubeSource, loadKubeConfig } = await import('./sources/kube/kube-source.js');
    return kubeSource(loadKubeConfig(), namespace, writeStatus)(deps);
  };
}

/** First call: drain and exit 0 (1 if the drain fails); second call: exit 1 at once. */
function stopper(gateway: Gateway): StopFunction {
  let stopping = false;
  return (reason, now) => {
    if (stopping && now) {
      gateway.logger.warn(reason, 'second signal: exiting now');
      process.exit(1);
    }
    if (stopping) return;
    stopping = true;
    gateway.logger.info(reason, 'shutting down');
    gateway.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        gateway.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
}

/** Composition root: environment, start (one process, or a cluster of `WORKERS`), signals. */
async function main(): Promise<void> {
  const env = process.env;
  const port = env['PORT'] === undefined || env['PORT'] === '' ? undefined : Number(env['PORT']);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535)) throw new ConfigError(`PORT must be a port number, got '${env['PORT']}'`);
  const workers = workersFromEnv(env['WORKERS']);
  if (workers > 1 && cluster.isPrimary) {
    // The primary loads neither the gateway nor its dependencies: it only forks, watches and sums.
    const [{ runPrimary }, { createLogger }] = await Promise.all([import('./cluster/primary.js'), import('./observability/logger.js')]);
    const code = await runPrimary(workers, WORKER_INDEX_ENV, createLogger(env['LOG_LEVEL'] || 'info', undefined, -1));
    process.exit(code);
  }
  const worker = cluster.isWorker ? Number(env[WORKER_INDEX_ENV] ?? cluster.worker!.id) : undefined;
  const [{ startGateway }, clusterMetrics, clusterCounters] = await Promise.all([
    import('./gateway.js'),
    worker === undefined ? null : import('./cluster/worker-metrics.js'),
    worker === undefined ? null : import('./cluster/primary-counters.js'),
  ]);
  // A worker's limits without Redis are counted by the primary, for the whole replica.
  const localCounters = clusterCounters === null ? undefined : new clusterCounters.PrimaryCounters((message) => process.send!(message));
  if (localCounters !== undefined) process.on('message', (message: unknown) => localCounters.onMessage(message));
  // Stop requests are taken from the start (see StopRequests). A worker obeys the primary only (see
  // ShutdownRequest); should the primary die, Node's cluster module ends the worker at once (in a
  // container the whole process group goes with PID 1 anyway).
  const stopRequests = new StopRequests();
  if (worker === undefined) {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => stopRequests.request({ signal }, ++signals > 1);
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  } else {
    process.on('SIGTERM', () => {});
    process.on('SIGINT', () => {});
    process.on('message', (message: unknown) => {
      if (isClusterMessage(message) && message.type === 'api-proxy:shutdown') stopRequests.request({ from: 'primary' }, message.now);
    });
  }
  const namespace = ownNamespace(env);
  const gateway = await startGateway({
    configPath: env['CONFIG_PATH'] || 'config.json',
    env,
    port,
    namespace,
    kubeSource: lazyKubeSource(namespace, worker === undefined || worker === 0),
    ...(worker === undefined || clusterMetrics === null ? {} : { worker, metricsReport: clusterMetrics.clusterMetricsReport }),
    ...(localCounters === undefined ? {} : { localCounters }),
  });
  gateway.logger.info({ port: gateway.port }, 'api-proxy listening');

  stopRequests.started(stopper(gateway));
}

main().catch((error: unknown) => {
  console.error(`api-proxy: ${(error as Error).message}`);
  process.exit(1);
});
