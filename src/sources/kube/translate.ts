import { z } from 'zod';
import { keyDigest } from '../../config/key-digest.js';
import type { ClientKeySpec, KubeRouteInput } from '../../config/model.js';
import { answerModelSchema, modelName } from '../../config/schema.js';
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
        }),
      )
      .min(1)
      .max(16),
    answerModel: answerModelSchema.optional(),
  })
  .loose();

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

/** A ModelRoute as source input; a spec that slipped past the CRD's validation becomes `invalid`. */
function routeInput(object: KubeObject): KubeRouteInput {
  const metadata = object.metadata ?? {};
  const created = metadata.creationTimestamp;
  const base = {
    namespace: metadata.namespace ?? '',
    name: metadata.name ?? '',
    generation: metadata.generation ?? 0,
    createdAt: created === undefined ? 0 : new Date(created).getTime(),
  };
  const parsed = modelRouteSpec.safeParse(object['spec']);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    return { ...base, model: '', targets: [], invalid: `spec.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}` };
  }
  return { ...base, model: parsed.data.model, targets: parsed.data.targets, answerModel: parsed.data.answerModel, invalid: null };
}

/** Every data entry of a client-key Secret is one key; the entry's name is the key id. */
function clientKeys(secret: KubeObject): ClientKeySpec[] {
  const data = secret['data'];
  if (data === null || typeof data !== 'object') return [];
  const keys: ClientKeySpec[] = [];
  for (const [id, encoded] of Object.entries(data as Record<string, unknown>)) {
    if (typeof encoded !== 'string') continue;
    const key = Buffer.from(encoded, 'base64').toString('utf8').trim();
    if (key !== '') keys.push({ id, digest: keyDigest(key) });
  }
  return keys;
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
export const toClientKeys = perObject(clientKeys);
