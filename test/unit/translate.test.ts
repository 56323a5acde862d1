import { toConsumer, toPolicyInput, toRouteInput } from '../../src/sources/kube/translate.js';
import { keyDigest } from '../../src/config/key-digest.js';
import { NO_LIMITS } from '../../src/policy/types.js';

const route = (spec: unknown) => ({ metadata: { namespace: 'ns', name: 'r', generation: 2, creationTimestamp: '2026-01-01T00:00:00Z' }, spec });

test('a ModelRoute becomes source input; a malformed spec becomes an Invalid reason naming the field', () => {
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b', weight: 3 }] }))).toEqual({
    namespace: 'ns',
    name: 'r',
    generation: 2,
    createdAt: Date.parse('2026-01-01T00:00:00Z'),
    model: 'a',
    targets: [{ model: 'b', weight: 3 }],
    invalid: null,
  });
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b', weight: 'heavy' }] })).invalid).toMatch(/^spec\.targets\.0\.weight: /);
});

test('a target priority is kept; one out of range (slipped past the CRD) makes the route Invalid', () => {
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }, { model: 'c', priority: 2 }] })).targets).toEqual([
    { model: 'b' },
    { model: 'c', priority: 2 },
  ]);
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b', priority: 101 }] })).invalid).toMatch(/^spec\.targets\.0\.priority: /);
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b', priority: 'first' }] })).invalid).toMatch(/^spec\.targets\.0\.priority: /);
});

test("a ModelRoute's answerModel is read; a value the CRD would refuse makes the route Invalid", () => {
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }], answerModel: 'upstream' })).answerModel).toBe('upstream');
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }] })).answerModel).toBeUndefined();
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }], answerModel: 'both' })).invalid).toMatch(/^spec\.answerModel: /);
});

const b64 = (text: string) => Buffer.from(text).toString('base64');

test('a client-key Secret is a consumer: each entry a key (trimmed; or its sha256: digest), its name the id; empty entries skipped', () => {
  const digest = keyDigest('sk-hashed');
  const secret = {
    metadata: { namespace: 'team-a', name: 's', labels: { tier: 'free' } },
    data: { a: b64('sk-a\n'), empty: '', b: b64('sk-b'), h: b64(`sha256:${digest}\n`) },
  };
  expect(toConsumer(secret)).toEqual({
    namespace: 'team-a',
    name: 's',
    labels: { tier: 'free' },
    keys: [
      { id: 'a', digest: keyDigest('sk-a') },
      { id: 'b', digest: keyDigest('sk-b') },
      { id: 'h', digest },
    ],
  });
});

const policyObject = (spec: unknown) => ({ metadata: { namespace: 'team-a', name: 'p', generation: 3, creationTimestamp: '2026-01-01T00:00:00Z' }, spec });

test('a ClientPolicy becomes source input with its limits in the snapshot terms', () => {
  expect(
    toPolicyInput(
      policyObject({
        consumers: { selector: { matchLabels: { tier: 'free' }, matchExpressions: [{ key: 'x', operator: 'Exists' }] } },
        models: ['gpt-4o*'],
        limits: { requestsPerMinute: { limit: 60, per: 'key' }, tokensPerDay: { limit: 1000, per: 'consumer' }, concurrentStreams: 2 },
      }),
    ),
  ).toEqual({
    namespace: 'team-a',
    name: 'p',
    generation: 3,
    createdAt: Date.parse('2026-01-01T00:00:00Z'),
    secretNames: null,
    selector: { matchLabels: { tier: 'free' }, matchExpressions: [{ key: 'x', operator: 'Exists', values: [] }] },
    policy: {
      models: ['gpt-4o*'],
      limits: { requestsPerMinute: { limit: 60, scope: 'key' }, tokensPerMinute: null, tokensPerDay: { limit: 1000, scope: 'consumer' }, concurrentStreams: 2 },
    },
    invalid: null,
  });
  expect(toPolicyInput(policyObject({ consumers: { secretNames: ['k'] }, models: ['m'] }))).toMatchObject({
    secretNames: ['k'],
    selector: null,
    policy: { models: ['m'], limits: NO_LIMITS },
  });
});

test.each([
  ['no spec', undefined, /^spec: /],
  ['both selections', { consumers: { secretNames: ['a'], selector: {} }, models: ['m'] }, /^spec\.consumers: set exactly one of secretNames and selector$/],
  ['neither models nor limits', { consumers: { secretNames: ['a'] } }, /^spec: a policy sets models, limits or both$/],
  ['a zero limit', { consumers: { secretNames: ['a'] }, limits: { requestsPerMinute: { limit: 0, per: 'key' } } }, /^spec\.limits\.requestsPerMinute\.limit: /],
  ['In without values', { consumers: { selector: { matchExpressions: [{ key: 'k', operator: 'In' }] } }, models: ['m'] }, /In and NotIn need values/],
  ['a control character in a model', { consumers: { secretNames: ['a'] }, models: ['a\u0000'] }, /^spec\.models\.0: /],
])('a ClientPolicy that slipped past the CRD (%s) is Invalid, naming the field', (_name, spec, reason) => {
  expect(toPolicyInput(policyObject(spec)).invalid).toMatch(reason);
});

test('an unchanged object is translated once (a rebuild after one event re-hashes only what changed)', () => {
  const secret = { metadata: { name: 's' }, data: { a: b64('sk-a') } };
  expect(toConsumer(secret)).toBe(toConsumer(secret));
  const object = route({ model: 'a', targets: [{ model: 'b' }] });
  expect(toRouteInput(object)).toBe(toRouteInput(object));
  expect(toRouteInput({ ...object })).not.toBe(toRouteInput(object));
  const policy = policyObject({ consumers: { secretNames: ['a'] }, models: ['m'] });
  expect(toPolicyInput(policy)).toBe(toPolicyInput(policy));
});
