import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds (or finds in the cache) the tools the Kubernetes and chart tests
 * need, once before any test runs, so a fresh machine needs only `npm test`.
 */
export default function globalSetup(): void {
  for (const script of ['build-k8s.sh', 'build-helm.sh']) {
    const path = fileURLToPath(new URL(`./tools/${script}`, import.meta.url));
    const result = spawnSync('bash', [path], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status}); the Kubernetes and chart tests cannot run`);
  }
}
