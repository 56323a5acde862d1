/**
 * Jest runs in ESM mode (node --experimental-vm-modules): @kubernetes/client-node is ESM-only.
 * Tests are sorted by what they need, one project each (`npm run test:<project>` runs one):
 *   unit         pure: no sockets, processes or files
 *   integration  in-process servers, child processes, files, real local programs (Redis, squid, tinyproxy,
 *                Jaeger: test/support/real/) (test/integration, reliability, security)
 *   k8s          a real kube-apiserver and etcd (built once from the Go module proxy by the global setup)
 *   chart        helm (built the same way) and the real API server
 *   compose      compose.yaml as compose-go, Docker Compose's loader, normalizes it (built the same way)
 * Each project's global setup builds (or finds in the cache) what it needs (test/setup/).
 * The container image is tested outside jest (test/container/run.sh, needs root and buildah).
 */
const swc = [
  '@swc/jest',
  {
    jsc: { parser: { syntax: 'typescript' }, target: 'es2023' },
    module: { type: 'es6' },
    sourceMaps: 'inline',
  },
];

export const shared = {
  testEnvironment: 'node',
  extensionsToTreatAsEsm: ['.ts'],
  transform: { '^.+\\.ts$': swc },
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
};

const buildTools = '<rootDir>/test/setup/build-tools.ts';

export default {
  maxWorkers: 2,
  testTimeout: 30000,
  projects: [
    { ...shared, displayName: 'unit', testMatch: ['<rootDir>/test/unit/**/*.test.ts'] },
    {
      ...shared,
      displayName: 'integration',
      testMatch: ['<rootDir>/test/{integration,reliability,security}/**/*.test.ts'],
      globalSetup: buildTools,
    },
    { ...shared, displayName: 'k8s', testMatch: ['<rootDir>/test/k8s/**/*.test.ts'], globalSetup: buildTools },
    { ...shared, displayName: 'chart', testMatch: ['<rootDir>/test/chart/**/*.test.ts'], globalSetup: buildTools },
    { ...shared, displayName: 'compose', testMatch: ['<rootDir>/test/container/**/*.test.ts'], globalSetup: buildTools },
  ],
};
