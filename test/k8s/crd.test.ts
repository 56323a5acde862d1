/**
 * The ModelRoute CRD (crds/modelroutes.apiproxy.io.yaml) against a real
 * kube-apiserver + etcd: it is accepted, valid objects are stored, invalid ones
 * are rejected with the expected message, and the status subresource behaves.
 */
import { ApiException, ApiextensionsV1Api, CustomObjectsApi, PatchStrategy, setHeaderOptions } from '@kubernetes/client-node';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { CLUSTER_START_TIMEOUT_MS, startCluster } from './harness/cluster.js';
import type { TestCluster } from './harness/cluster.js';

const GROUP = 'apiproxy.io';
const VERSION = 'v1alpha1';
const PLURAL = 'modelroutes';
const NS = 'crd-test';
const base = `/apis/${GROUP}/${VERSION}/namespaces/${NS}/${PLURAL}`;
const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;

let cluster: TestCluster;
let custom: CustomObjectsApi;

beforeAll(async () => {
  cluster = await startCluster({ crds: true });
  custom = cluster.kubeConfig().makeApiClient(CustomObjectsApi);
  await cluster.ensureNamespace(NS);
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.stop();
});

let seq = 0;
const uniqueName = (prefix: string) => `${prefix}-${++seq}`;

function route(name: string, spec: unknown): Record<string, unknown> {
  return { apiVersion: `${GROUP}/${VERSION}`, kind: 'ModelRoute', metadata: { name }, spec };
}

const target = (model: string, extra: Record<string, unknown> = {}) => ({ model, ...extra });

describe('ModelRoute CRD', () => {
  test('is Established with the expected names', async () => {
    const api = cluster.kubeConfig().makeApiClient(ApiextensionsV1Api);
    const crd = await api.readCustomResourceDefinition({ name: `${PLURAL}.${GROUP}` });
    const conds = crd.status?.conditions ?? [];
    expect(conds.find((c) => c.type === 'Established')?.status).toBe('True');
    expect(conds.find((c) => c.type === 'NamesAccepted')?.status).toBe('True');
    expect(crd.spec.scope).toBe('Namespaced');
    expect(crd.status?.acceptedNames?.kind).toBe('ModelRoute');
    expect(crd.status?.acceptedNames?.shortNames).toEqual(['mr']);
    expect(crd.status?.acceptedNames?.categories).toEqual(['apiproxy']);
    expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([[VERSION, true, true]]);

    // Discovery, as kubectl sees it: short name, category, status subresource.
    const disc = await cluster.request('GET', `/apis/${GROUP}/${VERSION}`);
    expect(disc.status).toBe(200);
    const resources: Array<{ name: string; shortNames?: string[]; categories?: string[]; namespaced: boolean }> = disc.json.resources;
    const mr = resources.find((r) => r.name === PLURAL);
    expect(mr).toMatchObject({ namespaced: true, shortNames: ['mr'], categories: ['apiproxy'] });
    expect(resources.map((r) => r.name)).toContain(`${PLURAL}/status`);
  });

  test('applyCrds is idempotent', async () => {
    await cluster.applyCrds();
  });
});

describe('valid ModelRoutes', () => {
  const valid: Array<[string, unknown]> = [
    ['one target', { model: 'gpt-4o', targets: [target('gpt-4o-2024-08-06')] }],
    [
      'weighted split',
      {
        model: 'chat',
        targets: [target('gpt-4o', { upstream: 'openai', weight: 80 }), target('llama-3.1-70b', { upstream: 'vllm-a', weight: 20 })],
      },
    ],
    ['unweighted split over upstreams', { model: 'm', targets: [target('m', { upstream: 'a' }), target('m', { upstream: 'b' })] }],
    ['a zero weight next to a positive one', { model: 'm', targets: [target('x', { weight: 0 }), target('y', { weight: 1000 })] }],
    ['16 targets', { model: 'm', targets: Array.from({ length: 16 }, (_, i) => target(`t${i}`)) }],
    ['256-char model, 63-char upstream', { model: 'a'.repeat(256), targets: [target('b'.repeat(256), { upstream: 'c'.repeat(63) })] }],
    ['non-ASCII model names', { model: 'modèle/ünïcode:😀 v1', targets: [target('org/Model_Name-7B:q4')] }],
    [
      'priorities: a weighted split with a fallback',
      {
        model: 'chat',
        targets: [
          target('gpt-4o', { upstream: 'openai', weight: 80 }),
          target('llama', { upstream: 'vllm', weight: 20 }),
          target('gpt-4o', { upstream: 'azure', weight: 1, priority: 1 }),
        ],
      },
    ],
    ['priorities 0 and 100 without weights', { model: 'm', targets: [target('a', { priority: 0 }), target('b', { priority: 100 })] }],
    [
      'a zero weight in a priority that has another target',
      { model: 'm', targets: [target('a', { weight: 1 }), target('b', { weight: 0, priority: 1 }), target('c', { weight: 2, priority: 1 })] },
    ],
    ['answerModel: upstream', { model: 'm', targets: [target('x')], answerModel: 'upstream' }],
    ['answerModel: requested', { model: 'm', targets: [target('x')], answerModel: 'requested' }],
  ];

  test.each(valid)('%s is accepted (Strict field validation)', async (_desc, spec) => {
    const name = uniqueName('valid');
    const created = await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: PLURAL,
      body: route(name, spec),
      fieldValidation: 'Strict',
    });
    expect(created.metadata.name).toBe(name);
    expect(created.metadata.generation).toBe(1);
    expect(created.spec).toEqual(spec);
  });

  test.each(readdirSync(EXAMPLES).filter((file) => file.startsWith('modelroute')))('examples/%s is accepted (Strict field validation)', async (file) => {
    const example = parseYaml(readFileSync(join(EXAMPLES, file), 'utf8')) as { spec: unknown };
    const res = await cluster.request('POST', `${base}?fieldValidation=Strict`, route(uniqueName('example'), example.spec));
    expect([res.status, res.json?.message]).toEqual([201, undefined]);
  });

  test('created routes are listed (kubectl get modelroutes) with printer columns', async () => {
    const name = uniqueName('listed');
    const spec = { model: 'listed-model', targets: [target('upstream-model', { upstream: 'openai' })] };
    await custom.createNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL, body: route(name, spec) });

    const list = await custom.listNamespacedCustomObject({ group: GROUP, version: VERSION, namespace: NS, plural: PLURAL });
    const items: Array<{ metadata: { name: string }; spec: unknown }> = list.items;
    expect(items.find((i) => i.metadata.name === name)?.spec).toEqual(spec);

    // The server-side table kubectl renders.
    const table = await cluster.request('GET', `${base}/${name}`, undefined, {
      headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
    });
    expect(table.status).toBe(200);
    const cols: string[] = table.json.columnDefinitions.map((c: { name: string }) => c.name);
    expect(cols).toEqual(['Name', 'Model', 'Target', 'Accepted', 'Age']);
    const cells: unknown[] = table.json.rows[0].cells;
    expect(cells.slice(0, 4)).toEqual([name, 'listed-model', 'upstream-model', null]);

    // Category and short name resolve to the same resource in discovery, so `kubectl get apiproxy` lists it too.
    const all = await cluster.request('GET', `/apis/${GROUP}/${VERSION}/${PLURAL}`);
    expect(all.json.items.some((i: { metadata: { name: string } }) => i.metadata.name === name)).toBe(true);
  });
});

interface InvalidCase {
  desc: string;
  /** The object's spec; `undefined` means the spec field is omitted. */
  spec?: unknown;
  /** Substring the API server's error message must contain. */
  error: string;
  /** Expected HTTP status (422 Invalid unless noted). */
  status?: number;
  /** Send with ?fieldValidation=Strict (default true). */
  strict?: boolean;
}

const many = (n: number) => Array.from({ length: n }, (_, i) => target(`t${i}`));

const invalid: InvalidCase[] = [
  { desc: 'missing spec', spec: undefined, error: 'spec: Required value' },
  { desc: 'missing model', spec: { targets: [target('x')] }, error: 'spec.model: Required value' },
  { desc: 'empty model', spec: { model: '', targets: [target('x')] }, error: 'spec.model in body should be at least 1 chars long' },
  { desc: 'model too long (257)', spec: { model: 'a'.repeat(257), targets: [target('x')] }, error: 'spec.model: Too long: may not be more than 256' },
  { desc: 'model not a string', spec: { model: 42, targets: [target('x')] }, error: 'spec.model in body must be of type string' },
  {
    desc: 'newline in model',
    spec: { model: 'gpt\n4', targets: [target('x')] },
    error: 'spec.model: Invalid value: "gpt\\n4": must not contain control characters',
  },
  {
    desc: 'NUL in model',
    spec: { model: 'gpt\u00004', targets: [target('x')] },
    error: 'spec.model: Invalid value: "gpt\\x004": must not contain control characters',
  },
  { desc: 'DEL in model', spec: { model: 'gpt\u007f', targets: [target('x')] }, error: 'must not contain control characters' },
  { desc: 'C1 control in model', spec: { model: 'gpt\u0085', targets: [target('x')] }, error: 'must not contain control characters' },
  { desc: 'missing targets', spec: { model: 'm' }, error: 'spec.targets: Required value' },
  { desc: 'zero targets', spec: { model: 'm', targets: [] }, error: 'spec.targets in body should have at least 1 items' },
  { desc: 'too many targets (17)', spec: { model: 'm', targets: many(17) }, error: 'spec.targets: Too many: 17: must have at most 16 items' },
  { desc: 'targets not a list', spec: { model: 'm', targets: { model: 'x' } }, error: 'spec.targets in body must be of type array', strict: false },
  { desc: 'target without model', spec: { model: 'm', targets: [{ upstream: 'a' }] }, error: 'spec.targets[0].model: Required value' },
  { desc: 'target with empty model', spec: { model: 'm', targets: [target('')] }, error: 'spec.targets[0].model in body should be at least 1 chars long' },
  {
    desc: 'target model too long',
    spec: { model: 'm', targets: [target('a'.repeat(257))] },
    error: 'spec.targets[0].model: Too long: may not be more than 256',
  },
  {
    desc: 'tab in target model',
    spec: { model: 'm', targets: [target('x'), target('a\tb')] },
    error: 'spec.targets[1].model: Invalid value: "a\\tb": must not contain control characters',
  },
  {
    desc: 'upstream with uppercase/underscore',
    spec: { model: 'm', targets: [target('x', { upstream: 'Bad_Name' })] },
    error: "spec.targets[0].upstream in body should match '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'",
  },
  {
    desc: 'upstream ending in a dash',
    spec: { model: 'm', targets: [target('x', { upstream: 'vllm-' })] },
    error: 'spec.targets[0].upstream in body should match',
  },
  { desc: 'upstream with a dot', spec: { model: 'm', targets: [target('x', { upstream: 'a.b' })] }, error: 'spec.targets[0].upstream in body should match' },
  {
    desc: 'empty upstream',
    spec: { model: 'm', targets: [target('x', { upstream: '' })] },
    error: 'spec.targets[0].upstream in body should be at least 1 chars long',
  },
  {
    desc: 'upstream too long (64)',
    spec: { model: 'm', targets: [target('x', { upstream: 'a'.repeat(64) })] },
    error: 'spec.targets[0].upstream: Too long: may not be more than 63',
  },
  {
    desc: 'negative weight',
    spec: { model: 'm', targets: [target('x', { weight: -1 })] },
    error: 'spec.targets[0].weight in body should be greater than or equal to 0',
  },
  {
    desc: 'weight too big',
    spec: { model: 'm', targets: [target('x', { weight: 1001 })] },
    error: 'spec.targets[0].weight in body should be less than or equal to 1000',
  },
  { desc: 'fractional weight', spec: { model: 'm', targets: [target('x', { weight: 1.5 })] }, error: 'spec.targets[0].weight in body must be of type int32' },
  {
    desc: 'all weights zero',
    spec: { model: 'm', targets: [target('x', { weight: 0 }), target('y', { weight: 0 })] },
    error: 'spec.targets: Invalid value: the sum of target weights must be greater than 0',
  },
  { desc: 'single zero weight', spec: { model: 'm', targets: [target('x', { weight: 0 })] }, error: 'the sum of target weights must be greater than 0' },
  {
    desc: 'weights on some targets only',
    spec: { model: 'm', targets: [target('x', { weight: 5 }), target('y')] },
    error: 'spec.targets: Invalid value: weight must be set on every target or on none',
  },
  {
    desc: 'duplicate (upstream, model)',
    spec: { model: 'm', targets: [target('x', { upstream: 'a' }), target('x', { upstream: 'a' })] },
    error: 'spec.targets: Invalid value: targets must be unique by (upstream, model)',
  },
  {
    desc: 'duplicate model, both without upstream',
    spec: { model: 'm', targets: [target('x'), target('y'), target('x')] },
    error: 'targets must be unique by (upstream, model)',
  },
  {
    desc: 'duplicate with weights',
    spec: { model: 'm', targets: [target('x', { weight: 1 }), target('x', { weight: 2 })] },
    error: 'targets must be unique by (upstream, model)',
  },
  {
    desc: 'negative priority',
    spec: { model: 'm', targets: [target('x', { priority: -1 })] },
    error: 'spec.targets[0].priority in body should be greater than or equal to 0',
  },
  {
    desc: 'priority too big',
    spec: { model: 'm', targets: [target('x', { priority: 101 })] },
    error: 'spec.targets[0].priority in body should be less than or equal to 100',
  },
  {
    desc: 'fractional priority',
    spec: { model: 'm', targets: [target('x', { priority: 0.5 })] },
    error: 'spec.targets[0].priority in body must be of type int32',
  },
  {
    desc: 'priority as a string',
    spec: { model: 'm', targets: [target('x', { priority: 'first' })] },
    error: 'spec.targets[0].priority in body must be of type integer',
  },
  {
    desc: 'a fallback priority whose targets all weigh 0',
    spec: { model: 'm', targets: [target('x', { weight: 5 }), target('y', { weight: 0, priority: 1 })] },
    error: 'spec.targets: Invalid value: every priority used needs a target with a weight above 0',
  },
  {
    desc: 'answerModel not one of the two',
    spec: { model: 'm', targets: [target('x')], answerModel: 'alias' },
    error: 'spec.answerModel: Unsupported value: "alias": supported values: "requested", "upstream"',
  },
  { desc: 'unknown field in spec (Strict)', spec: { model: 'm', targets: [target('x')], timeout: '5s' }, error: 'unknown field "spec.timeout"', status: 400 },
  {
    desc: 'unknown field in a target (Strict)',
    spec: { model: 'm', targets: [target('x', { timeoutMs: 1 })] },
    error: 'unknown field "spec.targets[0].timeoutMs"',
    status: 400,
  },
];

describe('invalid ModelRoutes are rejected', () => {
  test.each(invalid.map((c) => [c.desc, c] as const))('%s', async (_desc, c) => {
    const name = uniqueName('invalid');
    const obj = route(name, c.spec);
    if (c.spec === undefined) delete obj.spec;
    const res = await cluster.request('POST', c.strict === false ? base : `${base}?fieldValidation=Strict`, obj);
    const message: string = res.json?.message ?? res.text;
    expect({ status: res.status, message }).toEqual({ status: c.status ?? 422, message: expect.stringContaining(c.error) });
    // Nothing was stored.
    const get = await cluster.request('GET', `${base}/${name}`);
    expect(get.status).toBe(404);
  });

  test('the client surfaces the same message (ApiException)', async () => {
    const err = await custom
      .createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        body: route(uniqueName('client'), { model: 'm', targets: [] }),
      })
      .then(
        () => undefined,
        (e: unknown) => e,
      );
    expect(err).toBeInstanceOf(ApiException);
    const e = err as ApiException<string>;
    expect(e.code).toBe(422);
    expect(String(e.body)).toContain('spec.targets in body should have at least 1 items');
  });

  test('without Strict, unknown fields are pruned (not stored)', async () => {
    const name = uniqueName('pruned');
    const res = await cluster.request('POST', base, route(name, { model: 'm', targets: [target('x', { timeoutMs: 1 })], extra: true }));
    expect(res.status).toBe(201);
    expect(res.json.spec).toEqual({ model: 'm', targets: [target('x')] });
    expect(String(res.headers.warning ?? '')).toContain('unknown field');
  });

  test('updates are validated too (mixing weighted and unweighted targets)', async () => {
    const name = uniqueName('update');
    const created = await cluster.request('POST', base, route(name, { model: 'm', targets: [target('x')] }));
    expect(created.status).toBe(201);
    const res = await cluster.request(
      'PATCH',
      `${base}/${name}`,
      { spec: { targets: [target('x', { weight: 3 }), target('y')] } },
      { contentType: 'application/merge-patch+json' },
    );
    expect(res.status).toBe(422);
    expect(res.json.message).toContain('weight must be set on every target or on none');
  });
});

describe('status subresource', () => {
  const condition = (status: string, generation: number) => ({
    type: 'Accepted',
    status,
    observedGeneration: generation,
    lastTransitionTime: '2025-01-02T03:04:05Z',
    reason: 'Accepted',
    message: 'route accepted by the gateway',
  });

  test('status patches do not bump generation; spec changes do', async () => {
    const name = uniqueName('status');
    const created = await custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: PLURAL,
      body: route(name, { model: 'm', targets: [target('x')] }),
    });
    expect(created.metadata.generation).toBe(1);

    // Patch /status through the client (merge patch).
    const patched = await custom.patchNamespacedCustomObjectStatus(
      {
        group: GROUP,
        version: VERSION,
        namespace: NS,
        plural: PLURAL,
        name,
        body: { status: { observedGeneration: 1, conditions: [condition('True', 1)] } },
      },
      setHeaderOptions('Content-Type', PatchStrategy.MergePatch),
    );
    expect(patched.metadata.generation).toBe(1);
    expect(patched.status).toEqual({ observedGeneration: 1, conditions: [condition('True', 1)] });

    // The Accepted printer column now shows the condition.
    const table = await cluster.request('GET', `${base}/${name}`, undefined, {
      headers: { Accept: 'application/json;as=Table;v=v1;g=meta.k8s.io' },
    });
    expect(table.json.rows[0].cells[3]).toBe('True');

    // A status change through the main resource is ignored.
    const viaMain = await cluster.request('PATCH', `${base}/${name}`, { status: { observedGeneration: 7 } }, { contentType: 'application/merge-patch+json' });
    expect(viaMain.status).toBe(200);
    expect(viaMain.json.status.observedGeneration).toBe(1);
    expect(viaMain.json.metadata.generation).toBe(1);

    // A spec change bumps generation and keeps status.
    const specPatched = await cluster.request('PATCH', `${base}/${name}`, { spec: { model: 'm2' } }, { contentType: 'application/merge-patch+json' });
    expect(specPatched.status).toBe(200);
    expect(specPatched.json.metadata.generation).toBe(2);
    expect(specPatched.json.status.observedGeneration).toBe(1);

    // A spec change through /status is ignored.
    const specViaStatus = await cluster.request(
      'PATCH',
      `${base}/${name}/status`,
      { spec: { model: 'ignored' }, status: { observedGeneration: 2 } },
      { contentType: 'application/merge-patch+json' },
    );
    expect(specViaStatus.status).toBe(200);
    expect(specViaStatus.json.spec.model).toBe('m2');
    expect(specViaStatus.json.metadata.generation).toBe(2);
    expect(specViaStatus.json.status.observedGeneration).toBe(2);
  });

  test('conditions are a map keyed by type (server-side apply merges by type)', async () => {
    const name = uniqueName('ssa');
    await cluster.request('POST', base, route(name, { model: 'm', targets: [target('x')] }));
    const apply = (manager: string, cond: Record<string, unknown>) =>
      cluster.request(
        'PATCH',
        `${base}/${name}/status?fieldManager=${manager}&force=true`,
        { apiVersion: `${GROUP}/${VERSION}`, kind: 'ModelRoute', metadata: { name }, status: { conditions: [cond] } },
        { contentType: 'application/apply-patch+yaml' },
      );
    expect((await apply('gateway', condition('True', 1))).status).toBe(200);
    const res = await apply('other', { ...condition('False', 1), type: 'ResolvedRefs', reason: 'UpstreamNotFound' });
    expect(res.status).toBe(200);
    expect(res.json.status.conditions.map((c: { type: string; status: string }) => [c.type, c.status])).toEqual([
      ['Accepted', 'True'],
      ['ResolvedRefs', 'False'],
    ]);
  });

  const badStatus: Array<[string, unknown, string]> = [
    ['status not True/False/Unknown', { conditions: [condition('Maybe', 1)] }, 'Unsupported value: "Maybe"'],
    ['duplicate condition type', { conditions: [condition('True', 1), condition('False', 1)] }, 'status.conditions[1]: Duplicate value'],
    [
      'bad lastTransitionTime',
      { conditions: [{ ...condition('True', 1), lastTransitionTime: 'yesterday' }] },
      'status.conditions[0].lastTransitionTime: Invalid value: "yesterday": conditions[0].lastTransitionTime in body must be of type date-time',
    ],
    ['condition without reason', { conditions: [{ ...condition('True', 1), reason: undefined }] }, 'status.conditions[0].reason: Required value'],
    [
      'negative observedGeneration',
      { observedGeneration: -1 },
      'status.observedGeneration: Invalid value: -1: observedGeneration in body should be greater than or equal to 0',
    ],
    [
      'more than 8 conditions',
      { conditions: Array.from({ length: 9 }, (_, i) => ({ ...condition('True', 1), type: `T${i}` })) },
      'status.conditions: Too many: 9: must have at most 8 items',
    ],
  ];

  test.each(badStatus)('invalid status is rejected: %s', async (_desc, status, error) => {
    const name = uniqueName('badstatus');
    await cluster.request('POST', base, route(name, { model: 'm', targets: [target('x')] }));
    const res = await cluster.request('PATCH', `${base}/${name}/status`, { status }, { contentType: 'application/merge-patch+json' });
    expect({ status: res.status, message: res.json?.message ?? res.text }).toEqual({ status: 422, message: expect.stringContaining(error) });
  });
});
