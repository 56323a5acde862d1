/**
 * The ClientPolicy CRD (crds/clientpolicies.apiproxy.io.yaml) against a real
 * kube-apiserver + etcd: it is accepted, valid policies are stored, invalid
 * ones are rejected with the expected message (OpenAPI and CEL rules), and
 * the status subresource and printer columns behave.
 */
import { readFileSync } from 'node:fs';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import { parse } from 'yaml';
import { CLUSTER_START_TIMEOUT_MS, startCluster } from './harness/cluster.js';
import type { TestCluster } from './harness/cluster.js';

const GROUP = 'apiproxy.io';
const VERSION = 'v1alpha1';
const PLURAL = 'clientpolicies';
const NS = 'policy-crd';
const base = `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${PLURAL}`;

let cluster: TestCluster;

beforeAll(async () => {
  cluster = await startCluster({ crds: true });
  await cluster.ensureNamespace(NS);
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.stop();
});

let seq = 0;
const uniqueName = (prefix: string) => `${prefix}-${++seq}`;
const policy = (name: string, spec: unknown): Record<string, unknown> => ({
  apiVersion: `${GROUP}/${VERSION}`,
  kind: 'ClientPolicy',
  metadata: { name },
  spec,
});
const byName = { secretNames: ['client-keys'] };

test('is Established as ClientPolicy, short name cpol, category apiproxy, with a status subresource', async () => {
  const api = cluster.kubeConfig().makeApiClient(ApiextensionsV1Api);
  const crd = await api.readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` });
  const conds = crd.status?.conditions ?? [];
  expect(conds.find((c) => c.type === 'Established')?.status).toBe('True');
  expect(crd.spec.scope).toBe('Namespaced');
  expect(crd.status?.acceptedNames).toMatchObject({ kind: 'ClientPolicy', shortNames: ['cpol'], categories: ['apiproxy'] });
  const disc = await cluster.request('GET', `/apis/${GROUP}/${VERSION}`);
  const names = (disc.json.resources as { name: string }[]).map((r) => r.name);
  expect(names).toEqual(expect.arrayContaining([PLURAL, `${PLURAL}/status`]));
});

const valid: [string, unknown][] = [
  ['secret names and an allow-list', { consumers: byName, models: ['gpt-4o-mini', 'gpt-4o*', 'text-embedding-*'] }],
  ['every model', { consumers: byName, models: ['*'] }],
  [
    'a selector and every limit',
    {
      consumers: { selector: { matchLabels: { tier: 'free' }, matchExpressions: [{ key: 'team', operator: 'In', values: ['a', 'b'] }] } },
      limits: {
        requestsPerMinute: { limit: 600, per: 'key' },
        tokensPerMinute: { limit: 100000, per: 'consumer' },
        tokensPerDay: { limit: 1000000000000, per: 'consumer' },
        concurrentStreams: 10,
      },
    },
  ],
  ['an empty selector (every client-key Secret of the namespace)', { consumers: { selector: {} }, limits: { concurrentStreams: 1 } }],
  [
    'Exists and DoesNotExist without values',
    {
      consumers: {
        selector: {
          matchExpressions: [
            { key: 'a', operator: 'Exists' },
            { key: 'b', operator: 'DoesNotExist' },
          ],
        },
      },
      models: ['m'],
    },
  ],
  ['256 models of 256 characters', { consumers: byName, models: Array.from({ length: 256 }, (_, i) => `${i}`.padEnd(256, 'x')) }],
  ['64 secret names', { consumers: { secretNames: Array.from({ length: 64 }, (_, i) => `keys-${i}`) }, models: ['m'] }],
];

test.each(valid)('valid: %s (Strict field validation)', async (_desc, spec) => {
  const name = uniqueName('valid');
  const res = await cluster.request('POST', `${base}?fieldValidation=Strict`, policy(name, spec));
  expect({ status: res.status, message: res.json?.message }).toEqual({ status: 201, message: undefined });
  expect(res.json.spec).toEqual(spec);
});

interface InvalidCase {
  desc: string;
  spec?: unknown;
  error: string;
  status?: number;
}

const invalid: InvalidCase[] = [
  { desc: 'missing spec', error: 'spec: Required value' },
  { desc: 'no consumers', spec: { models: ['m'] }, error: 'spec.consumers: Required value' },
  { desc: 'neither models nor limits', spec: { consumers: byName }, error: 'spec: Invalid value: a policy sets models, limits or both' },
  {
    desc: 'both secretNames and selector',
    spec: { consumers: { secretNames: ['a'], selector: {} }, models: ['m'] },
    error: 'spec.consumers: Invalid value: set exactly one of secretNames and selector',
  },
  { desc: 'neither secretNames nor selector', spec: { consumers: {}, models: ['m'] }, error: 'set exactly one of secretNames and selector' },
  {
    desc: 'empty secretNames',
    spec: { consumers: { secretNames: [] }, models: ['m'] },
    error: 'spec.consumers.secretNames in body should have at least 1 items',
  },
  {
    desc: 'a secret name with capitals',
    spec: { consumers: { secretNames: ['Keys'] }, models: ['m'] },
    error: 'spec.consumers.secretNames[0] in body should match',
  },
  {
    desc: 'a secret name twice',
    spec: { consumers: { secretNames: ['a', 'a'] }, models: ['m'] },
    error: 'spec.consumers.secretNames[1]: Duplicate value: "a"',
  },
  {
    desc: 'In without values',
    spec: { consumers: { selector: { matchExpressions: [{ key: 'a', operator: 'In' }] } }, models: ['m'] },
    error: 'spec.consumers.selector.matchExpressions[0]: Invalid value: In and NotIn need values; Exists and DoesNotExist take none',
  },
  {
    desc: 'Exists with values',
    spec: { consumers: { selector: { matchExpressions: [{ key: 'a', operator: 'Exists', values: ['x'] }] } }, models: ['m'] },
    error: 'In and NotIn need values; Exists and DoesNotExist take none',
  },
  {
    desc: 'an unknown operator',
    spec: { consumers: { selector: { matchExpressions: [{ key: 'a', operator: 'Like', values: ['x'] }] } }, models: ['m'] },
    error: 'spec.consumers.selector.matchExpressions[0].operator: Unsupported value: "Like"',
  },
  { desc: 'an empty allow-list', spec: { consumers: byName, models: [] }, error: 'spec.models in body should have at least 1 items' },
  { desc: 'an empty model name', spec: { consumers: byName, models: [''] }, error: 'spec.models[0] in body should be at least 1 chars long' },
  {
    desc: 'a control character in a model',
    spec: { consumers: byName, models: ['gpt\n4'] },
    error: 'spec.models[0]: Invalid value: "gpt\\n4": must not contain control characters',
  },
  { desc: 'too many models (257)', spec: { consumers: byName, models: Array.from({ length: 257 }, (_, i) => `m${i}`) }, error: 'spec.models: Too many: 257' },
  { desc: 'empty limits', spec: { consumers: byName, limits: {} }, error: 'spec.limits in body should have at least 1 properties' },
  {
    desc: 'a limit of 0',
    spec: { consumers: byName, limits: { requestsPerMinute: { limit: 0, per: 'key' } } },
    error: 'spec.limits.requestsPerMinute.limit in body should be greater than or equal to 1',
  },
  {
    desc: 'a fractional limit',
    spec: { consumers: byName, limits: { tokensPerMinute: { limit: 1.5, per: 'key' } } },
    error: 'spec.limits.tokensPerMinute.limit in body must be of type int64',
  },
  {
    desc: 'a limit without per',
    spec: { consumers: byName, limits: { tokensPerDay: { limit: 10 } } },
    error: 'spec.limits.tokensPerDay.per: Required value',
  },
  {
    desc: 'per something else',
    spec: { consumers: byName, limits: { requestsPerMinute: { limit: 10, per: 'namespace' } } },
    error: 'spec.limits.requestsPerMinute.per: Unsupported value: "namespace"',
  },
  {
    desc: 'requests per minute over 1e9',
    spec: { consumers: byName, limits: { requestsPerMinute: { limit: 1000000001, per: 'key' } } },
    error: 'spec.limits.requestsPerMinute.limit in body should be less than or equal to 1000000000',
  },
  {
    desc: 'concurrent streams 0',
    spec: { consumers: byName, limits: { concurrentStreams: 0 } },
    error: 'spec.limits.concurrentStreams in body should be greater than or equal to 1',
  },
  { desc: 'an unknown field (Strict)', spec: { consumers: byName, models: ['m'], budget: 5 }, error: 'unknown field "spec.budget"', status: 400 },
];

test.each(invalid.map((c) => [c.desc, c] as const))('invalid: %s', async (_desc, c) => {
  const name = uniqueName('invalid');
  const object = policy(name, c.spec);
  if (c.spec === undefined) delete object['spec'];
  const res = await cluster.request('POST', `${base}?fieldValidation=Strict`, object);
  expect({ status: res.status, message: res.json?.message ?? res.text }).toEqual({ status: c.status ?? 422, message: expect.stringContaining(c.error) });
  expect((await cluster.request('GET', `${base}/${name}`)).status).toBe(404);
});

test('kubectl get cpol: printer columns; the status subresource holds the Accepted condition without bumping generation', async () => {
  const name = uniqueName('listed');
  expect((await cluster.request('POST', base, policy(name, { consumers: byName, models: ['gpt-4o'] }))).status).toBe(201);
  const condition = {
    type: 'Accepted',
    status: 'True',
    observedGeneration: 1,
    lastTransitionTime: '2026-01-02T03:04:05Z',
    reason: 'Accepted',
    message: 'governs 1 consumer',
  };
  const patched = await cluster.request(
    'PATCH',
    `${base}/${name}/status`,
    { status: { observedGeneration: 1, conditions: [condition] } },
    { contentType: 'application/merge-patch+json' },
  );
  expect(patched.status).toBe(200);
  expect(patched.json.metadata.generation).toBe(1);
  const table = await cluster.request('GET', `${base}/${name}`, undefined, { headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' } });
  expect(table.json.columnDefinitions.map((c: { name: string }) => c.name)).toEqual(['Name', 'Secrets', 'Models', 'Accepted', 'Age']);
  expect(table.json.rows[0].cells.slice(0, 4)).toEqual([name, '["client-keys"]', '["gpt-4o"]', 'True']);
});

test('examples/clientpolicy.yaml is accepted as it is (Strict)', async () => {
  const example = parse(readFileSync(new URL('../../examples/clientpolicy.yaml', import.meta.url), 'utf8')) as Record<string, unknown>;
  const res = await cluster.request('POST', `${base}?fieldValidation=Strict`, example);
  expect({ status: res.status, message: res.json?.message }).toEqual({ status: 201, message: undefined });
});
