import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/**
 * Builds (or finds in the cache, outside the repo) the programs some tests need,
 * once before those tests run, so a fresh machine needs only `npm test`. Each
 * jest project that needs a tool names it in its own global setup (the files
 * beside this one). The Debian programs (Redis, squid, tinyproxy, python3) come
 * from test/tools/install-packages.sh, which needs root and so runs from
 * .ci/run, not from here.
 */
export function buildTools(scripts: readonly string[]): void {
  for (const script of scripts) {
    const path = fileURLToPath(new URL(`../tools/${script}`, import.meta.url));
    const result = spawnSync('bash', [path], { stdio: ['ignore', 'inherit', 'inherit'] });
    if (result.status !== 0) throw new Error(`${script} failed (exit ${result.status}); the tests that need what it builds cannot run`);
  }
}
