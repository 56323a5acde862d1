import { parseConfigText, toInputs, ConfigError } from '../../src/config/load-file.js';
import { redactableSecrets } from '../../src/config/secrets.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { resolveModel } from '../../src/routing/resolve.js';
import { resolveKubeRoutes } from '../../src/routing/table.js';
import { keyDigest } from '../../src/config/key-digest.js';
import type { KubeRouteInput } from '../../src/config/model.js';

const noSecrets = (_field: string, inline: string | undefined) => inline ?? null;
const FILE_KEY = { keyId: 'k', consumer: 'k', namespace: null, policy: null };

describe('config file', () => {
  test("the seed's file works unchanged", () => {
    const config = parseConfigText(
      JSON.stringify({
        api: { url: 'https://api.openai.com/v1/chat/completions', key: 'sk-up' },
        allowed_keys: ['k1', 'k2'],
        model_redirects: { 'gpt-4': 'gpt-4-turbo-preview', 'gpt-3.5-turbo': 'gpt-3.5-turbo-0125' },
      }),
      'config.json',
    );
    const inputs = toInputs(config, noSecrets);
    expect(inputs.upstreams[0]).toMatchObject({ name: 'default', origin: 'https://api.openai.com', basePath: '/v1', apiKey: 'sk-up' });
    expect(inputs.clientKeys).toEqual([
      { id: 'allowed-1', digest: keyDigest('k1') },
      { id: 'allowed-2', digest: keyDigest('k2') },
    ]);
    // each seed key is a consumer of its own, named by its key id, without a policy
    const snapshot = buildSnapshot({ file: inputs, kube: null, namespace: 'ns', version: 1 });
    expect(snapshot.keys.get(keyDigest('k2'))).toEqual({ keyId: 'allowed-2', consumer: 'allowed-2', namespace: null, policy: null });
    expect(inputs.routes.map((r) => [r.model, r.targets[0]!.model])).toEqual([
      ['gpt-4', 'gpt-4-turbo-preview'],
      ['gpt-3.5-turbo', 'gpt-3.5-turbo-0125'],
    ]);
  });

  test('answer_model: requested by default; a redirect may be an object with its own answer_model', () => {
    const plain = toInputs(parseConfigText('{"api":{"url":"http://x"},"model_redirects":{"a":"b"}}', 'c'), noSecrets);
    expect(plain.settings.answerModel).toBe('requested');
    expect(plain.routes[0]).toMatchObject({ model: 'a', targets: [{ model: 'b' }], answerModel: null });
    const text = '{"api":{"url":"http://x"},"answer_model":"upstream","model_redirects":{"a":{"model":"b","answer_model":"requested"},"c":{"model":"d"}}}';
    const inputs = toInputs(parseConfigText(text, 'c'), noSecrets);
    expect(inputs.settings.answerModel).toBe('upstream');
    expect(inputs.routes.map((r) => [r.model, r.targets[0]!.model, r.answerModel])).toEqual([
      ['a', 'b', 'requested'],
      ['c', 'd', null],
    ]);
  });

  test('YAML works and a bare origin forwards paths unchanged', () => {
    const config = parseConfigText('upstreams:\n  default:\n    url: http://vllm:8000\nbody_limit: 2MiB\n', 'c.yaml');
    const inputs = toInputs(config, noSecrets);
    expect(inputs.upstreams[0]!.basePath).toBe('/v1');
    expect(inputs.settings.bodyLimit).toBe(2 * 1024 * 1024);
  });

  test.each([
    ['{"upstreams":{"default":{"url":"ftp://x"}}}', 'upstreams.default.url'],
    ['{"api":{"url":"http://x"},"allowed_keys":"k"}', 'allowed_keys'],
    ['{"api":{"url":"http://x"},"body_limit":"lots"}', 'body_limit'],
    ['{"api":{"url":"http://x"},"surprise":1}', 'surprise'],
    ['{"api":{"url":"http://x"},"client_keys":[{"id":"a"}]}', 'client_keys[0]'],
    ['{"api":{"url":"http://x"},"model_redirects":{"a":"b\\u0007"}}', 'model_redirects'],
    ['{"api":{"url":"http://x"},"answer_model":"alias"}', 'answer_model'],
    ['{"api":{"url":"http://x"},"model_redirects":{"a":{"model":"b","answer_model":"both"}}}', 'model_redirects'],
    ['{"api":{"url":"http://x"},"model_redirects":{"a":{"answer_model":"upstream"}}}', 'model_redirects'],
    ['{"api":{"url":"http://x"},"routes":[{"model":"a","targets":[{"model":"b"}],"answer_model":"x"}]}', 'routes[0].answer_model'],
    ['{"upstreams":{}}', 'no default upstream'],
    ['upstreams: [', 'not valid JSON or YAML'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"attempts":0}}}}', 'upstreams.default.retry.attempts'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"attempts":11}}}}', 'upstreams.default.retry.attempts'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"conditions":["timeout"]}}}}', 'upstreams.default.retry.conditions[0]'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"conditions":[200]}}}}', 'retry on a status from 400 to 599'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"backoff":{"base_ms":500,"max_ms":100}}}}}', 'base_ms must not exceed max_ms'],
    ['{"upstreams":{"default":{"url":"http://x","retry":{"tries":3}}}}', 'upstreams.default.retry'],
    ['{"upstreams":{"default":{"url":"http://x","outlier":{"ejection_ms":5000,"max_ejection_ms":1000}}}}', 'ejection_ms must not exceed max_ejection_ms'],
    ['{"upstreams":{"default":{"url":"http://x","outlier":{"max_ejected_percent":101}}}}', 'upstreams.default.outlier.max_ejected_percent'],
    ['{"api":{"url":"http://x"},"routes":[{"model":"m","targets":[{"model":"t","priority":-1}]}]}', 'routes[0].targets[0].priority'],
    ['{"api":{"url":"http://x"},"routes":[{"model":"m","targets":[{"model":"t","priority":1.5}]}]}', 'routes[0].targets[0].priority'],
    ['{"api":{"url":"http://x"},"retry_budget_ms":0}', 'retry_budget_ms'],
  ])('%s is rejected naming %s', (text, field) => {
    expect(() => parseConfigText(text, 'c')).toThrow(ConfigError);
    expect(() => parseConfigText(text, 'c')).toThrow(field);
  });
});

describe('retry and outlier settings', () => {
  test('defaults: two tries, connect failures and 429/502/503/504, ejection after 5 failures in a row', () => {
    const inputs = toInputs(parseConfigText('upstreams:\n  default: { url: "http://a/v1" }\n', 'c'), noSecrets);
    expect(inputs.upstreams[0]).toMatchObject({
      retry: { attempts: 2, backoffBaseMs: 100, backoffMaxMs: 2000, conditions: ['connect_failure', 429, 502, 503, 504] },
      outlier: { consecutiveFailures: 5, ejectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedPercent: 50 },
    });
    expect(inputs.settings.retryBudgetMs).toBe(120_000);
    // the seed's `api` upstream gets the same
    const seed = toInputs(parseConfigText('{"api":{"url":"http://x/v1/chat/completions"}}', 'c'), noSecrets);
    expect(seed.upstreams[0]!.retry).toEqual(inputs.upstreams[0]!.retry);
  });

  test('given ones, compiled for the attempt loop', () => {
    const yaml = [
      'upstreams:',
      '  default:',
      '    url: "http://a/v1"',
      '    retry: { attempts: 3, backoff: { base_ms: 50 }, conditions: [headers_timeout, reset, 500] }',
      '    outlier: { consecutive_failures: 0 }',
      'retry_budget_ms: 9000',
    ].join('\n');
    const inputs = toInputs(parseConfigText(yaml, 'c'), noSecrets);
    const snapshot = buildSnapshot({ file: inputs, kube: null, namespace: 'ns', version: 1 });
    const upstream = snapshot.defaultUpstream;
    expect(upstream.retry).toEqual({ attempts: 3, backoffBaseMs: 50, backoffMaxMs: 2000, conditions: ['headers_timeout', 'reset', 500] });
    expect(upstream.retryOn).toEqual({ connectFailure: false, headersTimeout: true, reset: true, statuses: new Set([500]) });
    expect(upstream.outlier.consecutiveFailures).toBe(0);
    expect(snapshot.settings.retryBudgetMs).toBe(9000);
  });

  test('route targets keep their priority (0 when unset)', () => {
    const inputs = toInputs(
      parseConfigText('api: { url: "http://a/v1" }\nroutes:\n  - { model: m, targets: [{ model: x }, { model: y, priority: 3 }] }\n', 'c'),
      noSecrets,
    );
    expect(inputs.routes[0]!.targets.map((t) => t.priority)).toEqual([0, 3]);
  });
});

function fileInputs(extra: string = '') {
  return toInputs(
    parseConfigText(
      `upstreams:\n  default: { url: "http://a/v1", api_key: up }\n  other: { url: "http://b/v1" }\nmodel_redirects: { gpt-4: gpt-4o }\n${extra}`,
      'c',
    ),
    noSecrets,
  );
}

const route = (name: string, model: string, createdAt: number, extra: Partial<KubeRouteInput> = {}): KubeRouteInput => ({
  namespace: 'team-a',
  name,
  generation: 1,
  createdAt,
  model,
  targets: [{ model: `${model}-target` }],
  invalid: null,
  ...extra,
});

describe('snapshot', () => {
  test('Kubernetes routes win over file redirects; upstream auth is precomputed', () => {
    const snapshot = buildSnapshot({
      file: fileInputs(),
      kube: {
        routes: [route('r', 'gpt-4', 1, { targets: [{ model: 'from-kube', upstream: 'other' }] })],
        consumers: [],
        policies: [],
        upstreamKeys: new Map(),
      },
      namespace: 'team-a',
      version: 1,
    });
    const compiled = snapshot.routes.get('gpt-4')!;
    expect(compiled.source).toBe('ModelRoute team-a/r');
    expect(resolveModel(snapshot, FILE_KEY, 'gpt-4', 0).targets[0]!.upstream.name).toBe('other');
    expect(snapshot.defaultUpstream.authorization).toBe('Bearer up');
    expect(snapshot.upstreams.get('other')!.authorization).toBeNull();
  });

  test('conflicts: oldest wins, then namespace/name; unknown upstreams rejected', () => {
    const { routes, statuses } = resolveKubeRoutes(
      [
        route('young', 'm', 200),
        route('old', 'm', 100),
        route('b-tie', 'n', 50),
        route('a-tie', 'n', 50),
        route('bad', 'x', 1, { targets: [{ model: 'y', upstream: 'nowhere' }] }),
      ],
      new Map([['default', 1]]),
    );
    expect(routes.map((r) => r.spec.source).sort()).toEqual(['ModelRoute team-a/a-tie', 'ModelRoute team-a/old']);
    const byName = Object.fromEntries(statuses.map((s) => [s.name, s.reason]));
    expect(byName).toEqual({ young: 'Conflict', old: 'Accepted', 'b-tie': 'Conflict', 'a-tie': 'Accepted', bad: 'UnknownUpstream' });
  });

  test('a file route naming an unknown upstream is refused', () => {
    expect(() =>
      buildSnapshot({ file: fileInputs('routes:\n  - model: z\n    targets: [{ model: a, upstream: ghost }]\n'), kube: null, namespace: 'ns', version: 1 }),
    ).toThrow("unknown upstream 'ghost'");
  });

  test("every upstream's answers are cleaned of every configured secret: once each, longest first, none shorter than 8", () => {
    const file = toInputs(
      parseConfigText(
        [
          'upstreams:',
          '  default: { url: "http://a/v1", api_key: sk-default-0123 }',
          '  twin: { url: "http://b/v1", api_key: sk-default-0123 }',
          '  longer: { url: "http://c/v1", api_key: sk-default-0123-and-more }',
          '  vllm: { url: "http://d/v1", api_key: EMPTY }',
          '  from-secret: { url: "http://e/v1", api_key_secret: { name: keys, key: k } }',
          '  none: { url: "http://f/v1" }',
        ].join('\n'),
        'c',
      ),
      noSecrets,
    );
    const snapshot = buildSnapshot({
      file,
      kube: { routes: [], consumers: [], policies: [], upstreamKeys: new Map([['ns/keys/k', 'sk-from-a-kube-secret']]) },
      namespace: 'ns',
      version: 1,
    });
    const all = ['sk-default-0123-and-more', 'sk-from-a-kube-secret', 'sk-default-0123'];
    for (const upstream of snapshot.upstreams.values()) expect({ [upstream.name]: upstream.secrets }).toEqual({ [upstream.name]: all });
    expect(snapshot.upstreams.get('vllm')!.authorization).toBe('Bearer EMPTY');
    expect(redactableSecrets(['12345678', '1234567', '123456789', '12345678'])).toEqual(['123456789', '12345678']);
  });

  test('client keys are held only as digests', () => {
    const snapshot = buildSnapshot({ file: fileInputs('client_keys: [{ id: a, key: secret-key }]\n'), kube: null, namespace: 'ns', version: 1 });
    expect(snapshot.keys.get(keyDigest('secret-key'))).toEqual({ keyId: 'a', consumer: 'a', namespace: null, policy: null });
    expect(JSON.stringify([...snapshot.keys])).not.toContain('secret-key');
  });
});
