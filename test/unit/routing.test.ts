import { parseConfigText, toInputs } from '../../src/config/load-file.js';
import { buildSnapshot, type RoutingSnapshot } from '../../src/config/snapshot.js';
import { GatewayError } from '../../src/errors/gateway-error.js';
import type { KubeRouteInput } from '../../src/config/model.js';
import type { Upstream } from '../../src/config/upstream.js';
import type { Principal } from '../../src/policy/types.js';
import { defaultPlan, isRouted, resolveModel, routedModels, type Availability } from '../../src/routing/resolve.js';
import { inEffect } from '../../src/routing/table.js';

/** Model resolution as a table: (snapshot, consumer, model, random draw) in, the ordered plan of targets out. */

/** A key of the config file: no namespace, so it sees the shared routes. */
const FILE_KEY: Principal = { keyId: 'k', consumer: 'k', namespace: null, policy: null };

function snapshotOf(yaml: string, kube: Parameters<typeof buildSnapshot>[0]['kube'] = null): RoutingSnapshot {
  const base = 'upstreams:\n  default: { url: "http://a/v1", api_key: up }\n  local: { url: "http://b/v1" }\n  azure: { url: "http://c/v1" }\n';
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
  const resolved = resolveModel(snapshot, FILE_KEY, model, random);
  expect(resolved.targets.map((t) => [t.upstream.name, t.model])).toEqual(plan);
  expect(resolved.route).toBe(route);
  expect(resolved.requestedModel).toBe(model);
});

test('unknown_models: reject refuses an unknown model with 404 model_not_found', () => {
  expect(() => resolveModel(reject, FILE_KEY, 'gpt-5', 0.5)).toThrow(GatewayError);
  try {
    resolveModel(reject, FILE_KEY, 'gpt-5', 0.5);
  } catch (error) {
    expect((error as GatewayError).code).toBe('model_not_found');
    expect((error as GatewayError).status).toBe(404);
  }
});

test("the gateway namespace's ModelRoutes win over file redirects for the same model", () => {
  const snapshot = snapshotOf('model_redirects: { gpt-4: gpt-4o }\n', {
    routes: [{ namespace: 'ns', name: 'r', generation: 1, createdAt: 1, model: 'gpt-4', targets: [{ model: 'from-kube', upstream: 'local' }], invalid: null }],
    consumers: [],
    policies: [],
    upstreamKeys: new Map(),
  });
  const plan = resolveModel(snapshot, FILE_KEY, 'gpt-4', 0.5);
  expect(plan.targets.map((t) => [t.upstream.name, t.model])).toEqual([['local', 'from-kube']]);
  expect(plan.route).toBe('ModelRoute ns/r');
});

describe('namespaces are tenants', () => {
  // The gateway runs in namespace 'ns' (snapshotOf): its ModelRoutes and the file's routes are shared.
  const modelRoute = (namespace: string, name: string, model: string, target: string, createdAt = 1): KubeRouteInput => ({
    namespace,
    name,
    generation: 1,
    createdAt,
    model,
    targets: [{ model: target }],
    invalid: null,
  });
  const tenants = snapshotOf('model_redirects: { gpt-4: file-gpt-4, only-file: from-file }\nunknown_models: reject\n', {
    routes: [
      modelRoute('ns', 'shared', 'gpt-4', 'shared-gpt-4'),
      modelRoute('ns', 'shared-only', 'shared-only', 'from-shared'),
      modelRoute('team-a', 'a', 'gpt-4', 'team-a-gpt-4'),
      modelRoute('team-a', 'a-own', 'a-only', 'from-team-a'),
      modelRoute('team-b', 'b', 'gpt-4', 'team-b-gpt-4', 5),
      // the same model twice in team-b: a conflict within team-b, the older wins
      modelRoute('team-b', 'b-older', 'gpt-4', 'team-b-older', 2),
    ],
    consumers: [],
    policies: [],
    upstreamKeys: new Map(),
  });
  const key = (namespace: string | null): Principal => ({ keyId: 'k', consumer: namespace === null ? 'file' : `${namespace}/keys`, namespace, policy: null });

  // sent: the model the upstream got, or the error code
  const rows: [name: string, namespace: string | null, model: string, sent: string][] = [
    ["team-a's key: team-a's route first", 'team-a', 'gpt-4', 'team-a-gpt-4'],
    ["team-a's key: a model only team-a routes", 'team-a', 'a-only', 'from-team-a'],
    ["team-a's key: then the shared routes (the gateway namespace's)", 'team-a', 'shared-only', 'from-shared'],
    ["team-a's key: and the file's", 'team-a', 'only-file', 'from-file'],
    ["team-b's key: team-b's own route, the older of its two", 'team-b', 'gpt-4', 'team-b-older'],
    ["team-b's key never sees team-a's routes", 'team-b', 'a-only', 'model_not_found'],
    ['a key of a namespace without routes sees the shared ones', 'team-c', 'gpt-4', 'shared-gpt-4'],
    ["a key of the gateway's namespace sees the shared ones", 'ns', 'gpt-4', 'shared-gpt-4'],
    ['a file key sees the shared routes', null, 'gpt-4', 'shared-gpt-4'],
    ['a file key never sees a tenant route', null, 'a-only', 'model_not_found'],
  ];
  test.each(rows)('%s', (_name, namespace, model, sent) => {
    let got: string;
    try {
      got = resolveModel(tenants, key(namespace), model, 0.5).targets[0]!.model;
    } catch (error) {
      got = (error as GatewayError).code;
    }
    expect(got).toBe(sent);
  });

  test('conflicts are judged within a namespace: the same model in two namespaces is no conflict', () => {
    const reasons = Object.fromEntries(tenants.routeStatuses.map((s) => [`${s.namespace}/${s.name}`, s.reason]));
    expect(reasons).toEqual({
      'ns/shared': 'Accepted',
      'ns/shared-only': 'Accepted',
      'team-a/a': 'Accepted',
      'team-a/a-own': 'Accepted',
      'team-b/b': 'Conflict',
      'team-b/b-older': 'Accepted',
    });
    // gpt-4, only-file (file); gpt-4 and shared-only (shared ModelRoutes, gpt-4 replacing the file's); two in team-a; one in team-b
    expect(tenants.routeCount).toBe(6);
  });

  test('the models a key sees: its namespace and the shared ones, each once', () => {
    expect([...routedModels(tenants, key('team-a'))].sort()).toEqual(['a-only', 'gpt-4', 'only-file', 'shared-only']);
    expect([...routedModels(tenants, key('team-b'))].sort()).toEqual(['gpt-4', 'only-file', 'shared-only']);
    expect([...routedModels(tenants, key(null))].sort()).toEqual(['gpt-4', 'only-file', 'shared-only']);
    expect(isRouted(tenants, key('team-a'), 'a-only')).toBe(true);
    expect(isRouted(tenants, key('team-b'), 'a-only')).toBe(false);
  });
});

test('a request without a model goes to the default upstream', () => {
  const plan = defaultPlan(routes);
  expect(plan.targets.map((t) => t.upstream.name)).toEqual(['default']);
  expect(plan.requestedModel).toBeNull();
});

test('the weighted split follows the weights over many draws', () => {
  const counts: Record<string, number> = { a: 0, b: 0 };
  for (let i = 0; i < 10_000; i++) counts[resolveModel(routes, FILE_KEY, 'split', Math.random()).targets[0]!.model]!++;
  expect(counts['a']! / 10_000).toBeGreaterThan(0.86);
  expect(counts['a']! / 10_000).toBeLessThan(0.94);
});

/** Which targets are out: `upstream` (ejected) or `upstream/model` (waiting out a Retry-After). */
function without(...out: string[]): Availability {
  return {
    allAvailable: out.length === 0,
    available: (upstream: Upstream, model: string) => !out.includes(upstream.name) && !out.includes(`${upstream.name}/${model}`),
  };
}

const tiers = snapshotOf(
  [
    'routes:',
    '  - model: tiered',
    '    targets:',
    '      - { model: fb, upstream: azure, priority: 1 }',
    '      - { model: a, weight: 90 }',
    '      - { model: b, upstream: local, weight: 10 }',
    '      - { model: last, upstream: azure, priority: 2 }',
    '  - model: two-fallbacks',
    '    targets:',
    '      - { model: p0 }',
    '      - { model: x, upstream: local, weight: 1, priority: 1 }',
    '      - { model: y, upstream: azure, weight: 3, priority: 1 }',
  ].join('\n') + '\n',
);

type TierRow = [name: string, model: string, random: number, availability: Availability, plan: string[], preferred: number];

const tierTable: TierRow[] = [
  [
    'all available: the weighted pick in the lowest priority, its other targets, then each fallback priority',
    'tiered',
    0,
    without(),
    ['default/a', 'local/b', 'azure/fb', 'azure/last'],
    4,
  ],
  ['the draw picks within priority 0 only', 'tiered', 0.95, without(), ['local/b', 'default/a', 'azure/fb', 'azure/last'], 4],
  ['a fallback priority is split by weight too (same draw)', 'two-fallbacks', 0.5, without(), ['default/p0', 'azure/y', 'local/x'], 3],
  [
    'an ejected upstream in priority 0: the split is among the rest; it comes last',
    'tiered',
    0,
    without('default'),
    ['local/b', 'azure/fb', 'azure/last', 'default/a'],
    3,
  ],
  ['priority 0 all out: the plan starts at the fallback', 'tiered', 0, without('default', 'local'), ['azure/fb', 'azure/last', 'default/a', 'local/b'], 2],
  [
    'a target waiting out a Retry-After is skipped like an ejected one',
    'tiered',
    0,
    without('default/a'),
    ['local/b', 'azure/fb', 'azure/last', 'default/a'],
    3,
  ],
  [
    'nothing available: every target, in priority order, none preferred',
    'tiered',
    0,
    without('default', 'local', 'azure'),
    ['default/a', 'local/b', 'azure/fb', 'azure/last'],
    0,
  ],
  ['an unrouted model on an ejected default upstream: still tried, not preferred', 'gpt-5', 0, without('default'), ['default/gpt-5'], 0],
];

test.each(tierTable)('%s', (_name, model, random, availability, plan, preferred) => {
  const resolved = resolveModel(tiers, FILE_KEY, model, random, availability);
  expect(resolved.targets.map((t) => `${t.upstream.name}/${t.model}`)).toEqual(plan);
  expect(resolved.preferred).toBe(preferred);
});

test('the split within a priority follows the weights of its available targets only', () => {
  const counts: Record<string, number> = {};
  const availability = without('azure/fb');
  for (let i = 0; i < 10_000; i++) {
    const first = resolveModel(tiers, FILE_KEY, 'two-fallbacks', Math.random(), without('default')).targets[0]!.model;
    counts[first] = (counts[first] ?? 0) + 1;
  }
  expect(counts['y']! / 10_000).toBeGreaterThan(0.71);
  expect(counts['y']! / 10_000).toBeLessThan(0.79);
  expect(resolveModel(tiers, FILE_KEY, 'tiered', 0.5, availability).targets.map((t) => t.model)).toEqual(['a', 'b', 'last', 'fb']);
});

test('a ModelRoute status says what is in effect: each priority, the split in percent', () => {
  const targets = [
    { model: 'gpt-4o', upstream: null, weight: 90, priority: 0 },
    { model: 'llama', upstream: 'local', weight: 10, priority: 0 },
    { model: 'gpt-4o', upstream: 'azure', weight: 1, priority: 1 },
    { model: 'drained', upstream: 'azure', weight: 0, priority: 1 },
  ];
  expect(inEffect(targets, 'default')).toBe('default/gpt-4o (90%), local/llama (10%); then, as fallback (priority 1), azure/gpt-4o');
});

test('a Kubernetes route with priorities: status and plan agree', () => {
  const snapshot = snapshotOf('', {
    routes: [
      {
        namespace: 'team-a',
        name: 'r',
        generation: 2,
        createdAt: 1,
        model: 'chat',
        targets: [
          { model: 'backup', upstream: 'azure', priority: 1 },
          { model: 'main', upstream: 'local' },
        ],
        invalid: null,
      },
    ],
    consumers: [],
    policies: [],
    upstreamKeys: new Map(),
  });
  const teamA: Principal = { keyId: 'k', consumer: 'team-a/keys', namespace: 'team-a', policy: null };
  expect(resolveModel(snapshot, teamA, 'chat', 0.5).targets.map((t) => `${t.upstream.name}/${t.model}`)).toEqual(['local/main', 'azure/backup']);
  expect(snapshot.routeStatuses[0]).toMatchObject({
    accepted: true,
    message: "routes model 'chat' to local/main; then, as fallback (priority 1), azure/backup",
  });
});

describe('answer_model: which model name an answer carries', () => {
  const kube = (answerModel?: 'requested' | 'upstream') => ({
    // in the gateway's own namespace: a shared route, which file keys see
    routes: [{ namespace: 'ns', name: 'r', generation: 1, createdAt: 1, model: 'kube', targets: [{ model: 'kube-target' }], answerModel, invalid: null }],
    consumers: [],
    policies: [],
    upstreamKeys: new Map<string, string>(),
  });
  const plans = (yaml: string, answerModel?: 'requested' | 'upstream') => {
    const snapshot = snapshotOf(yaml, kube(answerModel));
    return Object.fromEntries(
      ['redirect', 'own', 'route', 'kube', 'unrouted'].map((model) => [model, resolveModel(snapshot, FILE_KEY, model, 0.5).answerModel]),
    );
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
