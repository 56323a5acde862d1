import fc from 'fast-check';
import type { KubeConsumerInput, KubePolicyInput } from '../../src/config/model.js';
import { clientKeyDigest, keyDigest } from '../../src/config/key-digest.js';
import { parseConfigText, toInputs, ConfigError } from '../../src/config/load-file.js';
import { buildSnapshot } from '../../src/config/snapshot.js';
import { resolveClientPolicies } from '../../src/policy/client-policies.js';
import { selectorMatches, type LabelSelector } from '../../src/policy/label-selector.js';
import { ALL_MODELS, modelAllowList } from '../../src/policy/model-allow-list.js';
import { NO_LIMITS } from '../../src/policy/types.js';

describe('model allow-list', () => {
  const list = modelAllowList(['gpt-4o-mini', 'gpt-4o*', 'text-embedding-*-small', '*/Llama-3*-Instruct', 'a*b*c']);
  const rows: [string, boolean][] = [
    ['gpt-4o-mini', true],
    ['gpt-4o', true],
    ['gpt-4o-2024-08-06', true],
    ['gpt-4', false],
    ['gpt-4.1', false],
    ['text-embedding-3-small', true],
    ['text-embedding-3-large', false],
    ['meta-llama/Llama-3.1-8B-Instruct', true],
    ['meta-llama/Llama-3.1-8B', false],
    ['abc', true],
    ['aXbYc', true],
    ['ab', false],
    ['acb', false],
    ['', false],
  ];
  test.each(rows)('%s -> %s', (model, allowed) => expect(list(model)).toBe(allowed));

  test("'*' allows everything, and is the no-allow-list test itself", () => {
    expect(modelAllowList(['gpt-4o', '*'])).toBe(ALL_MODELS);
    expect(ALL_MODELS()).toBe(true);
  });

  test('a glob part may not overlap the suffix (a*a needs two a)', () => {
    expect(modelAllowList(['a*a'])('a')).toBe(false);
    expect(modelAllowList(['a*a'])('aa')).toBe(true);
    expect(modelAllowList(['ab*b*ba'])('abba')).toBe(false);
    expect(modelAllowList(['ab*b*ba'])('abbba')).toBe(true);
  });

  test('agrees with a regular expression on random globs and names', () => {
    const alphabet = fc.constantFrom('a', 'b', '*');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 8 }), fc.array(fc.constantFrom('a', 'b'), { maxLength: 10 }), (glob, name) => {
        const pattern = glob.join('');
        if (pattern === '') return;
        const regex = new RegExp(`^${pattern.replaceAll('*', '.*')}$`, 's');
        expect(modelAllowList([pattern])(name.join(''))).toBe(regex.test(name.join('')));
      }),
      { numRuns: 2000 },
    );
  });

  test('a hostile name against many stars stays linear (no backtracking)', () => {
    const match = modelAllowList([`${'a*'.repeat(100)}b`]);
    const name = 'a'.repeat(200_000);
    const started = performance.now();
    expect(match(name)).toBe(false);
    expect(performance.now() - started).toBeLessThan(200);
  });
});

describe('label selector', () => {
  const selector = (matchLabels: Record<string, string>, matchExpressions: LabelSelector['matchExpressions'] = []): LabelSelector => ({
    matchLabels,
    matchExpressions,
  });
  const rows: [string, LabelSelector, Record<string, string>, boolean][] = [
    ['empty selects everything', selector({}), {}, true],
    ['matchLabels holds', selector({ tier: 'free' }), { tier: 'free', x: 'y' }, true],
    ['matchLabels differs', selector({ tier: 'free' }), { tier: 'paid' }, false],
    ['matchLabels missing', selector({ tier: 'free' }), {}, false],
    ['In', selector({}, [{ key: 't', operator: 'In', values: ['a', 'b'] }]), { t: 'b' }, true],
    ['In, other value', selector({}, [{ key: 't', operator: 'In', values: ['a'] }]), { t: 'b' }, false],
    ['In, no label', selector({}, [{ key: 't', operator: 'In', values: ['a'] }]), {}, false],
    ['NotIn, other value', selector({}, [{ key: 't', operator: 'NotIn', values: ['a'] }]), { t: 'b' }, true],
    ['NotIn, no label', selector({}, [{ key: 't', operator: 'NotIn', values: ['a'] }]), {}, true],
    ['NotIn, listed value', selector({}, [{ key: 't', operator: 'NotIn', values: ['a'] }]), { t: 'a' }, false],
    ['Exists', selector({}, [{ key: 't', operator: 'Exists', values: [] }]), { t: '' }, true],
    ['Exists, no label', selector({}, [{ key: 't', operator: 'Exists', values: [] }]), {}, false],
    ['DoesNotExist', selector({}, [{ key: 't', operator: 'DoesNotExist', values: [] }]), {}, true],
    ['DoesNotExist, label there', selector({}, [{ key: 't', operator: 'DoesNotExist', values: [] }]), { t: 'a' }, false],
    ['all must hold', selector({ a: '1' }, [{ key: 'b', operator: 'Exists', values: [] }]), { a: '1' }, false],
    ['an inherited property is no label', selector({ constructor: 'x' }), {}, false],
  ];
  test.each(rows)('%s', (_name, s, labels, matches) => expect(selectorMatches(s, labels)).toBe(matches));
});

describe('ClientPolicy selection and conflicts', () => {
  const consumer = (namespace: string, name: string, labels: Record<string, string> = {}): KubeConsumerInput => ({ namespace, name, labels, keys: [] });
  const policy = (
    name: string,
    createdAt: number,
    select: Partial<Pick<KubePolicyInput, 'secretNames' | 'selector'>>,
    extra: Partial<KubePolicyInput> = {},
  ): KubePolicyInput => ({
    namespace: 'team-a',
    name,
    generation: 1,
    createdAt,
    secretNames: null,
    selector: null,
    policy: { models: [name], limits: NO_LIMITS },
    invalid: null,
    ...select,
    ...extra,
  });
  const consumers = [
    consumer('team-a', 'keys', { tier: 'free' }),
    consumer('team-a', 'ci', { tier: 'paid' }),
    consumer('team-a', 'bots'),
    consumer('team-b', 'keys', { tier: 'free' }),
  ];

  test('by name and by selector, within the policy namespace only; the older policy wins a shared consumer', () => {
    const { byConsumer, statuses } = resolveClientPolicies(
      [
        policy('free', 10, { selector: { matchLabels: { tier: 'free' }, matchExpressions: [] } }),
        policy('ci', 5, { secretNames: ['ci'] }),
        // selects keys (taken by the older 'free') and bots: applies to neither
        policy('late', 20, { secretNames: ['keys', 'bots'] }),
        policy('broken', 1, { secretNames: ['bots'] }, { invalid: 'spec.models.0: must not contain control characters' }),
        policy('nothing', 2, { secretNames: ['absent'] }),
      ],
      consumers,
    );
    expect(Object.fromEntries([...byConsumer].map(([name, p]) => [name, p.source]))).toEqual({
      'team-a/keys': 'ClientPolicy team-a/free',
      'team-a/ci': 'ClientPolicy team-a/ci',
    });
    expect(Object.fromEntries(statuses.map((s) => [s.name, [s.reason, s.message]]))).toEqual({
      free: ['Accepted', 'governs 1 consumer: team-a/keys'],
      ci: ['Accepted', 'governs 1 consumer: team-a/ci'],
      late: ['Conflict', 'consumer team-a/keys is already governed by ClientPolicy team-a/free; the older policy applies'],
      broken: ['Invalid', 'spec.models.0: must not contain control characters'],
      nothing: ['Accepted', 'selects no client-key Secret yet'],
    });
    expect(byConsumer.get('team-a/keys')!.models('free')).toBe(true);
    expect(byConsumer.get('team-a/keys')!.models('ci')).toBe(false);
  });

  test('a tie in age is broken by name; deleting the winner hands the consumer to the other', () => {
    const a = policy('a', 1, { secretNames: ['keys'] });
    const b = policy('b', 1, { secretNames: ['keys'] });
    expect(resolveClientPolicies([b, a], consumers).byConsumer.get('team-a/keys')!.source).toBe('ClientPolicy team-a/a');
    expect(resolveClientPolicies([b], consumers).byConsumer.get('team-a/keys')!.source).toBe('ClientPolicy team-a/b');
  });

  test('an empty selector governs every client-key Secret of its namespace, and the message counts past five', () => {
    const many = Array.from({ length: 7 }, (_, i) => consumer('team-a', `k${i}`));
    const { statuses } = resolveClientPolicies([policy('all', 1, { selector: { matchLabels: {}, matchExpressions: [] } })], many);
    expect(statuses[0]!.message).toBe('governs 7 consumers: team-a/k0, team-a/k1, team-a/k2, team-a/k3, team-a/k4 and 2 more');
  });
});

describe('consumers of the config file', () => {
  const base = 'upstreams:\n  default: { url: "http://a/v1" }\n';
  const load = (yaml: string) => toInputs(parseConfigText(base + yaml, 'c'), (_field, inline) => inline ?? null);

  test('a consumers block: keys, policy models and limits (per key or per consumer)', () => {
    const inputs = load(
      [
        'consumers:',
        '  - name: team-a',
        '    keys: [{ id: a-1, key: sk-a-1 }, { id: a-2, key: sk-a-2 }]',
        '    policy:',
        '      models: [gpt-4o-mini, "gpt-4o*"]',
        '      limits:',
        '        requests_per_minute: { limit: 600, per: key }',
        '        tokens_per_minute: { limit: 100000, per: consumer }',
        '        concurrent_streams: 10',
      ].join('\n'),
    );
    expect(inputs.consumers).toEqual([
      {
        name: 'team-a',
        keys: [
          { id: 'a-1', digest: keyDigest('sk-a-1') },
          { id: 'a-2', digest: keyDigest('sk-a-2') },
        ],
        policy: {
          models: ['gpt-4o-mini', 'gpt-4o*'],
          limits: {
            requestsPerMinute: { limit: 600, scope: 'key' },
            tokensPerMinute: { limit: 100000, scope: 'consumer' },
            tokensPerDay: null,
            concurrentStreams: 10,
          },
        },
      },
    ]);
    const snapshot = buildSnapshot({ file: inputs, kube: null, namespace: 'ns', version: 1 });
    const principal = snapshot.keys.get(keyDigest('sk-a-2'))!;
    expect(principal).toMatchObject({ keyId: 'a-2', consumer: 'team-a', namespace: null, policy: { source: 'file' } });
    expect(principal.policy!.models('gpt-4o-2024-08-06')).toBe(true);
    expect(principal.policy!.models('gpt-4')).toBe(false);
    // both keys of one consumer share its policy object
    expect(snapshot.keys.get(keyDigest('sk-a-1'))!.policy).toBe(principal.policy);
  });

  test('client_keys: each id a consumer of its own; entries sharing an id (a rotation) are one consumer with two keys', () => {
    const snapshot = buildSnapshot({
      file: load('client_keys: [{ id: ci, key: old }, { id: ci, key: new }, { id: web, key: w }]\n'),
      kube: null,
      namespace: 'ns',
      version: 1,
    });
    expect(['old', 'new', 'w'].map((key) => snapshot.keys.get(keyDigest(key)))).toEqual([
      { keyId: 'ci', consumer: 'ci', namespace: null, policy: null },
      { keyId: 'ci', consumer: 'ci', namespace: null, policy: null },
      { keyId: 'web', consumer: 'web', namespace: null, policy: null },
    ]);
  });

  test('a key given as sha256:<hex> is that digest (any case); the plaintext never needs to be in the file', () => {
    const digest = keyDigest('sk-hashed');
    const inputs = load(`consumers:\n  - { name: h, keys: [{ id: k, key: "sha256:${digest.toUpperCase()}" }] }\nallowed_keys: ["sha256:${digest}"]\n`);
    expect([...inputs.clientKeys, ...inputs.consumers.flatMap((c) => c.keys)].map((k) => k.digest)).toEqual([digest, digest]);
    // anything else is a key, hashed as it is
    expect(clientKeyDigest('sha256:abc')).toBe(keyDigest('sha256:abc'));
    expect(clientKeyDigest(`sha256:${digest}0`)).toBe(keyDigest(`sha256:${digest}0`));
    expect(clientKeyDigest(`sha256:${'g'.repeat(64)}`)).toBe(keyDigest(`sha256:${'g'.repeat(64)}`));
  });

  test('a consumer without keys is allowed (emptying the list revokes them)', () => {
    expect(load('consumers: [{ name: idle, keys: [] }]\n').consumers).toEqual([{ name: 'idle', keys: [], policy: null }]);
  });

  test.each([
    ['consumers: [{ name: a }, { name: a }]', "consumer 'a' is defined twice"],
    ['consumers: [{ name: a }]\nclient_keys: [{ id: a, key: k }]', "'a' is also a consumer's name"],
    ['consumers: [{ name: allowed-1 }]\nallowed_keys: [k]', "consumer name 'allowed-1' is taken by allowed_keys[0]"],
    ['consumers: [{ name: a, keys: [{ id: k, key: x }, { id: k, key: y }] }]', 'key ids must be unique within a consumer'],
    ['consumers: [{ name: "a b" }]', 'consumers[0].name'],
    ['consumers: [{ name: a, policy: { models: [] } }]', 'consumers[0].policy.models'],
    ['consumers: [{ name: a, policy: { models: ["a\\u0007"] } }]', 'consumers[0].policy.models[0]'],
    ['consumers: [{ name: a, policy: { limits: { requests_per_minute: { limit: 0, per: key } } } }]', 'consumers[0].policy.limits.requests_per_minute.limit'],
    ['consumers: [{ name: a, policy: { limits: { tokens_per_day: { limit: 5 } } } }]', 'consumers[0].policy.limits.tokens_per_day.per'],
    ['consumers: [{ name: a, policy: { limits: { tokens_per_minute: { limit: 5, per: team } } } }]', 'consumers[0].policy.limits.tokens_per_minute.per'],
    ['consumers: [{ name: a, policy: { limits: { concurrent_streams: 1.5 } } }]', 'consumers[0].policy.limits.concurrent_streams'],
    ['consumers: [{ name: a, policy: { budget: 1 } }]', 'budget'],
  ])('%s is refused naming %s', (yaml, message) => {
    expect(() => parseConfigText(base + yaml + '\n', 'c')).toThrow(ConfigError);
    expect(() => parseConfigText(base + yaml + '\n', 'c')).toThrow(message);
  });
});
