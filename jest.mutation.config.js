/**
 * The tests StrykerJS runs against each mutant (`npm run test:mutation`,
 * stryker.config.js): the unit tests of the six mutated modules and of what
 * they use (error codes, the snapshot's secrets, the upstream response
 * parser's errors). One project, no global setup. Left out: the tests that
 * drive a whole gateway (every request passes through all six modules, so
 * each of those tests covers every mutant, and jest cannot stop at a first
 * failure: each mutant would run them all), and the rest of the unit project
 * (a module-level mutant, such as a header missing from a Set, runs every
 * test there is).
 */
import { shared } from './jest.config.js';

export default {
  ...shared,
  testTimeout: 30000,
  testMatch: [
    'authenticate',
    'request-body',
    'json-request-grammar',
    'upstream-headers',
    'redact',
    'body-transform',
    'upstream-errors',
    'errors',
    'config',
    'response-parser',
  ].map((name) => `<rootDir>/test/unit/${name}.test.ts`),
  // Properties there run at most 100 times and do not shrink (test/mutation/fast-check.ts).
  moduleNameMapper: { ...shared.moduleNameMapper, '^fast-check$': '<rootDir>/test/mutation/fast-check.ts' },
};
