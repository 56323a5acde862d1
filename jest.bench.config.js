/** Benchmarks (npm run bench:k8s): same ESM + swc setup as jest.config.js, test/bench/**\/*.bench.ts, no global setup. */
const swc = [
  '@swc/jest',
  {
    jsc: { parser: { syntax: 'typescript' }, target: 'es2023' },
    module: { type: 'es6' },
    sourceMaps: 'inline',
  },
];

export default {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testMatch: ['<rootDir>/test/bench/**/*.bench.ts'],
  testTimeout: 30 * 60_000,
  maxWorkers: 1,
};
