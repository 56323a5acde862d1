/**
 * The gateway with exactly what the chart gives it: the config.json of the installed ConfigMap and
 * a token of the chart's ServiceAccount (bound only by the chart's Role), against a real
 * kube-apiserver. Its informers sync (list/watch ModelRoutes and Secrets), a labelled client-key
 * Secret authenticates, a ModelRoute routes, and the gateway writes the route's status.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { request } from 'undici';
import { kubeSource } from '../../src/sources/kube/kube-source.js';
import { CLUSTER_START_TIMEOUT_MS, startCluster, type TestCluster } from '../k8s/harness/cluster.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';
import { HELM_BUILD_TIMEOUT_MS, chartDir, helmBinaries, runHelm } from './helm.js';

const NS = 'live';
const CLIENT_KEY = 'sk-client-FAKE-live-0000000000';
let cluster: TestCluster;
let upstream: FakeUpstream;
let gw: TestGateway | undefined;

beforeAll(async () => {
  const helm = helmBinaries();
  cluster = await startCluster();
  await cluster.ensureNamespace(NS);
  upstream = await startFakeUpstream();
  const res = runHelm(helm.v3, [
    'install',
    'live',
    chartDir,
    '-n',
    NS,
    '--kubeconfig',
    cluster.kubeconfigPath,
    '--set',
    `upstreams.default.url=${upstream.url}/v1`,
    '--set',
    'config.shutdown.drainDelayMs=0',
    '--set',
    'config.shutdown.timeoutMs=1000',
  ]);
  if (res.status !== 0) throw new Error(`helm install failed:\n${res.stderr}`);
}, CLUSTER_START_TIMEOUT_MS + HELM_BUILD_TIMEOUT_MS);

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  await cluster?.stop();
});

test("the chart's config + ServiceAccount token: the gateway syncs, authenticates, routes and writes status", async () => {
  const cm = await cluster.request('GET', `/api/v1/namespaces/${NS}/configmaps/live-api-proxy`);
  expect(cm.status).toBe(200);
  const config = JSON.parse(cm.json.data['config.json']);
  expect(config.kubernetes).toEqual({
    enabled: true,
    namespaces: [],
    client_key_selector: 'apiproxy.io/client-keys=true',
    lease_name: 'live-api-proxy-status',
  });

  const token = await cluster.serviceAccountToken(NS, 'live-api-proxy');
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(cluster.writeKubeconfig(token, NS));
  gw = await startTestGateway(config, { kubeSource: kubeSource(kubeConfig, NS), namespace: NS });
  const url = gw.url;
  await waitFor(async () => (await request(`${url}/health/ready`)).statusCode === 200, 10_000, 'ready (informers synced with the SA token)');

  const send = async (model: string) => {
    const res = await request(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.body.json()) as { model?: string };
    const sent = res.headers['x-apiproxy-upstream-model'];
    return `${res.statusCode}:${typeof sent === 'string' ? sent : (body.model ?? '')}`;
  };
  expect((await send('chat')).startsWith('401:')).toBe(true);

  // An admin adds a labelled client-key Secret and a ModelRoute.
  const secret = await cluster.request('POST', `/api/v1/namespaces/${NS}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: 'live-keys', labels: { 'apiproxy.io/client-keys': 'true' } },
    stringData: { 'live-team': CLIENT_KEY },
  });
  expect(secret.status).toBe(201);
  await waitFor(async () => (await send('plain')) === '200:plain', 10_000, 'client key from the labelled Secret');

  const route = await cluster.request('POST', `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes`, {
    apiVersion: 'apiproxy.io/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name: 'chat' },
    spec: { model: 'chat', targets: [{ model: 'routed-by-modelroute' }] },
  });
  expect(route.status).toBe(201);
  await waitFor(async () => (await send('chat')) === '200:routed-by-modelroute', 10_000, 'ModelRoute applied');

  // The status subresource, patched with the SA token (the chart's Role grants modelroutes/status patch).
  await waitFor(
    async () => {
      const got = await cluster.request('GET', `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes/chat`);
      return got.json?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Accepted' && c.status === 'True') === true;
    },
    10_000,
    'status written by the gateway',
  );
  expect(upstream.requests.length).toBeGreaterThanOrEqual(2);
  // It writes statuses holding the release's Lease (the chart's lease Role).
  const lease = await cluster.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/live-api-proxy-status`);
  expect(lease.status).toBe(200);
  expect(lease.json.spec.holderIdentity).toMatch(/.+/);

  // A ClientPolicy (the chart's Role lets it watch them) restricts the Secret's keys, and its status is written.
  const policy = await cluster.request('POST', `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/clientpolicies`, {
    apiVersion: 'apiproxy.io/v1alpha1',
    kind: 'ClientPolicy',
    metadata: { name: 'chat-only' },
    spec: { consumers: { secretNames: ['live-keys'] }, models: ['chat'] },
  });
  expect(policy.status).toBe(201);
  await waitFor(async () => (await send('plain')).startsWith('403:'), 10_000, 'the allow-list applied');
  expect(await send('chat')).toBe('200:routed-by-modelroute');
  await waitFor(
    async () => {
      const got = await cluster.request('GET', `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/clientpolicies/chat-only`);
      return got.json?.status?.conditions?.some((c: { type: string; status: string }) => c.type === 'Accepted' && c.status === 'True') === true;
    },
    10_000,
    'ClientPolicy status written by the gateway',
  );
  expect(gw.logs.lines.join('\n')).not.toMatch(/forbidden/i);
}, 60_000);
