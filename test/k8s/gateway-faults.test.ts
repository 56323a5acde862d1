/**
 * The gateway against a real kube-apiserver, when ModelRoutes misbehave:
 * routes deleted and recreated in quick succession end in the right state
 * (routing and status), and ModelRoutes that slipped past the CRD's validation
 * are reported Accepted=False/Invalid while the gateway keeps answering.
 */
import { request } from 'undici';
import { CLUSTER_START_TIMEOUT_MS, type TestCluster } from './harness/cluster.js';
import { type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';
import { modelSent, startClusterWithGateway } from './harness/gateway.js';

const NS = 'faults';
const CRD = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modelroutes.apiproxy.io';
const routesPath = `/apis/apiproxy.io/v1alpha1/namespaces/${NS}/modelroutes`;

let cluster: TestCluster;
let gw: TestGateway;
let stop: (() => Promise<void>) | undefined;

beforeAll(async () => {
  ({ cluster, gw, stop } = await startClusterWithGateway(NS, { access_log: false }));
}, CLUSTER_START_TIMEOUT_MS);
afterAll(() => stop?.());

const send = (model: string): Promise<string> => modelSent(gw.url, model);

function modelRoute(name: string, spec: unknown) {
  return { apiVersion: 'apiproxy.io/v1alpha1', kind: 'ModelRoute', metadata: { name, namespace: NS }, spec };
}

interface Condition {
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
}

async function getRoute(name: string): Promise<{ uid?: string; generation?: number; accepted?: Condition; observedGeneration?: number } | null> {
  const res = await cluster.request('GET', `${routesPath}/${name}`);
  if (res.status === 404) return null;
  return {
    uid: res.json?.metadata?.uid,
    generation: res.json?.metadata?.generation,
    accepted: res.json?.status?.conditions?.find((c: { type: string }) => c.type === 'Accepted'),
    observedGeneration: res.json?.status?.observedGeneration,
  };
}

/** Sends requests in the background until stopped; counts answers that are not the expected model. */
function steadyTraffic(model: string, expected: string) {
  let running = true;
  let sent = 0;
  const wrong: string[] = [];
  const done = (async () => {
    while (running) {
      sent++;
      const seen = await send(model);
      if (seen !== expected) wrong.push(seen);
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  })();
  return {
    async stop() {
      running = false;
      await done;
      return { sent, wrong };
    },
  };
}

describe('delete and recreate in quick succession', () => {
  test('10 delete+create rounds without waiting end on the last object: its target, its status', async () => {
    expect((await cluster.request('POST', routesPath, modelRoute('flappy', { model: 'flappy', targets: [{ model: 'flap-start' }] }))).status).toBe(201);
    await waitFor(async () => (await send('flappy')) === 'flap-start', 5000, 'initial route');
    const traffic = steadyTraffic('steady-file-model', 'steady-file-model');
    for (let i = 0; i < 10; i++) {
      expect((await cluster.request('DELETE', `${routesPath}/flappy`)).status).toBe(200);
      expect((await cluster.request('POST', routesPath, modelRoute('flappy', { model: 'flappy', targets: [{ model: `flap-${i}` }] }))).status).toBe(201);
    }
    const final = await getRoute('flappy');
    await waitFor(async () => (await send('flappy')) === 'flap-9', 5000, 'routing on the last object');
    // the status lands on the last object (same name, new uid), for its generation
    await waitFor(async () => (await getRoute('flappy'))?.accepted?.status === 'True', 5000, 'status of the last object');
    const written = await getRoute('flappy');
    expect(written?.uid).toBe(final?.uid);
    expect(written?.accepted).toMatchObject({ reason: 'Accepted', observedGeneration: 1 });
    // and it stays that way
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await send('flappy')).toBe('flap-9');
    // status writes aimed at objects deleted meanwhile are dropped quietly, not logged as failures
    expect(gw.logs.lines.filter((line) => line.includes('could not write status'))).toEqual([]);

    const { sent, wrong } = await traffic.stop();
    expect(sent).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
  });

  test('10 create+delete rounds ending with a delete leave no route behind', async () => {
    for (let i = 0; i < 10; i++) {
      expect((await cluster.request('POST', routesPath, modelRoute('blinky', { model: 'blinky', targets: [{ model: `blink-${i}` }] }))).status).toBe(201);
      expect((await cluster.request('DELETE', `${routesPath}/blinky`)).status).toBe(200);
    }
    expect(await getRoute('blinky')).toBeNull();
    // unknown models pass through unchanged: the route is gone
    await waitFor(async () => (await send('blinky')) === 'blinky', 5000, 'route gone');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await send('blinky')).toBe('blinky');
    expect(gw.gateway.store.current?.routeStatuses.some((s) => s.name === 'blinky')).toBe(false);
  });

  test('a quick delete+recreate that moves the route to another model frees the old one', async () => {
    await cluster.request('POST', routesPath, modelRoute('mover', { model: 'old-model', targets: [{ model: 'moved-target' }] }));
    await waitFor(async () => (await send('old-model')) === 'moved-target');
    await cluster.request('DELETE', `${routesPath}/mover`);
    await cluster.request('POST', routesPath, modelRoute('mover', { model: 'new-model', targets: [{ model: 'moved-target' }] }));
    await waitFor(async () => (await send('new-model')) === 'moved-target');
    expect(await send('old-model')).toBe('old-model');
  });
});

describe('ModelRoutes that slipped past the CRD validation', () => {
  let originalCrd: any;

  beforeAll(async () => {
    // Relax the CRD's schema to "anything goes" so malformed objects can be stored,
    // as with a CRD applied from an older chart or a gateway newer than its CRD.
    const crd = await cluster.request('GET', CRD);
    expect(crd.status).toBe(200);
    originalCrd = crd.json;
    const relaxed = structuredClone(crd.json);
    for (const version of relaxed.spec.versions) {
      version.schema = { openAPIV3Schema: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } };
    }
    const put = await cluster.request('PUT', CRD, relaxed);
    expect(put.status).toBe(200);
    // the API server picks the new schema up shortly after: wait until a malformed object passes a dry run
    await waitFor(
      async () =>
        (await cluster.request('POST', `${routesPath}?dryRun=All`, modelRoute('probe', { model: 'probe', targets: [{ model: 'x', weight: 'heavy' }] })))
          .status === 201,
      10_000,
      'relaxed schema in effect',
    );
  });

  afterAll(async () => {
    if (originalCrd === undefined) return;
    const current = await cluster.request('GET', CRD);
    const restored = { ...current.json, spec: { ...current.json.spec, versions: originalCrd.spec.versions } };
    await cluster.request('PUT', CRD, restored);
  });

  const malformed: [string, unknown, RegExp][] = [
    ['weight-string', { model: 'bad-weight', targets: [{ model: 'x', weight: 'heavy' }] }, /^spec\.targets\.0\.weight: /],
    ['weight-too-big', { model: 'big-weight', targets: [{ model: 'x', weight: 5000 }] }, /^spec\.targets\.0\.weight: /],
    ['priority-negative', { model: 'bad-priority', targets: [{ model: 'x', priority: -1 }] }, /^spec\.targets\.0\.priority: /],
    ['no-targets', { model: 'no-targets' }, /^spec\.targets: /],
    ['empty-targets', { model: 'empty-targets', targets: [] }, /^spec\.targets: /],
    ['spec-string', 'garbage', /^spec\.: /],
    ['no-spec', undefined, /^spec\.: /],
    ['model-number', { model: 42, targets: [{ model: 'x' }] }, /^spec\.model: /],
    ['target-null', { model: 'target-null', targets: [null] }, /^spec\.targets\.0: /],
    ['too-many-targets', { model: 'many', targets: Array.from({ length: 17 }, (_, i) => ({ model: `t${i}`, weight: 1 })) }, /^spec\.targets: /],
    // a malformed route that claims a model a valid route already serves must not take it over (nor conflict)
    ['claims-valid', { model: 'valid-model', targets: [{ model: 'hijacked', weight: -1 }] }, /^spec\.targets\.0\.weight: /],
  ];

  test('each is reported Accepted=False, reason Invalid; the gateway keeps answering and valid routes keep working', async () => {
    expect((await cluster.request('POST', routesPath, modelRoute('valid', { model: 'valid-model', targets: [{ model: 'valid-target' }] }))).status).toBe(201);
    await waitFor(async () => (await send('valid-model')) === 'valid-target');
    const traffic = steadyTraffic('valid-model', 'valid-target');

    for (const [name, spec] of malformed) {
      const body = spec === undefined ? { apiVersion: 'apiproxy.io/v1alpha1', kind: 'ModelRoute', metadata: { name, namespace: NS } } : modelRoute(name, spec);
      const created = await cluster.request('POST', routesPath, body);
      expect([name, created.status]).toEqual([name, 201]);
    }
    for (const [name, , message] of malformed) {
      await waitFor(async () => (await getRoute(name))?.accepted?.reason === 'Invalid', 5000, `status of ${name}`);
      const route = await getRoute(name);
      expect([name, route?.accepted?.status]).toEqual([name, 'False']);
      expect([name, route?.accepted?.message]).toEqual([name, expect.stringMatching(message)]);
      expect(route?.observedGeneration).toBe(1);
    }

    // still answering, on every path, and a route created after the malformed ones works
    expect((await request(`${gw.url}/health`)).statusCode).toBe(200);
    expect((await request(`${gw.url}/health/ready`)).statusCode).toBe(200);
    expect(await send('bad-weight')).toBe('bad-weight');
    await cluster.request('POST', routesPath, modelRoute('after', { model: 'after-model', targets: [{ model: 'after-target' }] }));
    await waitFor(async () => (await send('after-model')) === 'after-target');
    await waitFor(async () => (await getRoute('valid'))?.accepted?.status === 'True', 5000, 'valid route status');

    const { sent, wrong } = await traffic.stop();
    expect(sent).toBeGreaterThan(10);
    expect(wrong).toEqual([]);
    // the malformed objects never made a whole Kubernetes update fail
    expect(gw.logs.lines.join('\n')).not.toMatch(/Kubernetes update rejected/);
  });

  test('fixing a malformed route makes it Accepted for its new generation', async () => {
    const patched = await cluster.request(
      'PATCH',
      `${routesPath}/weight-string`,
      { spec: { targets: [{ model: 'fixed-target', weight: 2 }] } },
      { contentType: 'application/merge-patch+json' },
    );
    expect(patched.status).toBe(200);
    await waitFor(async () => (await send('bad-weight')) === 'fixed-target');
    await waitFor(async () => (await getRoute('weight-string'))?.accepted?.status === 'True', 5000, 'fixed status');
    expect(await getRoute('weight-string')).toMatchObject({ generation: 2, observedGeneration: 2, accepted: { reason: 'Accepted', observedGeneration: 2 } });
  });

  test('breaking a working route takes it out of routing and reports it, without touching the others', async () => {
    const patched = await cluster.request('PATCH', `${routesPath}/after`, { spec: { targets: 'oops' } }, { contentType: 'application/merge-patch+json' });
    expect(patched.status).toBe(200);
    await waitFor(async () => (await send('after-model')) === 'after-model');
    await waitFor(async () => (await getRoute('after'))?.accepted?.reason === 'Invalid', 5000, 'broken status');
    expect(await getRoute('after')).toMatchObject({ observedGeneration: 2, accepted: { status: 'False', observedGeneration: 2 } });
    expect(await send('valid-model')).toBe('valid-target');
    expect(await send('bad-weight')).toBe('fixed-target');
  });
});
