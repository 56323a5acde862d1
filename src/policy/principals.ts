import type { FileInputs, KubeConsumerInput } from '../config/model.js';
import { compilePolicy, consumerName } from './client-policies.js';
import type { ConsumerPolicy, Principal } from './types.js';

/**
 * The key table of a snapshot: key digest -> the Principal a request with
 * that key is, built once per snapshot so authentication allocates nothing.
 * The file's keys first (they see the shared routes only: namespace null):
 * `allowed_keys` and `client_keys`, each key id a consumer of its own without
 * a policy, then the `consumers` block; then each client-key Secret with the
 * policy that governs it. A digest held twice keeps its first owner.
 */
export function principalsByDigest(
  file: FileInputs,
  kubeConsumers: readonly KubeConsumerInput[] | null,
  kubePolicies: ReadonlyMap<string, ConsumerPolicy>,
): ReadonlyMap<string, Principal> {
  const fromFile = fileTable(file);
  if (kubeConsumers === null) return fromFile;
  const keys = new Map(fromFile);
  for (const consumer of kubeConsumers) {
    const principals = kubePrincipals(consumer, kubePolicies.get(consumerName(consumer)) ?? null);
    consumer.keys.forEach((key, index) => {
      if (!keys.has(key.digest)) keys.set(key.digest, principals[index]!);
    });
  }
  return keys;
}

// The file's table, for as long as the file is not reloaded: a rebuild after a Kubernetes event copies it.
const fileTables = new WeakMap<FileInputs, ReadonlyMap<string, Principal>>();

function fileTable(file: FileInputs): ReadonlyMap<string, Principal> {
  let keys = fileTables.get(file);
  if (keys !== undefined) return keys;
  const table = new Map<string, Principal>();
  for (const key of file.clientKeys) {
    if (!table.has(key.digest)) table.set(key.digest, { keyId: key.id, consumer: key.id, namespace: null, policy: null });
  }
  for (const consumer of file.consumers) {
    const policy = consumer.policy === null ? null : compilePolicy(consumer.policy, 'file');
    for (const key of consumer.keys) {
      if (!table.has(key.digest)) table.set(key.digest, { keyId: key.id, consumer: consumer.name, namespace: null, policy });
    }
  }
  fileTables.set(file, (keys = table));
  return keys;
}

// A Secret's principals (one per key, in its order) per object version and policy: a rebuild after one event
// (100,000 keys in Secrets) makes new objects only for the Secrets whose keys or policy changed.
const built = new WeakMap<KubeConsumerInput, { policy: ConsumerPolicy | null; principals: readonly Principal[] }>();

function kubePrincipals(consumer: KubeConsumerInput, policy: ConsumerPolicy | null): readonly Principal[] {
  const cached = built.get(consumer);
  if (cached !== undefined && cached.policy === policy) return cached.principals;
  const name = consumerName(consumer);
  const principals = consumer.keys.map((key) => ({ keyId: key.id, consumer: name, namespace: consumer.namespace, policy }));
  built.set(consumer, { policy, principals });
  return principals;
}
