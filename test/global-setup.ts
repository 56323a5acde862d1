import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds (or finds in the cache) the tools the Kubernetes, chart and tracing
 * tests need (kube-apiserver and etcd, helm, Jaeger v2), once before any test
 * runs, so a fresh machine needs only `npm test`. The Debian programs (Redis,
 * squid, tinyproxy, python3) come from test/tools/install-packages.sh, which
 * needs root and so runs from .ci/run, not from here.
 */
export default function globalSetup(): void {
  for (const script of ['build-k8s.sh', 'build-helm.sh', 'build-jaeger.sh']) {
    const path = fileURLToPath(new URL(`./tools/${script}`, import.meta.url));
    const result = spawnSync('bash', [path], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status}); the tests that need what it builds cannot run`);
  }
}
