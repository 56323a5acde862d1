import { parseConfigText, toInputs, ConfigError } from '../../src/config/load-file.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { resolveModel } from '../../src/routing/resolve.js';
import { resolveKubeRoutes } from '../../src/routing/table.js';
import { keyDigest } from '../../src/config/key-digest.js';
import type { KubeRouteInput } from '../../src/config/model.js';

const noSecrets = (_field: string, inline: string | undefined) => inline ?? null;

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
  ])('%s is rejected naming %s', (text, field) => {
    expect(() => parseConfigText(text, 'c')).toThrow(ConfigError);
    expect(() => parseConfigText(text, 'c')).toThrow(field);
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
      kube: { routes: [route('r', 'gpt-4', 1, { targets: [{ model: 'from-kube', upstream: 'other' }] })], clientKeys: [], upstreamKeys: new Map() },
      namespace: 'ns',
      version: 1,
    });
    const compiled = snapshot.routes.get('gpt-4')!;
    expect(compiled.source).toBe('ModelRoute team-a/r');
    expect(resolveModel(snapshot, 'gpt-4', 0).targets[0]!.upstream.name).toBe('other');
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
    expect(routes.map((r) => r.source).sort()).toEqual(['ModelRoute team-a/a-tie', 'ModelRoute team-a/old']);
    const byName = Object.fromEntries(statuses.map((s) => [s.name, s.reason]));
    expect(byName).toEqual({ young: 'Conflict', old: 'Accepted', 'b-tie': 'Conflict', 'a-tie': 'Accepted', bad: 'UnknownUpstream' });
  });

  test('a file route naming an unknown upstream is refused', () => {
    expect(() =>
      buildSnapshot({ file: fileInputs('routes:\n  - model: z\n    targets: [{ model: a, upstream: ghost }]\n'), kube: null, namespace: 'ns', version: 1 }),
    ).toThrow("unknown upstream 'ghost'");
  });

  test('client keys are held only as digests', () => {
    const snapshot = buildSnapshot({ file: fileInputs('client_keys: [{ id: a, key: secret-key }]\n'), kube: null, namespace: 'ns', version: 1 });
    expect(snapshot.keys.get(keyDigest('secret-key'))).toBe('a');
    expect(JSON.stringify([...snapshot.keys])).not.toContain('secret-key');
  });
});
