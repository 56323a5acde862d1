import { request } from 'undici';
import type { KubeConfig } from '@kubernetes/client-node';
import { kubeSource, type KubeSourceOptions } from '../../../src/sources/kube/kube-source.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../../support/gateway-harness.js';
import { waitFor } from '../../support/wait.js';
import { startCluster, type StartClusterOptions, type TestCluster } from './cluster.js';
import { startFakeUpstream, type FakeUpstream } from '../../support/fake-upstream.js';

/** The permissions the README documents for the gateway, as Role rules (the Lease's own Role below). */
export const GATEWAY_ROLE_RULES = [
  { apiGroups: ['apiproxy.io'], resources: ['modelroutes', 'clientpolicies'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['apiproxy.io'], resources: ['modelroutes/status', 'clientpolicies/status'], verbs: ['patch', 'update'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
];

/** The status Lease, in the gateway's own namespace: create it, then read and renew only that one. */
export const LEASE_ROLE_RULES = (leaseName: string) => [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: [leaseName], verbs: ['get', 'update'] },
];

/** A Role with exactly the documented rules, bound to the ServiceAccount; returns a token for it. */
export async function gatewayServiceAccountToken(cluster: TestCluster, namespace: string, serviceAccount: string): Promise<string> {
  const token = await cluster.serviceAccountToken(namespace, serviceAccount);
  await cluster.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/roles`, {
    metadata: { name: serviceAccount },
    rules: [...GATEWAY_ROLE_RULES, ...LEASE_ROLE_RULES('api-proxy')],
  });
  await cluster.request('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${namespace}/rolebindings`, {
    metadata: { name: serviceAccount },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: serviceAccount },
    subjects: [{ kind: 'ServiceAccount', name: serviceAccount, namespace }],
  });
  return token;
}

/**
 * An in-process gateway with the Kubernetes source watching `namespace`
 * (test config from baseConfig plus `extra`), resolved once it is ready.
 */
export async function startKubeGateway(
  cluster: TestCluster,
  upstreamUrl: string,
  namespace: string,
  extra: Record<string, unknown> = {},
  kubeConfig: KubeConfig = cluster.kubeConfig(),
  sourceOptions: KubeSourceOptions = {},
): Promise<TestGateway> {
  const config = baseConfig(upstreamUrl, { kubernetes: { enabled: true, namespaces: [namespace], watch_timeout_seconds: 30 }, ...extra });
  const gateway = await startTestGateway(config, { kubeSource: kubeSource(kubeConfig, namespace, true, sourceOptions), namespace });
  try {
    await waitFor(async () => (await request(`${gateway.url}/health/ready`)).statusCode === 200, 15_000, 'gateway ready');
  } catch (error) {
    // A gateway left running keeps its watches open, and jest from exiting.
    await gateway.stop();
    throw error;
  }
  return gateway;
}

/** The model the upstream was sent for `model`, or `error:<status>:<code>`. */
export async function modelSent(gatewayUrl: string, model: string, key = CLIENT_KEY): Promise<string> {
  const res = await request(`${gatewayUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model }),
  });
  const body = (await res.body.json()) as { model?: string; error?: { code: string } };
  // The answer names the requested model (answer_model: requested); the header names the one sent upstream.
  const sent = res.headers['x-apiproxy-upstream-model'];
  return typeof sent === 'string' ? sent : (body.model ?? `error:${res.statusCode}:${body.error?.code}`);
}

export interface ClusterWithGateway {
  cluster: TestCluster;
  upstream: FakeUpstream;
  gw: TestGateway;
  stop(): Promise<void>;
}

/** A real cluster (CRDs applied), the namespace, a fake upstream, and a ready gateway watching that namespace. */
export async function startClusterWithGateway(
  namespace: string,
  extra: Record<string, unknown> = {},
  clusterOptions: StartClusterOptions = {},
): Promise<ClusterWithGateway> {
  const cluster = await startCluster({ crds: true, ...clusterOptions });
  let upstream: FakeUpstream | undefined;
  try {
    await cluster.ensureNamespace(namespace);
    upstream = await startFakeUpstream();
    const gw = await startKubeGateway(cluster, upstream.url, namespace, extra);
    const started = upstream;
    return {
      cluster,
      upstream: started,
      gw,
      async stop() {
        await gw.stop();
        await started.close();
        await cluster.stop();
      },
    };
  } catch (error) {
    await upstream?.close();
    await cluster.stop();
    throw error;
  }
}
