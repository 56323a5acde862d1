import { startGateway, type KubeSourceFactory } from './gateway.js';
import { ownNamespace } from './sources/kube/namespace.js';

/**
 * The Kubernetes client is loaded only when the config enables it: it is
 * most of the gateway's idle memory (about 85 MiB of RSS).
 */
function lazyKubeSource(namespace: string): KubeSourceFactory {
  return async (deps) => {
    const { kubeSource, loadKubeConfig } = await import('./sources/kube/kube-source.js');
    return kubeSource(loadKubeConfig(), namespace)(deps);
  };
}

/** Composition root: environment, start, signals. */
async function main(): Promise<void> {
  const env = process.env;
  const port = env['PORT'] === undefined || env['PORT'] === '' ? undefined : Number(env['PORT']);
  if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65_535)) throw new Error(`PORT must be a port number, got '${env['PORT']}'`);
  const namespace = ownNamespace(env);
  const gateway = await startGateway({
    configPath: env['CONFIG_PATH'] || 'config.json',
    env,
    port,
    namespace,
    kubeSource: lazyKubeSource(namespace),
  });
  gateway.logger.info({ port: gateway.port }, 'api-proxy listening');

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (++signals > 1) {
      gateway.logger.warn({ signal }, 'second signal: exiting now');
      gateway.logger.flush();
      process.exit(1);
    }
    gateway.logger.info({ signal }, 'shutting down');
    gateway.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        gateway.logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

main().catch((error: unknown) => {
  console.error(`api-proxy: ${(error as Error).message}`);
  process.exit(1);
});
