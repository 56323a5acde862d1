/**
 * 410 Gone from a real API server: with the watch cache off, a watch resumed
 * from a resourceVersion that etcd has compacted away is refused with 410.
 * The gateway resumes a quiet watch (aborted after watch_timeout_seconds of
 * silence: without the watch cache there are no bookmarks) from the last
 * version it saw; after a compaction that is gone, and it must list again and
 * keep routing.
 */
import { CLUSTER_START_TIMEOUT_MS, type TestCluster } from './harness/cluster.js';
import { modelSent, startClusterWithGateway } from './harness/gateway.js';
import type { TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

const NS = 'gone';
let cluster: TestCluster;
let gw: TestGateway;
let stop: (() => Promise<void>) | undefined;

const routes = `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes`;
const route = (name: string, model: string, target: string) => ({
  apiVersion: 'apiproxy.io/v1alpha1',
  kind: 'ModelRoute',
  metadata: { name, namespace: NS },
  spec: { model, targets: [{ model: target }] },
});

beforeAll(async () => {
  // Quiet watches are aborted after 5 s of silence and resumed from their last resourceVersion.
  const kubernetes = { enabled: true, namespaces: [NS], watch_timeout_seconds: 5 };
  ({ cluster, gw, stop } = await startClusterWithGateway(NS, { kubernetes }, { watchCache: false }));
}, CLUSTER_START_TIMEOUT_MS);
afterAll(() => stop?.());

test('a watch resumed from a compacted resourceVersion gets 410; the gateway lists again and keeps routing', async () => {
  expect((await cluster.request('POST', routes, route('before', 'before', 'before-target'))).status).toBe(201);
  await waitFor(async () => (await modelSent(gw.url, 'before')) === 'before-target', 5000, 'first route');

  // Move etcd's revision past everything the gateway has seen, then compact it all away.
  let revision = '';
  for (let i = 0; i < 5; i++) {
    const created = await cluster.request('POST', '/api/v1/namespaces/default/configmaps', { metadata: { generateName: 'bump-' }, data: { i: String(i) } });
    revision = created.json.metadata.resourceVersion;
  }
  const compacted = await fetch(`${cluster.etcdUrl}/v3/kv/compaction`, { method: 'POST', body: JSON.stringify({ revision, physical: true }) });
  expect(compacted.status).toBe(200);

  // Within 5 s the quiet watches are aborted; resumed from the compacted version, they get 410.
  await waitFor(() => gw.logs.lines.some((line) => line.includes('410 Gone')), 20_000, 'a 410 from the API server');
  expect(await modelSent(gw.url, 'before')).toBe('before-target');

  expect((await cluster.request('POST', routes, route('after', 'after', 'after-target'))).status).toBe(201);
  await waitFor(async () => (await modelSent(gw.url, 'after')) === 'after-target', 5000, 'a route created after the 410');
  expect(await modelSent(gw.url, 'before')).toBe('before-target');
}, 60_000);
