/**
 * For mutation runs only (jest.mutation.config.js): a property that fails
 * stops at its first counterexample instead of shrinking it. A mutant is
 * killed just the same; shrinking a 3,000-deep JSON text is what made
 * mutants time out.
 */
import fc from 'fast-check';

fc.configureGlobal({ endOnFailure: true });
