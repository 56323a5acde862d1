/**
 * Kubernetes enabled but the API server is not there: readiness stays 503
 * (no partial routing state is served as ready), liveness stays 200 (a
 * control-plane outage must not restart pods), and the gateway keeps trying.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { request } from 'undici';
import { kubeSource } from '../../src/sources/kube/kube-source.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { sleep, waitFor } from '../support/wait.js';

let upstream: FakeUpstream;
let gw: TestGateway;

function unreachableCluster(): KubeConfig {
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({
    clusters: [{ name: 'gone', server: 'http://127.0.0.1:1', skipTLSVerify: true }],
    users: [{ name: 'nobody' }],
    contexts: [{ name: 'gone', cluster: 'gone', user: 'nobody' }],
    currentContext: 'gone',
  });
  return kubeConfig;
}

beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway(baseConfig(upstream.url, { kubernetes: { enabled: true, namespaces: ['ns'] } }), {
    kubeSource: kubeSource(unreachableCluster(), 'ns'),
    namespace: 'ns',
  });
});
afterAll(async () => {
  await gw.stop();
  await upstream.close();
});

test('not ready, still alive, retrying with backoff', async () => {
  await sleep(1500);
  const ready = await request(`${gw.url}/health/ready`);
  expect(ready.statusCode).toBe(503);
  expect(await ready.body.json()).toEqual({ status: 'not_ready', reason: 'waiting for kubernetes sync' });
  expect((await request(`${gw.url}/health`)).statusCode).toBe(200);
  await waitFor(() => gw.logs.lines.filter((line) => line.includes('watch failed')).length >= 4, 5000, 'retries');
  const retries = gw.logs.entries
    .filter((entry) => entry['msg'] === 'watch failed; keeping the last state and retrying')
    .map((entry) => entry['retry_ms'] as number);
  expect(Math.max(...retries)).toBeGreaterThan(Math.min(...retries));
});

test('a config fixed after start that enables Kubernetes starts the source and gates readiness on it', async () => {
  const late = await startTestGateway('{"upstreams": "broken"}', { kubeSource: kubeSource(unreachableCluster(), 'ns'), namespace: 'ns' });
  try {
    expect((await request(`${late.url}/health/ready`)).statusCode).toBe(503);
    late.writeConfig(baseConfig(upstream.url, { kubernetes: { enabled: true, namespaces: ['ns'] } }));
    await waitFor(() => late.gateway.store.current !== null, 2000, 'config loaded');
    const ready = await request(`${late.url}/health/ready`);
    expect(ready.statusCode).toBe(503);
    expect(await ready.body.json()).toEqual({ status: 'not_ready', reason: 'waiting for kubernetes sync' });
    await waitFor(() => late.logs.lines.some((line) => line.includes('watch failed')), 3000, 'the source started');
  } finally {
    await late.stop();
  }
});
