/**
 * Consumers on a real kube-apiserver: namespaces are tenants for ModelRoutes,
 * ClientPolicies restrict the client-key Secrets they select within a second
 * (and lift when deleted), statuses are written, and a Role with only the
 * documented permissions is enough.
 */
import { KubeConfig } from '@kubernetes/client-node';
import { request } from 'undici';
import { CLUSTER_START_TIMEOUT_MS, startCluster, type TestCluster } from './harness/cluster.js';
import { gatewayServiceAccountToken, modelSent, startKubeGateway } from './harness/gateway.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, type TestGateway } from '../support/gateway-harness.js';
import { waitFor } from '../support/wait.js';

/** The gateway's own namespace: its ModelRoutes are shared. */
const HOME = 'home';
const TEAM_A = 'team-a';
const TEAM_B = 'team-b';
const KEY_A = 'sk-team-a-0123456789';
const KEY_B = 'sk-team-b-0123456789';
const KEY_HOME = 'sk-home-0123456789';
/** Within a second, as the README says, with room for a busy two-core machine. */
const TAKES_EFFECT_MS = 2500;

let cluster: TestCluster;
let upstream: FakeUpstream;
let gw: TestGateway;

const kubernetes = { enabled: true, namespaces: [HOME, TEAM_A, TEAM_B], watch_timeout_seconds: 30 };
const api = (ns: string, plural: string) => `/apis/apiproxy.io/v1alpha1/namespaces/${ns}/${plural}`;

async function create(path: string, body: unknown): Promise<void> {
  const res = await cluster.request('POST', path, body);
  if (res.status !== 201) throw new Error(`POST ${path}: ${res.status} ${res.text}`);
}

function keySecret(ns: string, name: string, data: Record<string, string>, labels: Record<string, string> = {}) {
  return create(`/api/v1/namespaces/${ns}/secrets`, {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name, namespace: ns, labels: { 'apiproxy.io/client-keys': 'true', ...labels } },
    stringData: data,
  });
}

function modelRoute(ns: string, name: string, model: string, target: string) {
  return create(api(ns, 'modelroutes'), {
    apiVersion: 'apiproxy.io/v1alpha1',
    kind: 'ModelRoute',
    metadata: { name, namespace: ns },
    spec: { model, targets: [{ model: target }] },
  });
}

function clientPolicy(ns: string, name: string, spec: unknown) {
  return create(api(ns, 'clientpolicies'), { apiVersion: 'apiproxy.io/v1alpha1', kind: 'ClientPolicy', metadata: { name, namespace: ns }, spec });
}

async function accepted(
  ns: string,
  plural: string,
  name: string,
): Promise<{ status: string; reason: string; message: string; observedGeneration: number } | undefined> {
  const res = await cluster.request('GET', `${api(ns, plural)}/${name}`);
  return res.json?.status?.conditions?.find((c: { type: string }) => c.type === 'Accepted');
}

beforeAll(async () => {
  cluster = await startCluster({ crds: true });
  for (const ns of [HOME, TEAM_A, TEAM_B]) await cluster.ensureNamespace(ns);
  upstream = await startFakeUpstream();
  await keySecret(TEAM_A, 'client-keys', { alice: KEY_A }, { tier: 'free' });
  await keySecret(TEAM_B, 'client-keys', { bob: KEY_B }, { tier: 'free' });
  await keySecret(HOME, 'client-keys', { ops: KEY_HOME });
  gw = await startKubeGateway(cluster, upstream.url, HOME, { kubernetes, model_redirects: { 'file-model': 'from-file' } });
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  await gw?.stop();
  await upstream?.close();
  await cluster?.stop();
});

const send = (model: string, key: string): Promise<string> => modelSent(gw.url, model, key);

describe('namespaces are tenants', () => {
  test("a shared route reaches every key; a tenant's route only its own keys, within a second; conflicts are judged per namespace", async () => {
    await waitFor(async () => (await send('chat', KEY_A)) === 'chat', 5000, 'the Secrets synced');
    await modelRoute(HOME, 'chat', 'chat', 'shared-chat');
    await waitFor(async () => (await send('chat', KEY_A)) === 'shared-chat', TAKES_EFFECT_MS, 'the shared route');
    for (const key of [KEY_B, KEY_HOME, CLIENT_KEY]) expect(await send('chat', key)).toBe('shared-chat');

    // team-a routes chat its own way: team-a's keys see it; team-b's, the gateway namespace's and the file's do not
    await modelRoute(TEAM_A, 'chat', 'chat', 'team-a-chat');
    expect(await waitFor(async () => (await send('chat', KEY_A)) === 'team-a-chat', TAKES_EFFECT_MS, "team-a's route")).toBeLessThan(TAKES_EFFECT_MS);
    for (const key of [KEY_B, KEY_HOME, CLIENT_KEY]) expect(await send('chat', key)).toBe('shared-chat');
    // a model only team-a routes is not routed for anyone else
    await modelRoute(TEAM_A, 'private', 'team-a-only', 'team-a-private');
    await waitFor(async () => (await send('team-a-only', KEY_A)) === 'team-a-private', TAKES_EFFECT_MS);
    expect(await send('team-a-only', KEY_B)).toBe('team-a-only');
    expect(await send('team-a-only', CLIENT_KEY)).toBe('team-a-only');
    // the file's routes are shared too
    expect(await send('file-model', KEY_A)).toBe('from-file');

    // team-b routes chat too: no conflict with team-a (another scope); a second chat route in team-b is one
    await modelRoute(TEAM_B, 'chat', 'chat', 'team-b-chat');
    await waitFor(async () => (await send('chat', KEY_B)) === 'team-b-chat', TAKES_EFFECT_MS);
    await modelRoute(TEAM_B, 'chat-again', 'chat', 'team-b-second');
    await waitFor(async () => (await accepted(TEAM_B, 'modelroutes', 'chat-again'))?.reason === 'Conflict', 5000, 'the conflict in team-b');
    expect(await accepted(TEAM_B, 'modelroutes', 'chat-again')).toMatchObject({
      status: 'False',
      message: "model 'chat' is already routed by ModelRoute team-b/chat",
    });
    for (const [ns, name] of [
      [HOME, 'chat'],
      [TEAM_A, 'chat'],
      [TEAM_B, 'chat'],
    ] as const) {
      await waitFor(async () => (await accepted(ns, 'modelroutes', name))?.status === 'True', 5000, `${ns}/${name} accepted`);
    }
    expect(await send('chat', KEY_A)).toBe('team-a-chat');
    expect(await send('chat', KEY_B)).toBe('team-b-chat');

    // team-a's route goes: its keys fall back to the shared one
    await cluster.request('DELETE', `${api(TEAM_A, 'modelroutes')}/chat`);
    await waitFor(async () => (await send('chat', KEY_A)) === 'shared-chat', TAKES_EFFECT_MS);
    expect(await send('chat', KEY_B)).toBe('team-b-chat');
  });

  test('GET /v1/models shows each key the aliases it sees', async () => {
    const ids = async (key: string) => {
      const res = await request(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      return ((await res.body.json()) as { data: { id: string }[] }).data.map((m) => m.id).sort();
    };
    await waitFor(async () => (await ids(KEY_A)).includes('team-a-only'), TAKES_EFFECT_MS);
    expect(await ids(KEY_B)).not.toContain('team-a-only');
    expect(await ids(KEY_B)).toContain('chat');
  });
});

describe('ClientPolicy', () => {
  const chat = (key: string, model: string) => send(model, key);

  test('an allow-list applies to the Secret it names within a second, is reported Accepted, and lifts when deleted', async () => {
    expect(await chat(KEY_A, 'gpt-4')).toBe('gpt-4');
    await clientPolicy(TEAM_A, 'mini-only', { consumers: { secretNames: ['client-keys'] }, models: ['gpt-4o-mini*'] });
    const took = await waitFor(async () => (await chat(KEY_A, 'gpt-4')) === 'error:403:model_not_allowed', TAKES_EFFECT_MS, 'the allow-list');
    expect(took).toBeLessThan(TAKES_EFFECT_MS);
    expect(await chat(KEY_A, 'gpt-4o-mini-2024-07-18')).toBe('gpt-4o-mini-2024-07-18');
    // another namespace's Secret of the same name is another consumer
    expect(await chat(KEY_B, 'gpt-4')).toBe('gpt-4');
    await waitFor(async () => (await accepted(TEAM_A, 'clientpolicies', 'mini-only'))?.status === 'True', 5000, 'the policy status');
    expect(await accepted(TEAM_A, 'clientpolicies', 'mini-only')).toMatchObject({
      reason: 'Accepted',
      message: 'governs 1 consumer: team-a/client-keys',
      observedGeneration: 1,
    });

    // an edit applies as fast
    const patched = await cluster.request(
      'PATCH',
      `${api(TEAM_A, 'clientpolicies')}/mini-only`,
      { spec: { models: ['gpt-4'] } },
      { contentType: 'application/merge-patch+json' },
    );
    expect(patched.status).toBe(200);
    await waitFor(async () => (await chat(KEY_A, 'gpt-4')) === 'gpt-4', TAKES_EFFECT_MS, 'the edited allow-list');
    expect(await chat(KEY_A, 'gpt-4o-mini')).toBe('error:403:model_not_allowed');
    await waitFor(async () => (await accepted(TEAM_A, 'clientpolicies', 'mini-only'))?.observedGeneration === 2, 5000);

    expect((await cluster.request('DELETE', `${api(TEAM_A, 'clientpolicies')}/mini-only`)).status).toBe(200);
    await waitFor(async () => (await chat(KEY_A, 'gpt-4o-mini')) === 'gpt-4o-mini', TAKES_EFFECT_MS, 'the allow-list lifted');
  });

  test('a label selector picks Secrets by label; a second policy on the same Secret is a Conflict and applies to nobody', async () => {
    await clientPolicy(TEAM_B, 'free-tier', { consumers: { selector: { matchLabels: { tier: 'free' } } }, models: ['small-*'] });
    await waitFor(async () => (await chat(KEY_B, 'big')) === 'error:403:model_not_allowed', TAKES_EFFECT_MS, 'the selector');
    expect(await chat(KEY_B, 'small-1')).toBe('small-1');
    await clientPolicy(TEAM_B, 'generous', { consumers: { secretNames: ['client-keys'] }, models: ['*'] });
    await waitFor(async () => (await accepted(TEAM_B, 'clientpolicies', 'generous'))?.reason === 'Conflict', 5000, 'the conflict');
    expect(await accepted(TEAM_B, 'clientpolicies', 'generous')).toMatchObject({
      status: 'False',
      message: 'consumer team-b/client-keys is already governed by ClientPolicy team-b/free-tier; the older policy applies',
    });
    expect(await chat(KEY_B, 'big')).toBe('error:403:model_not_allowed');
    // the older one goes: the other takes over
    await cluster.request('DELETE', `${api(TEAM_B, 'clientpolicies')}/free-tier`);
    await waitFor(async () => (await chat(KEY_B, 'big')) === 'big', TAKES_EFFECT_MS, 'the other policy');
    await waitFor(async () => (await accepted(TEAM_B, 'clientpolicies', 'generous'))?.status === 'True', 5000);
    // relabelling the Secret out of a selector lifts a selector policy
    await cluster.request('DELETE', `${api(TEAM_B, 'clientpolicies')}/generous`);
    await clientPolicy(TEAM_B, 'paid-only', { consumers: { selector: { matchLabels: { tier: 'paid' } } }, models: ['nothing-*'] });
    await waitFor(async () => (await accepted(TEAM_B, 'clientpolicies', 'paid-only'))?.message === 'selects no client-key Secret yet', 5000);
    expect(await chat(KEY_B, 'big')).toBe('big');
    await cluster.request(
      'PATCH',
      `/api/v1/namespaces/${TEAM_B}/secrets/client-keys`,
      { metadata: { labels: { tier: 'paid' } } },
      { contentType: 'application/merge-patch+json' },
    );
    await waitFor(async () => (await chat(KEY_B, 'big')) === 'error:403:model_not_allowed', TAKES_EFFECT_MS, 'the relabelled Secret');
    await cluster.request('DELETE', `${api(TEAM_B, 'clientpolicies')}/paid-only`);
    await waitFor(async () => (await chat(KEY_B, 'big')) === 'big', TAKES_EFFECT_MS);
  });

  test("a ClientPolicy's limits apply: requestsPerMinute per consumer is one budget for the Secret's two keys (429 rate_limit_exceeded), lifted with the policy", async () => {
    const carol = 'sk-team-a-carol-0123456789';
    const dave = 'sk-team-a-dave-0123456789';
    /** Status and the request budget's limit / remaining of a chat request (429 when refused). */
    const budget = async (key: string): Promise<[number, string | null, string | null, string | null]> => {
      const res = await request(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
      });
      const body = (await res.body.json()) as { error?: { code: string } };
      const header = (name: string): string | null => (res.headers[name] as string | undefined) ?? null;
      return [res.statusCode, body.error?.code ?? null, header('x-ratelimit-limit-requests'), header('x-ratelimit-remaining-requests')];
    };
    await keySecret(TEAM_A, 'limited-keys', { carol, dave });
    await waitFor(async () => (await budget(carol))[0] === 200, TAKES_EFFECT_MS, 'the Secret');
    await clientPolicy(TEAM_A, 'two-a-minute', { consumers: { secretNames: ['limited-keys'] }, limits: { requestsPerMinute: { limit: 2, per: 'consumer' } } });
    // 2 a minute refill one every 30 s: the test never sees a refill. The request that sees the policy first takes one.
    let first: Awaited<ReturnType<typeof budget>> | null = null;
    await waitFor(async () => (first = await budget(carol))[2] !== null, TAKES_EFFECT_MS, 'the limits');
    expect(first).toEqual([200, null, '2', '1']);
    expect(await budget(dave)).toEqual([200, null, '2', '0']);
    expect(await budget(carol)).toEqual([429, 'rate_limit_exceeded', '2', '0']);
    expect(await budget(dave)).toEqual([429, 'rate_limit_exceeded', '2', '0']);
    // team-a's other Secret is another consumer, without limits
    expect((await budget(KEY_A)).slice(0, 3)).toEqual([200, null, null]);
    await waitFor(async () => (await accepted(TEAM_A, 'clientpolicies', 'two-a-minute'))?.message === 'governs 1 consumer: team-a/limited-keys', 5000);

    expect((await cluster.request('DELETE', `${api(TEAM_A, 'clientpolicies')}/two-a-minute`)).status).toBe(200);
    await waitFor(async () => (await budget(carol))[0] === 200, TAKES_EFFECT_MS, 'the limits lifted');
    expect(await budget(dave)).toEqual([200, null, null, null]);
  });

  test('a hashed key in a Secret authenticates', async () => {
    const { createHash } = await import('node:crypto');
    const key = 'sk-team-a-hashed-0123456789';
    await keySecret(TEAM_A, 'hashed-keys', { carol: `sha256:${createHash('sha256').update(key).digest('hex')}` });
    await waitFor(async () => (await chat(key, 'm')) === 'm', TAKES_EFFECT_MS, 'the hashed key');
  });

  test('a Role with only the documented permissions (leases in the gateway namespace, the rest where it watches) is enough', async () => {
    const ns = 'solo';
    await cluster.ensureNamespace(ns);
    const token = await gatewayServiceAccountToken(cluster, ns, 'api-proxy');
    const kc = new KubeConfig();
    kc.loadFromFile(cluster.writeKubeconfig(token, ns));
    await keySecret(ns, 'client-keys', { solo: 'sk-solo-0123456789' });
    const limited = await startKubeGateway(cluster, upstream.url, ns, {}, kc);
    try {
      await clientPolicy(ns, 'solo', { consumers: { secretNames: ['client-keys'] }, models: ['solo-*'] });
      await waitFor(async () => (await modelSent(limited.url, 'other', 'sk-solo-0123456789')) === 'error:403:model_not_allowed', 5000, 'the policy');
      await waitFor(async () => (await accepted(ns, 'clientpolicies', 'solo'))?.status === 'True', 5000, 'its status');
      const lease = await cluster.request('GET', `/apis/coordination.k8s.io/v1/namespaces/${ns}/leases/api-proxy`);
      expect(lease.status).toBe(200);
      expect(limited.logs.lines.join('\n')).not.toMatch(/forbidden/i);
    } finally {
      await limited.stop();
    }
  });
});

// Last: it deletes the ClientPolicy CRD (and with it every ClientPolicy) before putting it back.
test('without the ClientPolicy CRD (an upgrade that did not apply crds/) a gateway gets ready and serves; policies arrive with the CRD', async () => {
  const crd = '/apis/apiextensions.k8s.io/v1/customresourcedefinitions/clientpolicies.apiproxy.io';
  expect((await cluster.request('DELETE', crd)).status).toBe(200);
  await waitFor(async () => (await cluster.request('GET', api(HOME, 'clientpolicies'))).status === 404, 30_000, 'the CRD gone');
  const ns = 'no-crd';
  const key = 'sk-no-crd-0123456789';
  await cluster.ensureNamespace(ns);
  await keySecret(ns, 'client-keys', { k: key });
  const fresh = await startKubeGateway(cluster, upstream.url, ns);
  try {
    expect(await modelSent(fresh.url, 'any-model', key)).toBe('any-model');
    await cluster.applyCrds();
    await clientPolicy(ns, 'late', { consumers: { secretNames: ['client-keys'] }, models: ['x-*'] });
    // the policy watch is retried with its backoff (at most 10 s) once the CRD exists
    await waitFor(async () => (await modelSent(fresh.url, 'any-model', key)) === 'error:403:model_not_allowed', 20_000, 'the policy once the CRD is back');
  } finally {
    await fresh.stop();
  }
}, 90_000);
