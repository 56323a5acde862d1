import type { KubeConsumerInput, KubePolicyInput, PolicySpec, PolicyStatus } from '../config/model.js';
import { selectorMatches } from './label-selector.js';
import { ALL_MODELS, modelAllowList } from './model-allow-list.js';
import type { ConsumerPolicy } from './types.js';

/** A policy ready for requests: its allow-list compiled once. */
export function compilePolicy(spec: PolicySpec, source: string): ConsumerPolicy {
  return { source, models: spec.models === null ? ALL_MODELS : modelAllowList(spec.models), limits: spec.limits };
}

/** The name of a Kubernetes consumer: its Secret, `namespace/name`. */
export function consumerName(consumer: { readonly namespace: string; readonly name: string }): string {
  return `${consumer.namespace}/${consumer.name}`;
}

/** How many consumers an Accepted message names before it counts the rest. */
const NAMED_IN_MESSAGE = 5;

// One compiled policy per ClientPolicy object version (the watch keeps an unchanged object's input), so a rebuild
// after an unrelated event keeps every policy's identity, and the principals built on it can be kept too.
const compiled = new WeakMap<KubePolicyInput, ConsumerPolicy>();

function compiledPolicy(input: KubePolicyInput): ConsumerPolicy {
  let policy = compiled.get(input);
  if (policy === undefined) {
    policy = compilePolicy(input.policy, `ClientPolicy ${input.namespace}/${input.name}`);
    compiled.set(input, policy);
  }
  return policy;
}

/**
 * Decides which ClientPolicy governs each client-key Secret (consumer), a
 * pure function of its inputs. A policy selects Secrets of its own namespace,
 * by name or by label selector. Two policies selecting one consumer conflict:
 * the older (then by name) is in effect; the newer is not in effect at all
 * (Accepted=False, Conflict), so a policy applies either as written or not.
 */
export function resolveClientPolicies(
  policies: readonly KubePolicyInput[],
  consumers: readonly KubeConsumerInput[],
): { byConsumer: Map<string, ConsumerPolicy>; statuses: PolicyStatus[] } {
  const statuses: PolicyStatus[] = [];
  const byConsumer = new Map<string, ConsumerPolicy>();
  const consumersIn = new Map<string, KubeConsumerInput[]>();
  for (const consumer of consumers) {
    let list = consumersIn.get(consumer.namespace);
    if (list === undefined) consumersIn.set(consumer.namespace, (list = []));
    list.push(consumer);
  }

  const candidates: KubePolicyInput[] = [];
  for (const policy of policies) {
    if (policy.invalid !== null) statuses.push(status(policy, false, 'Invalid', policy.invalid));
    else candidates.push(policy);
  }
  candidates.sort((a, b) => a.createdAt - b.createdAt || compare(a.namespace, b.namespace) || compare(a.name, b.name));
  const governedBy = new Map<string, string>();
  for (const policy of candidates) {
    const selected = (consumersIn.get(policy.namespace) ?? []).filter((consumer) => selects(policy, consumer)).map(consumerName);
    const taken = selected.find((name) => governedBy.has(name));
    if (taken !== undefined) {
      statuses.push(
        status(policy, false, 'Conflict', `consumer ${taken} is already governed by ClientPolicy ${governedBy.get(taken)}; the older policy applies`),
      );
      continue;
    }
    const compiledOne = compiledPolicy(policy);
    for (const name of selected) {
      governedBy.set(name, `${policy.namespace}/${policy.name}`);
      byConsumer.set(name, compiledOne);
    }
    statuses.push(status(policy, true, 'Accepted', governs(selected)));
  }
  return { byConsumer, statuses };
}

function selects(policy: KubePolicyInput, consumer: KubeConsumerInput): boolean {
  if (policy.secretNames !== null) return policy.secretNames.includes(consumer.name);
  return policy.selector !== null && selectorMatches(policy.selector, consumer.labels);
}

function governs(selected: readonly string[]): string {
  if (selected.length === 0) return 'selects no client-key Secret yet';
  const named = selected.slice(0, NAMED_IN_MESSAGE).join(', ');
  const more = selected.length > NAMED_IN_MESSAGE ? ` and ${selected.length - NAMED_IN_MESSAGE} more` : '';
  return `governs ${selected.length} consumer${selected.length === 1 ? '' : 's'}: ${named}${more}`;
}

function status(policy: KubePolicyInput, accepted: boolean, reason: PolicyStatus['reason'], message: string): PolicyStatus {
  return { namespace: policy.namespace, name: policy.name, generation: policy.generation, accepted, reason, message };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
