/**
 * The tests StrykerJS runs against each mutant (`npm run test:mutation`,
 * stryker.config.mjs): the unit project, where each mutated module has its
 * own tests. One project, no global setup. Left out: the Kubernetes watch's
 * timing tests (they cover none of the mutated modules, and Stryker's first
 * run stops at any failure), and the tests that drive a whole gateway: every
 * request passes through all six modules, so each of those tests covers
 * every mutant, and jest cannot stop at the first failure: each mutant would
 * run them all (docs/reliability.md, "Mutation testing").
 */
import { shared } from './jest.config.js';

export default {
  ...shared,
  testTimeout: 30000,
  testMatch: ['<rootDir>/test/unit/**/*.test.ts'],
  testPathIgnorePatterns: ['/node_modules/', '<rootDir>/test/unit/resource-watch.test.ts'],
  // Properties there run at most 100 times and do not shrink (test/mutation/fast-check.ts).
  moduleNameMapper: { ...shared.moduleNameMapper, '^fast-check$': '<rootDir>/test/mutation/fast-check.ts' },
};
