/**
 * The chart against a real kube-apiserver + etcd (test/k8s/harness): `helm install` (every object
 * accepted, the chart's CRD included), the ServiceAccount's token can do exactly what the RBAC
 * grants, `helm upgrade` with changed values moves RBAC and config, `helm uninstall` cleans up.
 * helm v3 and helm v4 (server-side apply) each install a release.
 *
 * No controller-manager, scheduler or kubelet run: pods are never created, so no `--wait` and no
 * `helm test` here (the container itself is proven by test/container/run.sh).
 */
import * as path from 'node:path';
import { CLUSTER_START_TIMEOUT_MS, startCluster } from '../k8s/harness/cluster.js';
import type { TestCluster } from '../k8s/harness/cluster.js';
import { waitFor } from '../support/wait.js';
import { HELM_BUILD_TIMEOUT_MS, chartDir, ciValuesDir, helmBinaries, parseObjects, runHelm, type HelmBinaries, type K8sObject } from './helm.js';

let cluster: TestCluster;
let helm: HelmBinaries;

beforeAll(async () => {
  helm = helmBinaries();
  cluster = await startCluster();
  for (const ns of ['apps', 'apps-v4', 'team-a', 'team-b', 'elsewhere']) await cluster.ensureNamespace(ns);
}, CLUSTER_START_TIMEOUT_MS + HELM_BUILD_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.stop();
});

function h(bin: string, args: string[]) {
  const res = runHelm(bin, [...args, '--kubeconfig', cluster.kubeconfigPath]);
  if (res.status !== 0) throw new Error(`helm ${args.join(' ')} failed (${res.status}):\n${res.stderr}\n${res.stdout}`);
  return res;
}

/** The API path of an object (core and named groups, namespaced or cluster-scoped). */
function apiPath(o: K8sObject): string {
  const plural: Record<string, string> = {
    ConfigMap: 'configmaps',
    Secret: 'secrets',
    Service: 'services',
    ServiceAccount: 'serviceaccounts',
    Pod: 'pods',
    Deployment: 'deployments',
    PodDisruptionBudget: 'poddisruptionbudgets',
    HorizontalPodAutoscaler: 'horizontalpodautoscalers',
    Role: 'roles',
    RoleBinding: 'rolebindings',
    ClusterRole: 'clusterroles',
    ClusterRoleBinding: 'clusterrolebindings',
    NetworkPolicy: 'networkpolicies',
    CustomResourceDefinition: 'customresourcedefinitions',
  };
  const resource = plural[o.kind];
  if (!resource) throw new Error(`no plural for ${o.kind}`);
  const prefix = o.apiVersion.includes('/') ? `/apis/${o.apiVersion}` : `/api/${o.apiVersion}`;
  const ns = o.metadata.namespace ? `/namespaces/${o.metadata.namespace}` : '';
  return `${prefix}${ns}/${resource}/${o.metadata.name}`;
}

async function get(o: K8sObject) {
  return cluster.request('GET', apiPath(o));
}

/** The objects of a release as helm recorded them (`helm get manifest`). */
function manifest(bin: string, release: string, ns: string): K8sObject[] {
  return parseObjects(h(bin, ['get', 'manifest', release, '-n', ns]).stdout);
}

const ci = (name: string) => path.join(ciValuesDir, name);

describe('helm v3: install, RBAC of the ServiceAccount token, upgrade, uninstall', () => {
  const release = 'rel';
  const ns = 'apps';
  let installed: K8sObject[];

  test('install: every object accepted by the API server, the CRD established, NOTES printed', async () => {
    const res = h(helm.v3, [
      'install',
      release,
      chartDir,
      '-n',
      ns,
      '--set',
      'upstreams.default.apiKey.value=FAKE-upstream-key',
      '--set',
      'image.repository=registry.local/api-proxy',
      '--set',
      'image.tag=test',
    ]);
    expect(res.stdout).toMatch(/STATUS: deployed/);
    expect(res.stdout).toContain(`kubectl -n ${ns} port-forward service/rel-api-proxy 8080:80`);
    expect(res.stdout).toContain('Authorization: Bearer $CLIENT_KEY');

    installed = manifest(helm.v3, release, ns);
    expect(installed.map((o) => o.kind).sort()).toEqual(
      ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Role', 'Role', 'RoleBinding', 'RoleBinding', 'Secret', 'Service', 'ServiceAccount'].sort(),
    );
    for (const o of installed) {
      const got = await get(o);
      expect({ object: `${o.kind}/${o.metadata.name}`, status: got.status }).toEqual({ object: `${o.kind}/${o.metadata.name}`, status: 200 });
      expect(got.json.metadata.labels['app.kubernetes.io/managed-by']).toBe('Helm');
    }
    // What the server stored is what the chart rendered (defaults filled in, nothing rejected).
    const deployment = (await cluster.request('GET', `/apis/apps/v1/namespaces/${ns}/deployments/rel-api-proxy`)).json;
    const c = deployment.spec.template.spec.containers[0];
    expect(c.image).toBe('registry.local/api-proxy:test');
    expect(c.lifecycle.preStop).toEqual({ sleep: { seconds: 5 } });
    expect(c.securityContext.capabilities).toEqual({ drop: ['ALL'] });
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds).toBe(140);

    // crds/ of the chart: installed by helm, established, served.
    for (const name of ['modelroutes.apiproxy.io', 'clientpolicies.apiproxy.io']) {
      const crd = await cluster.request('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${name}`);
      expect(crd.status).toBe(200);
      expect(crd.json.status.conditions.find((cond: any) => cond.type === 'Established')?.status).toBe('True');
      // Established can precede the REST handler by a moment (the k8s harness waits the same way): wait until it lists.
      const plural = name.split('.')[0]!;
      await waitFor(async () => (await cluster.request('GET', `/apis/apiproxy.io/v1alpha1/${plural}?limit=1`)).status === 200, 10_000, `${plural} served`);
    }
  });

  test("the ServiceAccount's token can do exactly what the gateway needs in its namespace, nothing else", async () => {
    const token = await cluster.serviceAccountToken(ns, 'rel-api-proxy');
    const as = (method: string, urlPath: string, body?: unknown, contentType?: string) =>
      cluster.request(method, urlPath, body, { token, ...(contentType ? { contentType } : {}) });
    const mr = `/apis/apiproxy.io/v1alpha1/namespaces/${ns}/modelroutes`;

    // An admin creates a ModelRoute and a labelled client-key Secret.
    const created = await cluster.request('POST', mr, {
      apiVersion: 'apiproxy.io/v1alpha1',
      kind: 'ModelRoute',
      metadata: { name: 'chat' },
      spec: {
        model: 'chat',
        targets: [
          { model: 'gpt-4o-mini', weight: 9 },
          { model: 'gpt-4o', weight: 1 },
        ],
      },
    });
    expect(created.status).toBe(201);
    const secret = await cluster.request('POST', `/api/v1/namespaces/${ns}/secrets`, {
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'team-keys', labels: { 'apiproxy.io/client-keys': 'true' } },
      stringData: { team: 'sk-client-FAKE-team' },
    });
    expect(secret.status).toBe(201);

    // Granted: get/list/watch ModelRoutes, patch their status, get/list/watch Secrets.
    expect((await as('GET', mr)).status).toBe(200);
    expect((await as('GET', `${mr}/chat`)).status).toBe(200);
    expect((await as('GET', `${mr}?watch=true&timeoutSeconds=1`)).status).toBe(200);
    const status = await as(
      'PATCH',
      `${mr}/chat/status`,
      {
        status: {
          observedGeneration: 1,
          conditions: [
            { type: 'Accepted', status: 'True', reason: 'Valid', message: 'ok', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
          ],
        },
      },
      'application/merge-patch+json',
    );
    expect(status.status).toBe(200);
    expect((await as('GET', `/api/v1/namespaces/${ns}/secrets?labelSelector=apiproxy.io%2Fclient-keys%3Dtrue`)).status).toBe(200);
    expect((await as('GET', `/api/v1/namespaces/${ns}/secrets/team-keys`)).status).toBe(200);
    // ClientPolicies: read and watch, and their status.
    const cp = `/apis/apiproxy.io/v1alpha1/namespaces/${ns}/clientpolicies`;
    expect((await as('GET', cp)).status).toBe(200);
    expect((await as('GET', `${cp}?watch=true&timeoutSeconds=1`)).status).toBe(200);
    expect(
      (
        await cluster.request('POST', cp, {
          apiVersion: 'apiproxy.io/v1alpha1',
          kind: 'ClientPolicy',
          metadata: { name: 'p' },
          spec: { consumers: { secretNames: ['team-keys'] }, models: ['m'] },
        })
      ).status,
    ).toBe(201);
    expect(
      (
        await as(
          'PATCH',
          `${cp}/p/status`,
          {
            status: {
              conditions: [
                { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', lastTransitionTime: new Date().toISOString().replace(/\.\d+Z$/, 'Z') },
              ],
            },
          },
          'application/merge-patch+json',
        )
      ).status,
    ).toBe(200);
    expect((await as('PATCH', `${cp}/p`, { spec: { models: ['*'] } }, 'application/merge-patch+json')).status).toBe(403);
    // The status Lease: created, then read and renewed; only the release's own.
    const leases = `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases`;
    const leaseBody = (name: string) => ({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name }, spec: { holderIdentity: 'me' } });
    expect((await as('POST', leases, leaseBody('rel-api-proxy-status'))).status).toBe(201);
    const lease = await as('GET', `${leases}/rel-api-proxy-status`);
    expect(lease.status).toBe(200);
    expect((await as('PUT', `${leases}/rel-api-proxy-status`, { ...lease.json, spec: { holderIdentity: 'me-again' } })).status).toBe(200);
    expect((await cluster.request('POST', leases, leaseBody('someone-elses'))).status).toBe(201);
    expect((await as('GET', `${leases}/someone-elses`)).status).toBe(403);
    expect((await as('GET', leases)).status).toBe(403);
    expect((await as('DELETE', `${leases}/rel-api-proxy-status`)).status).toBe(403);

    // Not granted.
    expect((await as('PATCH', `${mr}/chat`, { spec: { model: 'x' } }, 'application/merge-patch+json')).status).toBe(403);
    expect((await as('DELETE', `${mr}/chat`)).status).toBe(403);
    expect(
      (
        await as('POST', mr, {
          apiVersion: 'apiproxy.io/v1alpha1',
          kind: 'ModelRoute',
          metadata: { name: 'x' },
          spec: { model: 'x', targets: [{ model: 'y' }] },
        })
      ).status,
    ).toBe(403);
    expect((await as('DELETE', `/api/v1/namespaces/${ns}/secrets/team-keys`)).status).toBe(403);
    expect((await as('GET', `/api/v1/namespaces/${ns}/pods`)).status).toBe(403);
    expect((await as('GET', `/api/v1/namespaces/${ns}/configmaps`)).status).toBe(403);
    expect((await as('GET', '/api/v1/namespaces/elsewhere/secrets')).status).toBe(403);
    expect((await as('GET', '/apis/apiproxy.io/v1alpha1/namespaces/elsewhere/modelroutes')).status).toBe(403);
    expect((await as('GET', '/apis/apiproxy.io/v1alpha1/modelroutes')).status).toBe(403); // all namespaces
  });

  test('upgrade to named namespaces: Roles move to team-a/team-b, config changes in place, HPA and extras appear', async () => {
    const deployment = async () => (await cluster.request('GET', `/apis/apps/v1/namespaces/${ns}/deployments/rel-api-proxy`)).json;
    const before = await deployment();
    // Config-only changes do not touch the pod template: the gateway hot-reloads, pods are not rolled.
    h(helm.v3, ['upgrade', release, chartDir, '-n', ns, '--reuse-values', '--set', 'config.modelRedirects.gpt-3=gpt-3.5-turbo']);
    expect((await deployment()).spec.template).toEqual(before.spec.template);

    h(helm.v3, [
      'upgrade',
      release,
      chartDir,
      '-n',
      ns,
      '--reuse-values',
      '--set',
      'kubernetes.namespaces={team-a,team-b}',
      '--set',
      'config.logLevel=debug',
      '--set',
      'config.modelRedirects.gpt-4=gpt-4o',
      '--set',
      'autoscaling.enabled=true',
      '--set',
      'networkPolicy.enabled=true',
      '--set',
      'metrics.dashboard.enabled=true',
    ]);
    const roleIn = (n: string) => cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${n}/roles/rel-api-proxy`);
    expect((await roleIn(ns)).status).toBe(404);
    // the status Lease stays in the release namespace
    expect((await cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles/rel-api-proxy-lease`)).status).toBe(200);
    expect((await roleIn('team-a')).status).toBe(200);
    expect((await roleIn('team-b')).status).toBe(200);
    expect((await cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/rolebindings/rel-api-proxy`)).json.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'rel-api-proxy', namespace: ns },
    ]);

    const cm = (await cluster.request('GET', `/api/v1/namespaces/${ns}/configmaps/rel-api-proxy`)).json;
    const config = JSON.parse(cm.data['config.json']);
    expect(config.log_level).toBe('debug');
    expect(config.model_redirects).toEqual({ 'gpt-3': 'gpt-3.5-turbo', 'gpt-4': 'gpt-4o' });
    expect(config.kubernetes.namespaces).toEqual(['team-a', 'team-b']);

    // The watched namespaces are read once at start: that change, and only it, rolls the pods.
    const after = await deployment();
    const { annotations: afterAnnotations, ...afterMetadata } = after.spec.template.metadata;
    const { annotations: beforeAnnotations, ...beforeMetadata } = before.spec.template.metadata;
    expect(afterAnnotations['checksum/startup-settings']).not.toBe(beforeAnnotations['checksum/startup-settings']);
    expect(afterMetadata).toEqual(beforeMetadata);
    expect(after.spec.template.spec).toEqual(before.spec.template.spec);
    expect((await cluster.request('GET', `/apis/autoscaling/v2/namespaces/${ns}/horizontalpodautoscalers/rel-api-proxy`)).status).toBe(200);
    expect((await cluster.request('GET', `/apis/networking.k8s.io/v1/namespaces/${ns}/networkpolicies/rel-api-proxy`)).status).toBe(200);
    expect((await cluster.request('GET', `/api/v1/namespaces/${ns}/configmaps/rel-api-proxy-dashboard`)).status).toBe(200);

    // The token now reaches team-a but no longer the release namespace.
    const token = await cluster.serviceAccountToken(ns, 'rel-api-proxy');
    expect((await cluster.request('GET', '/apis/apiproxy.io/v1alpha1/namespaces/team-a/modelroutes', undefined, { token })).status).toBe(200);
    expect((await cluster.request('GET', `/apis/apiproxy.io/v1alpha1/namespaces/${ns}/modelroutes`, undefined, { token })).status).toBe(403);
  });

  test('upgrade to all namespaces: ClusterRole + ClusterRoleBinding replace the Roles', async () => {
    h(helm.v3, ['upgrade', release, chartDir, '-n', ns, '--reuse-values', '--set', 'kubernetes.namespaces={*}']);
    for (const n of ['team-a', 'team-b']) {
      expect((await cluster.request('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${n}/roles/rel-api-proxy`)).status).toBe(404);
    }
    expect((await cluster.request('GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles/apps-rel-api-proxy')).status).toBe(200);
    const token = await cluster.serviceAccountToken(ns, 'rel-api-proxy');
    expect((await cluster.request('GET', '/apis/apiproxy.io/v1alpha1/modelroutes', undefined, { token })).status).toBe(200);
    expect((await cluster.request('GET', '/api/v1/namespaces/elsewhere/secrets', undefined, { token })).status).toBe(200);
    expect((await cluster.request('GET', '/api/v1/pods', undefined, { token })).status).toBe(403);
    const history = h(helm.v3, ['history', release, '-n', ns, '-o', 'json']).stdout;
    expect((JSON.parse(history) as { revision: number; status: string }[]).map((r) => [r.revision, r.status])).toEqual([
      [1, 'superseded'],
      [2, 'superseded'],
      [3, 'superseded'],
      [4, 'deployed'],
    ]);
  });

  test('uninstall removes every object of the release (the CRD stays, as helm does for crds/)', async () => {
    const last = manifest(helm.v3, release, ns);
    expect(last.some((o) => o.kind === 'ClusterRole')).toBe(true);
    h(helm.v3, ['uninstall', release, '-n', ns]);
    for (const o of last) {
      const got = await get(o);
      // Deleted, or (no garbage collector here) only finalizing.
      expect({ object: `${o.kind}/${o.metadata.name}`, gone: got.status === 404 || got.json?.metadata?.deletionTimestamp !== undefined }).toEqual({
        object: `${o.kind}/${o.metadata.name}`,
        gone: true,
      });
    }
    expect((await cluster.request('GET', '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modelroutes.apiproxy.io')).status).toBe(200);
    expect(runHelm(helm.v3, ['status', release, '-n', ns, '--kubeconfig', cluster.kubeconfigPath]).status).not.toBe(0);
  });
});

describe('helm v4 (server-side apply): install with most options on, upgrade, uninstall', () => {
  const release = 'gw';
  const ns = 'apps-v4';

  test('install, upgrade, uninstall', async () => {
    // everything-on minus the ServiceMonitor (no prometheus-operator CRDs on this API server).
    h(helm.v4, ['install', release, chartDir, '-n', ns, '-f', ci('everything-on-values.yaml'), '--set', 'metrics.serviceMonitor.enabled=false']);
    const installed = manifest(helm.v4, release, ns);
    expect(installed.map((o) => o.kind)).toEqual(
      expect.arrayContaining([
        'ClusterRole',
        'ClusterRoleBinding',
        'ConfigMap',
        'Deployment',
        'HorizontalPodAutoscaler',
        'NetworkPolicy',
        'PodDisruptionBudget',
        'Secret',
        'Service',
        'ServiceAccount',
      ]),
    );
    for (const o of installed)
      expect({ o: `${o.kind}/${o.metadata.name}`, status: (await get(o)).status }).toEqual({ o: `${o.kind}/${o.metadata.name}`, status: 200 });

    h(helm.v4, ['upgrade', release, chartDir, '-n', ns, '--reuse-values', '--set', 'kubernetes.enabled=false', '--set', 'autoscaling.enabled=false']);
    const upgraded = manifest(helm.v4, release, ns);
    expect(upgraded.some((o) => o.kind === 'ClusterRole' || o.kind === 'HorizontalPodAutoscaler')).toBe(false);
    expect((await cluster.request('GET', '/apis/rbac.authorization.k8s.io/v1/clusterroles/apps-v4-gw-api-proxy')).status).toBe(404);
    const deployment = (await cluster.request('GET', `/apis/apps/v1/namespaces/${ns}/deployments/gw-api-proxy`)).json;
    expect(deployment.spec.template.spec.automountServiceAccountToken).toBe(false);
    expect(deployment.spec.replicas).toBe(2);

    h(helm.v4, ['uninstall', release, '-n', ns]);
    for (const o of upgraded) {
      const got = await get(o);
      expect(got.status === 404 || got.json?.metadata?.deletionTimestamp !== undefined).toBe(true);
    }
  });
});
