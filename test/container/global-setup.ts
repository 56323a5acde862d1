import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** Builds (or finds in the cache) compose-go's compose-config once before the compose tests run. */
export default function globalSetup(): void {
  const path = fileURLToPath(new URL('../tools/build-compose.sh', import.meta.url));
  const result = spawnSync('bash', [path], { stdio: ['ignore', 'inherit', 'inherit'] });
  if (result.status !== 0) throw new Error(`build-compose.sh failed (exit ${result.status}); the compose tests cannot run`);
}
