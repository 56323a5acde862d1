/**
 * Self-test of the kube-apiserver + etcd harness (test/k8s/harness/cluster.ts):
 * authentication (admin and service-account tokens), RBAC enforcement,
 * kubeconfigs usable by @kubernetes/client-node, API server restart on the same
 * port with data kept in etcd, and cleanup.
 */
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { CoreV1Api, KubeConfig, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { CLUSTER_START_TIMEOUT_MS, k8sBinDir, startCluster } from './harness/cluster.js';
import type { TestCluster } from './harness/cluster.js';

let cluster: TestCluster;

beforeAll(async () => {
  const t0 = Date.now();
  cluster = await startCluster();
  // Visible in verbose runs; handy to track start-up cost.
  process.stderr.write(`[harness.test] cluster started in ${Date.now() - t0} ms at ${cluster.server}\n`);
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.stop();
});

test('admin kubeconfig works with @kubernetes/client-node (TLS verified with CA data)', async () => {
  expect(cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
  const kc = cluster.kubeConfig();
  expect(kc.getCurrentCluster()?.server).toBe(cluster.server);
  expect(kc.getCurrentCluster()?.skipTLSVerify).toBeFalsy();
  const core = kc.makeApiClient(CoreV1Api);
  const nss = await core.listNamespace();
  expect(nss.items.map((n) => n.metadata?.name)).toEqual(expect.arrayContaining(['default', 'kube-system']));
});

test('reports a release version (clients such as helm check /version)', async () => {
  const res = await cluster.request('GET', '/version');
  expect(res.status).toBe(200);
  expect(res.json).toMatchObject({ major: '1', gitVersion: expect.stringMatching(/^v1\.\d+\.\d+$/) });
  expect(Number(res.json.minor)).toBeGreaterThanOrEqual(34);
});

test('unauthenticated requests are rejected', async () => {
  const res = await cluster.request('GET', '/api/v1/namespaces', undefined, { token: 'not-a-token' });
  expect(res.status).toBe(401);
});

test('service-account tokens authenticate, and RBAC is enforced', async () => {
  const token = await cluster.serviceAccountToken('sa-test', 'reader');
  // Idempotent: a second call reuses the existing ServiceAccount.
  const token2 = await cluster.serviceAccountToken('sa-test', 'reader');
  expect(token2).toEqual(expect.any(String));

  const review = await cluster.request(
    'POST',
    '/apis/authentication.k8s.io/v1/selfsubjectreviews',
    { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
    { token },
  );
  expect(review.status).toBe(201);
  expect(review.json.status.userInfo.username).toBe('system:serviceaccount:sa-test:reader');

  const kc = new KubeConfig();
  kc.loadFromFile(cluster.writeKubeconfig(token, 'sa-test'));
  expect(kc.getContextObject(kc.getCurrentContext())?.namespace).toBe('sa-test');
  const core = kc.makeApiClient(CoreV1Api);

  // No permissions yet: RBAC denies.
  await expect(core.listNamespacedConfigMap({ namespace: 'sa-test' })).rejects.toMatchObject({ code: 403 });

  const rbac = cluster.kubeConfig().makeApiClient(RbacAuthorizationV1Api);
  await rbac.createNamespacedRole({
    namespace: 'sa-test',
    body: {
      metadata: { name: 'cm-reader' },
      rules: [{ apiGroups: [''], resources: ['configmaps'], verbs: ['get', 'list', 'watch'] }],
    },
  });
  await rbac.createNamespacedRoleBinding({
    namespace: 'sa-test',
    body: {
      metadata: { name: 'cm-reader' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'cm-reader' },
      subjects: [{ kind: 'ServiceAccount', name: 'reader', namespace: 'sa-test' }],
    },
  });
  // RBAC is evaluated from an informer cache: allow a moment.
  let list: Awaited<ReturnType<CoreV1Api['listNamespacedConfigMap']>> | undefined;
  for (let i = 0; i < 50 && !list; i++) {
    list = await core.listNamespacedConfigMap({ namespace: 'sa-test' }).catch(() => undefined);
    if (!list) await new Promise((r) => setTimeout(r, 100));
  }
  expect(list?.items).toEqual([]);
  // Still denied elsewhere.
  await expect(core.listNamespacedConfigMap({ namespace: 'default' })).rejects.toMatchObject({ code: 403 });
});

test('the API server restarts on the same port and keeps data', async () => {
  const core = cluster.kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespacedConfigMap({ namespace: 'default', body: { metadata: { name: 'survivor' }, data: { a: 'b' } } });

  await cluster.stopApiServer();
  await expect(cluster.request('GET', '/readyz', undefined, { timeoutMs: 2000 })).rejects.toThrow();

  const t0 = Date.now();
  await cluster.startApiServer();
  process.stderr.write(`[harness.test] API server restarted in ${Date.now() - t0} ms\n`);
  const cm = await core.readNamespacedConfigMap({ namespace: 'default', name: 'survivor' });
  expect(cm.data).toEqual({ a: 'b' });
});

test('stop() removes the directory and frees the port', async () => {
  const other = await startCluster();
  expect(other.server).not.toBe(cluster.server);
  expect(fs.existsSync(other.kubeconfigPath)).toBe(true);
  await other.stop();
  expect(fs.existsSync(other.dir)).toBe(false);
  const port = Number(new URL(other.server).port);
  const connect = new Promise<void>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => {
      sock.destroy();
      resolve();
    });
    sock.on('error', reject);
  });
  await expect(connect).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  await other.stop(); // idempotent
}, 120_000);

describe('startCluster fails loudly (tests must fail, never skip)', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'api-proxy-harness-test-'));
  });
  afterEach(() => {
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('missing binaries', async () => {
    await expect(startCluster({ binDir: tmp })).rejects.toThrow(/etcd failed to start: spawn .*ENOENT/);
  });

  test('an API server that dies: the error carries its log, and etcd is stopped', async () => {
    const real = await k8sBinDir();
    fs.symlinkSync(path.join(real, 'etcd'), path.join(tmp, 'etcd'));
    fs.writeFileSync(path.join(tmp, 'kube-apiserver'), '#!/bin/sh\necho "boom: unknown flag" >&2\nexit 3\n', { mode: 0o755 });
    const err = await startCluster({ binDir: tmp }).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/kube-apiserver exited with code 3[\s\S]*boom: unknown flag/);
    // Its temp dir (named in the message) is gone, so etcd was stopped first.
    const dir = /kube-apiserver log \((.*)\/kube-apiserver\.log\)/.exec(err?.message ?? '')?.[1];
    expect(dir).toMatch(/api-proxy-k8s-/);
    expect(fs.existsSync(dir!)).toBe(false);
  }, 60_000);
});
