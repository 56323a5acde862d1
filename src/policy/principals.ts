import type { ConsumerSpec, KubeConsumerInput } from '../config/model.js';
import { compilePolicy, consumerName } from './client-policies.js';
import type { ConsumerPolicy, Principal } from './types.js';

/**
 * The key table of a snapshot: key digest -> the Principal a request with
 * that key is, built once per snapshot so authentication allocates nothing.
 * File consumers first (their keys see the shared routes only: namespace
 * null), then each client-key Secret with the policy that governs it. A
 * digest held twice keeps its first owner.
 */
export function principalsByDigest(
  fileConsumers: readonly ConsumerSpec[],
  kubeConsumers: readonly KubeConsumerInput[] | null,
  kubePolicies: ReadonlyMap<string, ConsumerPolicy>,
): Map<string, Principal> {
  const keys = new Map<string, Principal>();
  for (const consumer of fileConsumers) {
    const policy = consumer.policy === null ? null : compilePolicy(consumer.policy, 'file');
    for (const key of consumer.keys) {
      if (!keys.has(key.digest)) keys.set(key.digest, { keyId: key.id, consumer: consumer.name, namespace: null, policy });
    }
  }
  if (kubeConsumers === null) return keys;
  for (const consumer of kubeConsumers) {
    for (const principal of kubePrincipals(consumer, kubePolicies.get(consumerName(consumer)) ?? null)) {
      if (!keys.has(principal.digest)) keys.set(principal.digest, principal.principal);
    }
  }
  return keys;
}

interface KeyedPrincipal {
  readonly digest: string;
  readonly principal: Principal;
}

// A Secret's principals per object version and policy: a rebuild after one event (100,000 keys in Secrets) makes
// new objects only for the Secrets whose keys or policy changed.
const built = new WeakMap<KubeConsumerInput, { policy: ConsumerPolicy | null; principals: readonly KeyedPrincipal[] }>();

function kubePrincipals(consumer: KubeConsumerInput, policy: ConsumerPolicy | null): readonly KeyedPrincipal[] {
  const cached = built.get(consumer);
  if (cached !== undefined && cached.policy === policy) return cached.principals;
  const name = consumerName(consumer);
  const principals = consumer.keys.map((key) => ({
    digest: key.digest,
    principal: { keyId: key.id, consumer: name, namespace: consumer.namespace, policy },
  }));
  built.set(consumer, { policy, principals });
  return principals;
}
