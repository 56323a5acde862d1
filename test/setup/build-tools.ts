import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** What each jest project's tests need built, by the project's name (jest.config.js). */
const TOOLS: Record<string, readonly string[]> = {
  integration: ['build-jaeger.sh'],
  k8s: ['build-k8s.sh', 'build-helm.sh'],
  chart: ['build-k8s.sh', 'build-helm.sh'],
  compose: ['build-compose.sh'],
};

/**
 * The global setup of the projects that need programs built: builds (or finds
 * in the cache, outside the repo) what the project's tests need, once before
 * they run, so a fresh machine needs only `npm test`. The Debian programs
 * (Redis, squid, tinyproxy, python3) come from test/tools/install-packages.sh,
 * which needs root and so runs from .ci/run, not from here.
 */
export default function buildTools(_global: unknown, project: { displayName?: string | { name: string } }): void {
  const name = typeof project.displayName === 'string' ? project.displayName : (project.displayName?.name ?? '');
  for (const script of TOOLS[name] ?? []) {
    const path = fileURLToPath(new URL(`../tools/${script}`, import.meta.url));
    const result = spawnSync('bash', [path], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status}); the tests that need what it builds cannot run`);
  }
}
