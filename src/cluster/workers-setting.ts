import os from 'node:os';

const MAX_WORKERS = 64;

/**
 * `WORKERS`: how many gateway processes serve the port. Unset or empty is 1
 * (one process, no cluster); `auto` is one per available CPU.
 */
export function workersFromEnv(value: string | undefined): number {
  if (value === undefined || value === '') return 1;
  if (value === 'auto') return Math.min(os.availableParallelism(), MAX_WORKERS);
  const count = Number(value);
  if (!Number.isInteger(count) || count < 1 || count > MAX_WORKERS) {
    throw new Error(`WORKERS must be a whole number from 1 to ${MAX_WORKERS}, or 'auto', got '${value}'`);
  }
  return count;
}
