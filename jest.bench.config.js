/** Benchmarks (npm run bench:k8s): jest.config.js's ESM + swc setup, test/bench/**\/*.bench.ts, no global setup. */
import { shared } from './jest.config.js';

export default {
  ...shared,
  testMatch: ['<rootDir>/test/bench/**/*.bench.ts'],
  testTimeout: 30 * 60_000,
  maxWorkers: 1,
};
