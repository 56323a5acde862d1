import { withAliases } from '../../src/pipeline/models-endpoint.js';

const list = (ids: string[]) => Buffer.from(JSON.stringify({ object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 1, owned_by: 'x' })) }));

test('appends aliases the upstream lacks, keeps its own entries and fields', () => {
  const out = JSON.parse(withAliases(list(['a', 'b']), ['b', 'c']).toString());
  expect(out.object).toBe('list');
  expect(out.data.map((m: { id: string }) => m.id)).toEqual(['a', 'b', 'c']);
  expect(out.data[2]).toEqual({ id: 'c', object: 'model', created: 0, owned_by: 'api-proxy' });
});

test.each([
  ['not json', Buffer.from('<html>')],
  ['no data list', Buffer.from('{"object":"list"}')],
  ['null', Buffer.from('null')],
])('leaves %s untouched', (_name, body) => {
  expect(withAliases(body, ['c'])).toBe(body);
});

test('nothing to add: the very same bytes', () => {
  const body = list(['a']);
  expect(withAliases(body, ['a'])).toBe(body);
});
