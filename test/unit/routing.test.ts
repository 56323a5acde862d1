import { parseConfigText, toInputs } from '../../src/config/load-file.js';
import { buildSnapshot, type RoutingSnapshot } from '../../src/config/snapshot.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { defaultPlan, resolveModel } from '../../src/routing/resolve.js';

/** Model resolution as a table: (snapshot, model, random draw) in, the ordered plan of targets out. */

function snapshotOf(yaml: string, kube: Parameters<typeof buildSnapshot>[0]['kube'] = null): RoutingSnapshot {
  const base = 'upstreams:\n  default: { url: "http://a/v1", api_key: up }\n  local: { url: "http://b/v1" }\n';
  const inputs = toInputs(parseConfigText(base + yaml, 'c'), (_field, inline) => inline ?? null);
  return buildSnapshot({ file: inputs, kube, namespace: 'ns', version: 1 });
}

const routes = snapshotOf(
  [
    'model_redirects: { gpt-4: gpt-4o }',
    'routes:',
    '  - { model: llama, targets: [{ model: meta-llama, upstream: local }] }',
    '  - { model: split, targets: [{ model: a, weight: 90 }, { model: b, upstream: local, weight: 10 }, { model: c, weight: 0 }] }',
    '  - { model: three, targets: [{ model: x, weight: 1 }, { model: y, weight: 5 }, { model: z, weight: 4 }] }',
  ].join('\n') + '\n',
);
const reject = snapshotOf('unknown_models: reject\nmodel_redirects: { gpt-4: gpt-4o }\n');

type Row = [name: string, snapshot: RoutingSnapshot, model: string, random: number, plan: [upstream: string, model: string][], route: string | null];

const table: Row[] = [
  ['a redirect: the default upstream with the target model', routes, 'gpt-4', 0.5, [['default', 'gpt-4o']], 'file'],
  ['a route to another upstream', routes, 'llama', 0.5, [['local', 'meta-llama']], 'file'],
  [
    'weighted, low draw: the 90 first',
    routes,
    'split',
    0,
    [
      ['default', 'a'],
      ['local', 'b'],
    ],
    'file',
  ],
  [
    'weighted, draw just under 0.9: still the 90',
    routes,
    'split',
    0.8999,
    [
      ['default', 'a'],
      ['local', 'b'],
    ],
    'file',
  ],
  [
    'weighted, draw 0.9: the 10 first, then the 90',
    routes,
    'split',
    0.9,
    [
      ['local', 'b'],
      ['default', 'a'],
    ],
    'file',
  ],
  [
    'weight 0 is never a target',
    routes,
    'split',
    0.9999,
    [
      ['local', 'b'],
      ['default', 'a'],
    ],
    'file',
  ],
  [
    'three targets: the pick, then the rest by weight',
    routes,
    'three',
    0,
    [
      ['default', 'x'],
      ['default', 'y'],
      ['default', 'z'],
    ],
    'file',
  ],
  [
    'three targets, middle pick',
    routes,
    'three',
    0.3,
    [
      ['default', 'y'],
      ['default', 'z'],
      ['default', 'x'],
    ],
    'file',
  ],
  ['an unknown model passes through to the default upstream unchanged', routes, 'gpt-5', 0.5, [['default', 'gpt-5']], null],
  ['a routed model under unknown_models: reject still routes', reject, 'gpt-4', 0.5, [['default', 'gpt-4o']], 'file'],
];

test.each(table)('%s', (_name, snapshot, model, random, plan, route) => {
  const resolved = resolveModel(snapshot, model, random);
  expect(resolved.targets.map((t) => [t.upstream.name, t.model])).toEqual(plan);
  expect(resolved.route).toBe(route);
  expect(resolved.requestedModel).toBe(model);
});

test('unknown_models: reject refuses an unknown model with 404 model_not_found', () => {
  expect(() => resolveModel(reject, 'gpt-5', 0.5)).toThrow(GatewayError);
  try {
    resolveModel(reject, 'gpt-5', 0.5);
  } catch (error) {
    expect((error as GatewayError).code).toBe('model_not_found');
    expect((error as GatewayError).status).toBe(404);
  }
});

test('Kubernetes routes win over file redirects for the same model', () => {
  const snapshot = snapshotOf('model_redirects: { gpt-4: gpt-4o }\n', {
    routes: [
      { namespace: 'team-a', name: 'r', generation: 1, createdAt: 1, model: 'gpt-4', targets: [{ model: 'from-kube', upstream: 'local' }], invalid: null },
    ],
    clientKeys: [],
    upstreamKeys: new Map(),
  });
  const plan = resolveModel(snapshot, 'gpt-4', 0.5);
  expect(plan.targets.map((t) => [t.upstream.name, t.model])).toEqual([['local', 'from-kube']]);
  expect(plan.route).toBe('ModelRoute team-a/r');
});

test('a request without a model goes to the default upstream', () => {
  const plan = defaultPlan(routes);
  expect(plan.targets.map((t) => t.upstream.name)).toEqual(['default']);
  expect(plan.requestedModel).toBeNull();
});

test('the weighted split follows the weights over many draws', () => {
  const counts: Record<string, number> = { a: 0, b: 0 };
  for (let i = 0; i < 10_000; i++) counts[resolveModel(routes, 'split', Math.random()).targets[0]!.model]!++;
  expect(counts['a']! / 10_000).toBeGreaterThan(0.86);
  expect(counts['a']! / 10_000).toBeLessThan(0.94);
});

describe('answer_model: which model name an answer carries', () => {
  const kube = (answerModel?: 'requested' | 'upstream') => ({
    routes: [{ namespace: 'team-a', name: 'r', generation: 1, createdAt: 1, model: 'kube', targets: [{ model: 'kube-target' }], answerModel, invalid: null }],
    clientKeys: [],
    upstreamKeys: new Map<string, string>(),
  });
  const plans = (yaml: string, answerModel?: 'requested' | 'upstream') => {
    const snapshot = snapshotOf(yaml, kube(answerModel));
    return Object.fromEntries(['redirect', 'own', 'route', 'kube', 'unrouted'].map((model) => [model, resolveModel(snapshot, model, 0.5).answerModel]));
  };
  const routesYaml = [
    'model_redirects: { redirect: a, own: { model: b, answer_model: upstream } }',
    'routes:',
    '  - { model: route, targets: [{ model: c }], answer_model: requested }',
  ].join('\n');

  test('requested by default wherever a route applies; a route, a redirect or a ModelRoute may say otherwise; no route: upstream', () => {
    expect(plans(routesYaml)).toEqual({ redirect: 'requested', own: 'upstream', route: 'requested', kube: 'requested', unrouted: 'upstream' });
    expect(plans(routesYaml, 'upstream')).toMatchObject({ kube: 'upstream' });
  });

  test('the global setting is the default of every route that does not say', () => {
    expect(plans(`answer_model: upstream\n${routesYaml}`)).toEqual({
      redirect: 'upstream',
      own: 'upstream',
      route: 'requested',
      kube: 'upstream',
      unrouted: 'upstream',
    });
    expect(plans(`answer_model: upstream\n${routesYaml}`, 'requested')).toMatchObject({ kube: 'requested' });
  });

  test('a request without a model: upstream', () => {
    expect(defaultPlan(routes).answerModel).toBe('upstream');
  });
});
