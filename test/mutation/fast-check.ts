/**
 * fast-check as the tests see it in mutation runs only (jest.mutation.config.js
 * maps the package here): every property runs at most 100 times and stops at
 * its first counterexample instead of shrinking it. A mutant fails on the
 * first counterexample just the same; full runs and shrinking, over hundreds
 * of mutants, are what made the run take hours.
 */
import fc from '../../node_modules/fast-check/lib/fast-check.js';

const MAX_RUNS = 100;

function assert(property: Parameters<typeof fc.assert>[0], params?: Parameters<typeof fc.assert>[1]): ReturnType<typeof fc.assert> {
  return fc.assert(property, { ...params, numRuns: Math.min(params?.numRuns ?? MAX_RUNS, MAX_RUNS), endOnFailure: true });
}

export default { ...fc, assert: assert as typeof fc.assert };
