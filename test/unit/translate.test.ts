import { toClientKeys, toRouteInput } from '../../src/sources/kube/translate.js';
import { keyDigest } from '../../src/config/key-digest.js';

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

test("a ModelRoute's answerModel is read; a value the CRD would refuse makes the route Invalid", () => {
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }], answerModel: 'upstream' })).answerModel).toBe('upstream');
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }] })).answerModel).toBeUndefined();
  expect(toRouteInput(route({ model: 'a', targets: [{ model: 'b' }], answerModel: 'both' })).invalid).toMatch(/^spec\.answerModel: /);
});

test('each Secret entry is a key (trimmed), its name the id; empty entries are skipped', () => {
  const secret = { metadata: { name: 's' }, data: { a: Buffer.from('sk-a\n').toString('base64'), empty: '', b: Buffer.from('sk-b').toString('base64') } };
  expect(toClientKeys(secret)).toEqual([
    { id: 'a', digest: keyDigest('sk-a') },
    { id: 'b', digest: keyDigest('sk-b') },
  ]);
});

test('an unchanged object is translated once (a rebuild after one event re-hashes only what changed)', () => {
  const secret = { metadata: { name: 's' }, data: { a: Buffer.from('sk-a').toString('base64') } };
  expect(toClientKeys(secret)).toBe(toClientKeys(secret));
  const object = route({ model: 'a', targets: [{ model: 'b' }] });
  expect(toRouteInput(object)).toBe(toRouteInput(object));
  expect(toRouteInput({ ...object })).not.toBe(toRouteInput(object));
});
