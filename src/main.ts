import { startGateway } from './gateway.js';
import { kubeSource, loadKubeConfig } from './sources/kube/kube-source.js';
import { ownNamespace } from './sources/kube/namespace.js';

/** Composition root: environment, start, signals. */
async function main(): Promise<void> {
  const env = process.env;
  const port = env['PORT'] === undefined || env['PORT'] === '' ? 5000 : Number(env['PORT']);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new Error(`PORT must be a port number, got '${env['PORT']}'`);
  const kubeConfig = loadKubeConfig();
  const namespace = ownNamespace(env, kubeConfig);
  const gateway = await startGateway({
    configPath: env['CONFIG_PATH'] || 'config.json',
    env,
    port,
    namespace,
    kubeSource: kubeSource(kubeConfig, namespace),
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
