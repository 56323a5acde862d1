/**
 * Statuses are written by one replica at a time, the holder of a
 * coordination.k8s.io Lease, against a real kube-apiserver: two gateway
 * versions that disagree about a ModelRoute (a rollout) never take turns
 * rewriting its condition; both enforce; the next replica takes over when the
 * holder stops (released at once) or dies (after the lease's duration), and a
 * holder that loses the lease or cannot renew it stops writing.
 */
import { CLUSTER_START_TIMEOUT_MS, startCluster, type TestCluster } from './harness/cluster.js';
import { modelSent, startKubeGateway } from './harness/gateway.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import type { TestGateway } from '../support/gateway-harness.js';
import { sleep, waitFor } from '../support/wait.js';
import type { LeaseTiming } from '../../src/sources/kube/status-lease.js';

const NS = 'lease';
const LEASE = `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/api-proxy`;
const ROUTES = `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes`;
const TIMING: LeaseTiming = { durationSeconds: 2, renewDeadlineMs: 1500, retryMs: 250 };

let cluster: TestCluster;
let upstream: FakeUpstream;
let other: FakeUpstream;
const running: TestGateway[] = [];

beforeAll(async () => {
  cluster = await startCluster({ crds: true });
  await cluster.ensureNamespace(NS);
  upstream = await startFakeUpstream();
  other = await startFakeUpstream();
}, CLUSTER_START_TIMEOUT_MS);

afterEach(async () => {
  await Promise.all(running.splice(0).map((gw) => gw.stop()));
  await cluster.request('DELETE', LEASE);
  await cluster.request('DELETE', ROUTES);
});

afterAll(async () => {
  await upstream?.close();
  await other?.close();
  await cluster?.stop();
});

/** The old version knows no upstream 'other'; the new one does: they disagree about a route that names it. */
async function gateway(identity: string, knowsOther: boolean): Promise<TestGateway> {
  const upstreams = { default: { url: `${upstream.url}/v1` }, ...(knowsOther ? { other: { url: `${other.url}/v1` } } : {}) };
  const gw = await startKubeGateway(cluster, upstream.url, NS, { upstreams }, cluster.kubeConfig(), { identity, leaseTiming: TIMING });
  running.push(gw);
  return gw;
}

async function lease(): Promise<{ holder: string | undefined; transitions: number | undefined } | null> {
  const res = await cluster.request('GET', LEASE);
  if (res.status !== 200) return null;
  return { holder: res.json.spec.holderIdentity, transitions: res.json.spec.leaseTransitions };
}

async function routeState(name: string): Promise<{ resourceVersion: string; reason: string | undefined }> {
  const res = await cluster.request('GET', `${ROUTES}/${name}`);
  const condition = res.json.status?.conditions?.find((c: { type: string }) => c.type === 'Accepted');
  return { resourceVersion: res.json.metadata.resourceVersion, reason: condition?.reason };
}

function disputedRoute(name: string) {
  return cluster.request('POST', ROUTES, {
    apiVersion: 'apiproxy.io/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name },
    spec: { model: name, targets: [{ model: `${name}-on-other`, upstream: 'other' }] },
  });
}

test("during a rollout only the holder's verdict is written, the condition stays put, and both versions enforce their own routing", async () => {
  const old = await gateway('old-version', false);
  await waitFor(async () => (await lease())?.holder === 'old-version', 5000, 'the first gateway holding the lease');
  const next = await gateway('new-version', true);
  expect((await disputedRoute('disputed')).status).toBe(201);
  await waitFor(async () => (await routeState('disputed')).reason === 'UnknownUpstream', 5000, "the holder's verdict");

  // Nobody fights: the object is not rewritten over several lease periods.
  const settled = await routeState('disputed');
  await sleep(TIMING.durationSeconds * 1000 + 1000);
  expect(await routeState('disputed')).toEqual(settled);
  expect((await lease())?.holder).toBe('old-version');
  // every replica enforces what it knows
  expect(await modelSent(old.url, 'disputed')).toBe('disputed');
  expect(await modelSent(next.url, 'disputed')).toBe('disputed-on-other');

  // The old version stops (releasing the lease): the new one takes over at its next attempt and writes its verdict.
  await old.stop();
  running.splice(running.indexOf(old), 1);
  const took = await waitFor(async () => (await lease())?.holder === 'new-version', 3000, 'the takeover');
  expect(took).toBeLessThan(TIMING.durationSeconds * 1000);
  await waitFor(async () => (await routeState('disputed')).reason === 'Accepted', 3000, "the new holder's verdict");
  expect(next.logs.lines.some((line) => line.includes('holding the status lease'))).toBe(true);
});

test('a holder that died unreleased is replaced once its lease has gone unrenewed for its duration', async () => {
  const now = new Date().toISOString().replace('Z', '000Z'); // MicroTime: six fractional digits
  const created = await cluster.request('POST', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`, {
    apiVersion: 'coordination.k8s.io/v1',
    kind: 'Lease',
    metadata: { name: 'api-proxy' },
    spec: { holderIdentity: 'crashed-pod', leaseDurationSeconds: TIMING.durationSeconds, acquireTime: now, renewTime: now, leaseTransitions: 4 },
  });
  expect(created.status).toBe(201);
  expect((await disputedRoute('orphan')).status).toBe(201);
  const started = Date.now();
  await gateway('successor', true);
  await waitFor(async () => (await lease())?.holder === 'successor', 6000, 'the takeover');
  // not before the successor saw the lease unchanged for its whole duration
  expect(Date.now() - started).toBeGreaterThanOrEqual(TIMING.durationSeconds * 1000);
  expect((await lease())?.transitions).toBe(5);
  await waitFor(async () => (await routeState('orphan')).reason === 'Accepted', 3000, 'statuses written by the successor');
});

test('a holder whose lease is taken stops writing; one that cannot reach the API server steps down before its lease expires, and leads again after', async () => {
  const gw = await gateway('holder', true);
  await waitFor(async () => (await lease())?.holder === 'holder', 5000);

  // Another replica takes the lease and keeps renewing it: the holder stops leading and writes no status.
  let usurping = true;
  const usurp = (async () => {
    while (usurping) {
      const current = await cluster.request('GET', LEASE);
      const renewed = new Date().toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
      await cluster.request('PUT', LEASE, { ...current.json, spec: { ...current.json.spec, holderIdentity: 'usurper', renewTime: renewed } });
      await sleep(100);
    }
  })();
  await waitFor(
    () => gw.logs.lines.some((line) => line.includes('no longer holding the status lease') && line.includes('taken over by usurper')),
    3000,
    'stepping down',
  );
  expect((await disputedRoute('unwritten')).status).toBe(201);
  await sleep(1000);
  expect((await routeState('unwritten')).reason).toBeUndefined();
  usurping = false;
  await usurp;
  // the usurper is gone: after the lease's duration the gateway leads again and catches up
  await waitFor(async () => (await routeState('unwritten')).reason === 'Accepted', 6000, 'leading again');

  // The API server goes away: the holder stops leading within its renew deadline, before anyone may take over.
  await cluster.stopApiServer();
  try {
    await waitFor(() => gw.logs.lines.some((line) => line.includes('could not renew the lease in time')), TIMING.renewDeadlineMs + 2000, 'the renew deadline');
  } finally {
    await cluster.startApiServer();
  }
  await waitFor(
    async () => (await lease())?.holder === 'holder' && gw.logs.lines.filter((line) => line.includes('holding the status lease:')).length >= 3,
    10_000,
    'leading again',
  );
}, 60_000);
