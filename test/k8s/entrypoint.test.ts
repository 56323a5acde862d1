/**
 * The real entrypoint (`node dist/main.js`) run as a process with a kubeconfig,
 * as a local user would: it loads the Kubernetes client on demand, syncs, routes,
 * and drains on SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { CLUSTER_START_TIMEOUT_MS, REPO_ROOT, startCluster, type TestCluster } from './harness/cluster.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY } from '../support/gateway-harness.js';
import { freePort, waitFor as waitUntil } from '../support/wait.js';
import { gatewayServiceAccountToken } from './harness/gateway.js';

const NS = 'entry';
let cluster: TestCluster;
let upstream: FakeUpstream;
let gateway: ChildProcess;
let dir: string;
let url: string;
let output = '';

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  await waitUntil(check, timeoutMs, 'gateway').catch((error: Error) => {
    throw new Error(`${error.message}; gateway output:\n${output.slice(-3000)}`);
  });
}

beforeAll(async () => {
  execFileSync(join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: REPO_ROOT });
  cluster = await startCluster({ crds: true });
  await cluster.ensureNamespace(NS);
  upstream = await startFakeUpstream();
  const token = await gatewayServiceAccountToken(cluster, NS, 'gateway');
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-entry-'));
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    [
      'upstreams:',
      `  default: { url: "${upstream.url}/v1" }`,
      'client_keys:',
      `  - { id: local, key: "${CLIENT_KEY}" }`,
      'shutdown: { drain_delay_ms: 200, timeout_ms: 5000 }',
      'kubernetes:',
      '  enabled: true',
      '',
    ].join('\n'),
  );
  const port = await freePort();
  url = `http://127.0.0.1:${port}`;
  gateway = spawn(process.execPath, ['dist/main.js'], {
    cwd: REPO_ROOT,
    env: { ...process.env, CONFIG_PATH: config, PORT: String(port), POD_NAMESPACE: NS, KUBECONFIG: cluster.writeKubeconfig(token, NS), LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway.stdout!.on('data', (chunk) => (output += String(chunk)));
  gateway.stderr!.on('data', (chunk) => (output += String(chunk)));
  await waitFor(async () => (await request(`${url}/health/ready`)).statusCode === 200, 20_000);
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  if (gateway !== undefined && gateway.exitCode === null) gateway.kill('SIGKILL');
  await upstream?.close();
  await cluster?.stop();
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
});

test('syncs ModelRoutes from a kubeconfig, routes, and exits 0 on SIGTERM after draining', async () => {
  await cluster.request('POST', `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes`, {
    apiVersion: 'apiproxy.io/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name: 'entry', namespace: NS },
    spec: { model: 'entry-model', targets: [{ model: 'entry-target' }] },
  });
  await waitFor(async () => {
    const res = await request(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: '{"model":"entry-model"}',
    });
    await res.body.text();
    return res.headers['x-apiproxy-upstream-model'] === 'entry-target';
  }, 3000);
  const exited = new Promise<number | null>((resolve) => gateway.once('exit', (code) => resolve(code)));
  gateway.kill('SIGTERM');
  await waitFor(async () => (await request(`${url}/health/ready`)).statusCode === 503, 1000);
  expect(await exited).toBe(0);
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { msg: string });
  expect(lines.map((line) => line.msg)).toEqual(expect.arrayContaining(['Kubernetes sources synced', 'draining', 'stopped']));
}, 30_000);
