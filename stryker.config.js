/**
 * Mutation testing of the security-critical modules (`npm run test:mutation`):
 * auth, the body rewrite, header rules, redaction and error mapping, against
 * the fast tests (jest.mutation.config.js). The score and what survives are
 * in docs/reliability.md.
 */
export default {
  testRunner: 'jest',
  testRunnerNodeArgs: ['--experimental-vm-modules'],
  jest: { projectType: 'custom', configFile: 'jest.mutation.config.js', enableFindRelatedTests: false },
  mutate: [
    'src/pipeline/authenticate.ts',
    'src/pipeline/json-request.ts',
    'src/pipeline/upstream-headers.ts',
    'src/pipeline/redact.ts',
    'src/errors/upstream.ts',
    'src/errors/write-error.ts',
  ],
  coverageAnalysis: 'perTest',
  concurrency: 2,
  timeoutMS: 5000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/mutation.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  thresholds: { high: 90, low: 85, break: 85 },
  ignorePatterns: ['dist', 'dist-bench', 'bench-results', 'reports', 'coverage', '.cache'],
  // A second run re-tests only the mutants whose code or covering tests changed.
  incremental: true,
  incrementalFile: 'reports/mutation/incremental.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
};
