/**
 * Property-based (fast-check): whatever the body, the gateway answers with a
 * well-formed response (a status; gateway errors in the OpenAI shape with
 * x-request-id) and never throws out of a handler (no internal_error 500, no
 * 'the gateway failed to handle the request' log line). Whatever the config file, loading it gives a
 * valid snapshot or a ConfigError/SnapshotError naming what is wrong, never
 * another exception.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { stringify as toYaml } from 'yaml';
import { ConfigError, loadConfigFile } from '../../src/config/load-file.js';
import { SnapshotError } from '../../src/config/snapshot.js';
import { SnapshotStore } from '../../src/config/store.js';
import { ERROR_CODES } from '../../src/errors/codes.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { expectIdleAndHealthy } from '../reliability/helpers.js';
import { modelMembers, render, topLevelObject } from '../support/json-grammar.js';

let upstream: FakeUpstream;
let gw: TestGateway;
let agent: Agent;

beforeAll(async () => {
  upstream = await startFakeUpstream();
  gw = await startTestGateway(
    baseConfig(upstream.url, {
      body_limit: '256KiB',
      routes: [
        {
          model: 'split',
          targets: [
            { model: 'a', weight: 1 },
            { model: 'b', weight: 1 },
          ],
        },
      ],
    }),
  );
  agent = new Agent({ connections: 8 });
});
afterAll(async () => {
  await agent.close();
  await gw.stop();
  await upstream.close();
});

const paths = fc.constantFrom('/v1/chat/completions', '/v1/embeddings', '/v1/responses', '/v1/completions', '/v1/x/y');

/** Sends one body and checks the answer is well-formed; returns the status. */
async function wellFormed(path: string, body: Uint8Array | string, contentType = 'application/json'): Promise<number> {
  const res = await request(`${gw.url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': contentType },
    body: typeof body === 'string' ? body : Buffer.from(body),
    dispatcher: agent,
  });
  const text = await res.body.text();
  expect(res.statusCode).toBeGreaterThanOrEqual(200);
  expect(res.statusCode).toBeLessThan(600);
  expect(res.statusCode).not.toBe(500);
  if (res.statusCode !== 200) {
    // a gateway error (the fake upstream only answers 200 unless steered by headers)
    const parsed = JSON.parse(text) as { error: { code: string; type: string; message: string; param: unknown } };
    expect(Object.keys(parsed)).toEqual(['error']);
    expect(Object.keys(ERROR_CODES)).toContain(parsed.error.code);
    expect(ERROR_CODES[parsed.error.code as keyof typeof ERROR_CODES].status).toBe(res.statusCode);
    expect(typeof parsed.error.message).toBe('string');
    expect(res.headers['x-request-id']).toEqual(expect.any(String));
  }
  return res.statusCode;
}

/** Whether `bytes` are a UTF-8 JSON object with a non-empty string model (decided without the gateway's code). */
function isRequestObject(bytes: Uint8Array): boolean {
  try {
    const value: unknown = JSON.parse(new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes));
    if (value === null || typeof value !== 'object' || Array.isArray(value) || !Object.hasOwn(value, 'model')) return false;
    const model = (value as { model: unknown }).model;
    return typeof model === 'string' && model !== '';
  } catch {
    return false;
  }
}

function noUnhandledErrors(): void {
  expect(gw.logs.lines.filter((line) => line.includes('the gateway failed to handle the request') || line.includes('internal_error'))).toEqual([]);
}

describe('HTTP request bodies', () => {
  test('arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(paths, fc.uint8Array({ maxLength: 2048 }), async (path, bytes) => {
        // No body is forwarded as it is; any other is a request only as a UTF-8 JSON object with a string model.
        expect(await wellFormed(path, bytes)).toBe(bytes.length === 0 || isRequestObject(bytes) ? 200 : 400);
      }),
      { numRuns: 200 },
    );
    noUnhandledErrors();
  });

  test('arbitrary JSON values (any text, including unicode and deep nesting)', async () => {
    await fc.assert(
      fc.asyncProperty(paths, fc.json({ depthSize: 'medium' }), async (path, json) => {
        const status = await wellFormed(path, json);
        const parsed = JSON.parse(json) as unknown;
        const isObjectWithModel =
          typeof parsed === 'object' &&
          parsed !== null &&
          !Array.isArray(parsed) &&
          typeof (parsed as { model?: unknown }).model === 'string' &&
          (parsed as { model: string }).model !== '' &&
          Object.hasOwn(parsed, 'model');
        expect(status).toBe(isObjectWithModel ? 200 : 400);
      }),
      { numRuns: 200 },
    );
    noUnhandledErrors();
  });

  test('arbitrary objects with a model: forwarded with only the model changed (or unchanged), every other byte kept', async () => {
    const model = fc.oneof(
      fc.constantFrom('gpt-4', 'split', 'unknown'),
      fc.string({ unit: 'grapheme', maxLength: 30 }).filter((s) => s !== ''),
    );
    await fc.assert(
      fc.asyncProperty(
        paths,
        model,
        fc.dictionary(fc.string({ maxLength: 10 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 6 }),
        fc.nat({ max: 6 }),
        fc.constantFrom('', ' ', '\n  '),
        async (path, name, rest, at, space) => {
          const entries = Object.entries(rest).filter(([key]) => key !== 'model' && key !== '__proto__');
          entries.splice(Math.min(at, entries.length), 0, ['model', name]);
          // The expected body is the same text with only the top-level model's value written anew
          // (built, not found with String.replace: a nested "model" key or a `$&` in the name would fool that).
          const serialize = (model: string): string =>
            '{' +
            space +
            entries.map(([key, value]) => `${JSON.stringify(key)}:${space}${JSON.stringify(key === 'model' ? model : value)}`).join(`,${space}`) +
            space +
            '}';
          const text = serialize(name);
          const before = upstream.requests.length;
          expect(await wellFormed(path, text)).toBe(200);
          const sent = upstream.requests[before]!.body.toString();
          const target = name === 'gpt-4' ? 'gpt-4o-2024-08-06' : name;
          if (name === 'split') {
            expect([serialize('a'), serialize('b')]).toContain(sent);
          } else {
            expect(sent).toBe(serialize(target));
          }
          expect(JSON.parse(sent)).toEqual({ ...JSON.parse(text), model: name === 'split' ? expect.stringMatching(/^[ab]$/) : target });
        },
      ),
      {
        numRuns: 200,
        // Found by a CI run: replacement patterns in the name, and a nested "model" key before the top-level one.
        examples: [
          ['/v1/chat/completions', '$&', {}, 0, ''],
          ['/v1/chat/completions', 'x', { a: { model: 'x' } }, 1, ' '],
        ],
      },
    );
    noUnhandledErrors();
    await expectIdleAndHealthy(gw.url);
  });
});

describe('request bodies spelled every way the JSON grammar allows', () => {
  test('the upstream reads the model the gateway routed on; two model keys are a 400 that reaches no upstream', async () => {
    await fc.assert(
      fc.asyncProperty(paths, topLevelObject, async (path, object) => {
        const text = render(object);
        const before = upstream.requests.length;
        const res = await request(`${gw.url}${path}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
          body: text,
          dispatcher: agent,
        });
        const answer = await res.body.text();
        const models = modelMembers(object);
        const model: unknown = (JSON.parse(text) as { model?: unknown }).model;
        if (models.length > 1 || typeof model !== 'string' || model === '') {
          expect({ status: res.statusCode, code: (JSON.parse(answer) as { error: { code: string } }).error.code }).toEqual({
            status: 400,
            code: models.length > 1 ? 'duplicate_model' : 'missing_model',
          });
          expect(upstream.requests.length).toBe(before);
          return;
        }
        expect(res.statusCode).toBe(200);
        const sent = upstream.requests[before]!.body.toString();
        const routed = (JSON.parse(sent) as { model: string }).model;
        if (model === 'gpt-4') expect(routed).toBe('gpt-4o-2024-08-06');
        else if (model === 'split') expect(routed).toMatch(/^[ab]$/);
        else expect(routed).toBe(model);
        // Untouched when the model is not redirected; else only the model value's bytes are new.
        expect(sent).toBe(routed === model ? text : render(object, { index: models[0]!, text: JSON.stringify(routed) }));
      }),
      { numRuns: 300 },
    );
    noUnhandledErrors();
  });
});

describe('config files', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'api-proxy-config-prop-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** Loads a config text like the gateway does; returns 'ok' or the error message (only ConfigError/SnapshotError allowed). */
  function load(text: string): string {
    const path = join(dir, 'config.yaml');
    writeFileSync(path, text);
    try {
      const loaded = loadConfigFile(path, {});
      new SnapshotStore('default').setFile(loaded.inputs);
      return 'ok';
    } catch (error) {
      if (!(error instanceof ConfigError) && !(error instanceof SnapshotError)) throw error;
      expect(error.message.length).toBeGreaterThan(0);
      return error.message;
    }
  }

  const fields = [
    'api',
    'allowed_keys',
    'model_redirects',
    'upstreams',
    'default_upstream',
    'client_keys',
    'routes',
    'unknown_models',
    'body_limit',
    'log_level',
    'access_log',
    'shutdown',
    'kubernetes',
  ];

  test('arbitrary text (YAML or not) loads or fails with a ConfigError', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (text) => {
        load(text);
      }),
      { numRuns: 300 },
    );
  });

  test('arbitrary values under the real field names load or fail with an error that names the field', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom(...fields), fc.jsonValue({ maxDepth: 3 }), { minKeys: 1, maxKeys: 4 }), fc.boolean(), (config, asYaml) => {
        const message = load(asYaml ? toYaml(config) : JSON.stringify(config));
        if (message !== 'ok' && message.includes('config.yaml: ') && !message.includes('not valid JSON or YAML')) {
          // a schema or snapshot error: it names one of the fields given (or the default upstream they lack)
          expect(fields.some((field) => message.includes(field)) || /upstream|route/.test(message)).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('well-typed configs with random upstreams, keys and routes: valid snapshots, or errors naming the unknown upstream', () => {
    const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}$/);
    fc.assert(
      fc.property(
        fc.uniqueArray(name, { minLength: 1, maxLength: 3 }),
        fc.array(
          fc.record({
            model: name,
            targets: fc.array(
              fc.record({ model: name, upstream: fc.option(name, { nil: undefined }), weight: fc.option(fc.nat({ max: 5 }), { nil: undefined }) }),
              { minLength: 1, maxLength: 3 },
            ),
          }),
          { maxLength: 4 },
        ),
        fc.uniqueArray(name, { maxLength: 3 }),
        (upstreams, routes, keyIds) => {
          const config = {
            upstreams: Object.fromEntries(upstreams.map((u) => [u, { url: `http://127.0.0.1:9/${u}` }])),
            default_upstream: upstreams[0],
            client_keys: keyIds.map((id) => ({ id, key: `k-${id}` })),
            routes,
          };
          const message = load(JSON.stringify(config));
          if (message !== 'ok') expect(message).toMatch(/routes|upstream|weight|target|model/);
        },
      ),
      { numRuns: 300 },
    );
  });
});
