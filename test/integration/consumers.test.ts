/**
 * Consumers and their allow-lists from the config file, through the gateway
 * with the openai SDK as the client: 403 model_not_allowed for another model
 * (before any upstream is asked), GET /v1/models lists only what the key may
 * use, hashed keys authenticate, logs and metrics name the consumer, and a
 * reload that drops the policy lifts it.
 */
import OpenAI, { PermissionDeniedError, toFile } from 'openai';
import { request } from 'undici';
import { keyDigest } from '../../src/config/key-digest.js';
import type { FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, startGatewayWithUpstream, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

const LIMITED_KEY = 'sk-limited-0123456789';
const HASHED_KEY = 'sk-hashed-only-its-digest-is-written';
const FREE_KEY = 'sk-free-0123456789';
const NARROW_KEY = 'sk-narrow-0123456789';

let upstream: FakeUpstream;
let gw: TestGateway;
let stop: () => Promise<void>;

function config(url: string, models: string[] | null): Record<string, unknown> {
  return baseConfig(url, {
    model_redirects: { 'gpt-4': 'gpt-4o-2024-08-06', 'team-alias': 'routed-target', 'other-alias': 'x' },
    consumers: [
      {
        name: 'analysts',
        keys: [
          { id: 'plain', key: LIMITED_KEY },
          { id: 'hashed', key: `sha256:${keyDigest(HASHED_KEY)}` },
        ],
        policy: models === null ? { limits: { concurrent_streams: 5 } } : { models, limits: { requests_per_minute: { limit: 600, per: 'key' } } },
      },
      { name: 'free', keys: [{ id: 'free-1', key: FREE_KEY }] },
      { name: 'narrow', keys: [{ id: 'n', key: NARROW_KEY }], policy: { models: ['team-alias', 'gpt-4o-mini'] } },
    ],
  });
}

beforeAll(async () => ({ upstream, gw, stop } = await startGatewayWithUpstream((url) => config(url, ['gpt-4o-mini', 'fake-*', 'team-alias']))));
afterAll(() => stop());

const sdk = (apiKey: string) => new OpenAI({ apiKey, baseURL: `${gw.url}/v1`, maxRetries: 0 });

/** The model the upstream was sent: answers carry the requested one (answer_model: requested), the header the sent one. */
async function modelSent(client: OpenAI, model: string): Promise<string> {
  const { data, response } = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'hi' }] }).withResponse();
  return response.headers.get('x-apiproxy-upstream-model') ?? data.model;
}

test('a model the allow-list names (exactly, by glob, or an alias) goes through; another is 403 model_not_allowed and reaches no upstream', async () => {
  const client = sdk(LIMITED_KEY);
  expect(await modelSent(client, 'gpt-4o-mini')).toBe('gpt-4o-mini');
  expect(await modelSent(client, 'fake-model-2')).toBe('fake-model-2');
  // judged on the name the client sent, before the route renames it
  expect(await modelSent(client, 'team-alias')).toBe('routed-target');

  const before = upstream.requests.length;
  const refused = await client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] }).catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(PermissionDeniedError);
  const error = refused as PermissionDeniedError;
  expect(error.status).toBe(403);
  expect(error.code).toBe('model_not_allowed');
  expect(error.param).toBe('model');
  expect(error.message).toContain("This key may not use the model 'gpt-4'.");
  // embeddings and streams are judged the same way
  await expect(client.embeddings.create({ model: 'text-embedding-3-small', input: 'a' })).rejects.toBeInstanceOf(PermissionDeniedError);
  await expect(client.chat.completions.create({ model: 'gpt-4', stream: true, messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(
    PermissionDeniedError,
  );
  // and forms by their model field, wherever it sits in the form (here after the file)
  const file = await toFile(Buffer.alloc(64 * 1024, 1), 'speech.wav', { type: 'audio/wav' });
  await expect(client.audio.transcriptions.create({ file, model: 'whisper-1' })).rejects.toMatchObject({ status: 403, code: 'model_not_allowed' });
  expect(upstream.requests.length).toBe(before);
});

test('a key of a consumer without a policy may use any model', async () => {
  expect(await modelSent(sdk(FREE_KEY), 'gpt-4')).toBe('gpt-4o-2024-08-06');
});

test('a key written as sha256:<hex> authenticates with the key itself, and shares its consumer policy', async () => {
  const client = sdk(HASHED_KEY);
  expect(await modelSent(client, 'gpt-4o-mini')).toBe('gpt-4o-mini');
  await expect(client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] })).rejects.toBeInstanceOf(PermissionDeniedError);
  // the digest itself is not a key
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer sha256:${keyDigest(HASHED_KEY)}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-4o-mini"}',
  });
  expect(res.statusCode).toBe(401);
  await res.body.dump();
});

test("GET /v1/models lists only what the key may use: the upstream's allowed models and the allowed aliases", async () => {
  const ids = async (key: string) => {
    const list: string[] = [];
    for await (const model of sdk(key).models.list()) list.push(model.id);
    return list;
  };
  expect(await ids(LIMITED_KEY)).toEqual(['fake-model', 'team-alias']);
  // the upstream's own entries are filtered too (it lists fake-model only)
  expect(await ids(NARROW_KEY)).toEqual(['team-alias']);
  expect(await ids(FREE_KEY)).toEqual(['fake-model', 'gpt-4', 'team-alias', 'other-alias']);
});

test('GET /v1/models/<id>: an allowed alias is answered, a model outside the list is 403', async () => {
  const client = sdk(LIMITED_KEY);
  expect((await client.models.retrieve('team-alias')).owned_by).toBe('api-proxy');
  await expect(client.models.retrieve('gpt-4')).rejects.toBeInstanceOf(PermissionDeniedError);
  await expect(client.models.retrieve('other-model')).rejects.toBeInstanceOf(PermissionDeniedError);
  expect((await sdk(FREE_KEY).models.retrieve('gpt-4')).owned_by).toBe('api-proxy');
});

test('the access line and the key metric name the consumer', async () => {
  await sdk(LIMITED_KEY).chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] });
  await sdk(LIMITED_KEY)
    .chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] })
    .catch(() => undefined);
  await waitFor(() => gw.logs.entries.some((e) => e['msg'] === 'request' && e['error'] === 'model_not_allowed'));
  const refused = gw.logs.entries.filter((e) => e['msg'] === 'request' && e['error'] === 'model_not_allowed').at(-1)!;
  expect(refused).toMatchObject({ key_id: 'plain', consumer: 'analysts', model: 'gpt-4', status: 403, upstream: null });
  const res = await request(`${gw.url}/metrics`, { headers: { accept: 'text/plain' } });
  const text = await res.body.text();
  expect(text).toMatch(/^apiproxy_key_requests_total\{consumer="analysts",key_id="plain",class="2xx"\} [1-9]\d*$/m);
  expect(text).toMatch(/^apiproxy_key_requests_total\{consumer="analysts",key_id="plain",class="4xx"\} [1-9]\d*$/m);
});

test('a reload that drops the allow-list lifts it at once; one that adds it back restores it', async () => {
  const client = sdk(LIMITED_KEY);
  gw.writeConfig(config(upstream.url, null));
  await waitFor(
    async () =>
      await client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] }).then(
        () => true,
        () => false,
      ),
    3000,
  );
  gw.writeConfig(config(upstream.url, ['gpt-4o-mini']));
  await waitFor(
    async () =>
      await client.chat.completions.create({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] }).then(
        () => false,
        () => true,
      ),
    3000,
  );
});
