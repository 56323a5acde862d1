import { z } from 'zod';
import { clientKeyDigest } from '../../config/key-digest.js';
import type { ClientKeySpec, KubeConsumerInput, KubePolicyInput, KubeRouteInput } from '../../config/model.js';
import { answerModelSchema, MAX_CONCURRENT_STREAMS, MAX_REQUESTS_PER_MINUTE, MAX_TOKENS, modelName, targetPriority } from '../../config/schema.js';
import { NO_LIMITS, type RateLimit } from '../../policy/types.js';
import type { KubeObject } from './resource-watch.js';

/** What the gateway accepts of a ModelRoute's spec; the CRD's schema says the same to the API server. */
const modelRouteSpec = z
  .object({
    model: modelName,
    targets: z
      .array(
        z.object({
          model: modelName,
          upstream: z.string().min(1).max(63).optional(),
          weight: z.number().int().min(0).max(1000).optional(),
          priority: targetPriority.optional(),
        }),
      )
      .min(1)
      .max(16),
    answerModel: answerModelSchema.optional(),
  })
  .loose();

const rateLimit = (max: number) =>
  z
    .object({ limit: z.number().int().min(1).max(max), per: z.enum(['key', 'consumer']) })
    .loose()
    .optional();

const labelValue = z.string().max(63);

/** What the gateway accepts of a ClientPolicy's spec; the CRD's schema (and its CEL rules) say the same to the API server. */
const clientPolicySpec = z
  .object({
    consumers: z
      .object({
        secretNames: z.array(z.string().min(1).max(253)).min(1).max(64).optional(),
        selector: z
          .object({
            matchLabels: z.record(z.string().min(1).max(317), labelValue).optional(),
            matchExpressions: z
              .array(
                z
                  .object({
                    key: z.string().min(1).max(317),
                    operator: z.enum(['In', 'NotIn', 'Exists', 'DoesNotExist']),
                    values: z.array(labelValue).max(64).optional(),
                  })
                  .loose()
                  .refine((r) => (r.operator === 'In' || r.operator === 'NotIn') === (r.values !== undefined && r.values.length > 0), {
                    message: 'In and NotIn need values; Exists and DoesNotExist take none',
                  }),
              )
              .max(16)
              .optional(),
          })
          .loose()
          .optional(),
      })
      .loose()
      .refine((c) => (c.secretNames === undefined) !== (c.selector === undefined), { message: 'set exactly one of secretNames and selector' }),
    models: z.array(modelName).min(1).max(256).optional(),
    limits: z
      .object({
        requestsPerMinute: rateLimit(MAX_REQUESTS_PER_MINUTE),
        tokensPerMinute: rateLimit(MAX_TOKENS),
        tokensPerDay: rateLimit(MAX_TOKENS),
        concurrentStreams: z.number().int().min(1).max(MAX_CONCURRENT_STREAMS).optional(),
      })
      .loose()
      .optional(),
  })
  .loose()
  .refine((spec) => spec.models !== undefined || spec.limits !== undefined, { message: 'a policy sets models, limits or both' });

/**
 * Per-object results, computed once per object version: the watch keeps an
 * unchanged object's identity, across events and re-lists (ListWatch keeps
 * the cached object when a list has it at the same resourceVersion; pinned in
 * test/unit/resource-watch.test.ts), so a rebuild after one event re-parses and
 * re-hashes only what that event changed (10,000 routes and 100,000 keys
 * otherwise cost a zod parse and a SHA-256 each, on every event).
 */
function perObject<T>(translate: (object: KubeObject) => T): (object: KubeObject) => T {
  const done = new WeakMap<KubeObject, T>();
  return (object) => {
    let result = done.get(object);
    if (result === undefined) {
      result = translate(object);
      done.set(object, result);
    }
    return result;
  };
}

/** What a ModelRoute or ClientPolicy input carries of its object: where it is, its generation, and when it was made (for conflicts). */
function resourceIdentity(object: KubeObject): { namespace: string; name: string; generation: number; createdAt: number } {
  const metadata = object.metadata ?? {};
  const created = metadata.creationTimestamp;
  return {
    namespace: metadata.namespace ?? '',
    name: metadata.name ?? '',
    generation: metadata.generation ?? 0,
    createdAt: created === undefined ? 0 : new Date(created).getTime(),
  };
}

/** A ModelRoute as source input; a spec that slipped past the CRD's validation becomes `invalid`. */
function routeInput(object: KubeObject): KubeRouteInput {
  const base = resourceIdentity(object);
  const parsed = modelRouteSpec.safeParse(object['spec']);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ...base, model: '', targets: [], invalid: `spec.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}` };
  }
  return { ...base, model: parsed.data.model, targets: parsed.data.targets, answerModel: parsed.data.answerModel, invalid: null };
}

/** Every data entry of a client-key Secret is one key (or its `sha256:` digest); the entry's name is the key id. */
function clientKeys(secret: KubeObject): ClientKeySpec[] {
  const data = secret['data'];
  if (data === null || typeof data !== 'object') return [];
  const keys: ClientKeySpec[] = [];
  for (const [id, encoded] of Object.entries(data as Record<string, unknown>)) {
    if (typeof encoded !== 'string') continue;
    const key = Buffer.from(encoded, 'base64').toString('utf8').trim();
    if (key !== '') keys.push({ id, digest: clientKeyDigest(key) });
  }
  return keys;
}

/** A client-key Secret as a consumer: `namespace/name`, its labels (for ClientPolicy selectors) and its keys. */
function consumer(secret: KubeObject): KubeConsumerInput {
  const metadata = secret.metadata ?? {};
  return { namespace: metadata.namespace ?? '', name: metadata.name ?? '', labels: metadata.labels ?? {}, keys: clientKeys(secret) };
}

/** A ClientPolicy as source input; a spec that slipped past the CRD's validation becomes `invalid`. */
function policyInput(object: KubeObject): KubePolicyInput {
  const base = resourceIdentity(object);
  const parsed = clientPolicySpec.safeParse(object['spec']);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const path = issue?.path.length ? `spec.${issue.path.join('.')}` : 'spec';
    return { ...base, secretNames: null, selector: null, policy: { models: null, limits: NO_LIMITS }, invalid: `${path}: ${issue?.message ?? 'invalid'}` };
  }
  const { consumers, models, limits } = parsed.data;
  const rate = (limit: { limit: number; per: 'key' | 'consumer' } | undefined): RateLimit | null =>
    limit === undefined ? null : { limit: limit.limit, scope: limit.per };
  const selector = consumers.selector;
  return {
    ...base,
    secretNames: consumers.secretNames ?? null,
    selector:
      selector === undefined
        ? null
        : {
            matchLabels: selector.matchLabels ?? {},
            matchExpressions: (selector.matchExpressions ?? []).map((r) => ({ key: r.key, operator: r.operator, values: r.values ?? [] })),
          },
    policy: {
      models: models ?? null,
      limits:
        limits === undefined
          ? NO_LIMITS
          : {
              requestsPerMinute: rate(limits.requestsPerMinute),
              tokensPerMinute: rate(limits.tokensPerMinute),
              tokensPerDay: rate(limits.tokensPerDay),
              concurrentStreams: limits.concurrentStreams ?? null,
            },
    },
    invalid: null,
  };
}

/** `namespace/name/key` -> value for every entry of a Secret. */
export function secretEntries(secret: KubeObject, into: Map<string, string>): void {
  const data = secret['data'];
  if (data === null || typeof data !== 'object') return;
  const prefix = `${secret.metadata?.namespace ?? ''}/${secret.metadata?.name ?? ''}/`;
  for (const [key, encoded] of Object.entries(data as Record<string, unknown>)) {
    if (typeof encoded === 'string') into.set(prefix + key, Buffer.from(encoded, 'base64').toString('utf8').trim());
  }
}

export const toRouteInput = perObject(routeInput);
export const toConsumer = perObject(consumer);
export const toPolicyInput = perObject(policyInput);
