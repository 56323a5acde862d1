/**
 * Outlier ejection through a real gateway: failures in a row take an upstream
 * out of rotation (requests go to the fallback without trying it), for a time
 * that doubles with each ejection in a row up to a cap; after it one request,
 * the probe, is let through, and its success readmits the upstream. Never
 * more than max_ejected_percent of the upstreams are out at once.
 */
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { CLIENT_KEY, startTestGateway, UPSTREAM_KEY, type TestGateway } from '../support/gateway-harness.js';
import { prometheus, series } from '../reliability/helpers.js';
import { sleep } from '../support/wait.js';

let a: FakeUpstream;
let b: FakeUpstream;
let gw: TestGateway;

const OUTLIER = { consecutive_failures: 2, ejection_ms: 400, max_ejection_ms: 1000, max_ejected_percent: 50 };

beforeAll(async () => {
  a = await startFakeUpstream({ name: 'a' });
  b = await startFakeUpstream({ name: 'b' });
});

afterAll(async () => {
  await a?.close();
  await b?.close();
});

beforeEach(async () => {
  a.script.length = 0;
  b.script.length = 0;
  const upstream = (url: string, key: string) => ({
    url: `${url}/v1`,
    api_key: key,
    retry: { attempts: 1 }, // each target once: a failure goes to the fallback
    outlier: OUTLIER,
  });
  gw = await startTestGateway({
    upstreams: { default: upstream(a.url, UPSTREAM_KEY), b: upstream(b.url, 'sk-upstream-b-0123456789') },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    routes: [
      { model: 'r', targets: [{ model: 'r-a' }, { model: 'r-b', upstream: 'b', priority: 1 }] },
      {
        model: 'rb',
        targets: [
          { model: 'rb-b', upstream: 'b' },
          { model: 'rb-a', priority: 1 },
        ],
      },
    ],
    shutdown: { drain_delay_ms: 0, timeout_ms: 2000 },
  });
});

afterEach(async () => {
  await gw.stop();
});

/** Who answered, with what status, in how many attempts. */
async function send(model = 'r'): Promise<{ upstream: string; attempts: string; status: number }> {
  const res = await request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model }),
  });
  await res.body.text();
  return { upstream: res.headers['x-fake-upstream'] as string, attempts: res.headers['x-apiproxy-attempts'] as string, status: res.statusCode };
}

/** A 200 from `upstream` after `attempts` attempts. */
const ok = (upstream: string, attempts: number) => ({ upstream, attempts: String(attempts), status: 200 });

async function ejected(upstream: string): Promise<number> {
  return series(await prometheus(gw.url), 'apiproxy_upstream_ejected', { upstream });
}

function logged(msg: string): Record<string, unknown>[] {
  return gw.logs.entries.filter((entry) => entry['msg'] === msg);
}

test('failures in a row eject the upstream; after the ejection time one probe goes through, and its success readmits it', async () => {
  expect(await ejected('default')).toBe(0); // the series is there from the start
  a.script.push({ 'x-fake-status': '503' }, { 'x-fake-status': '503' });
  expect(await send()).toEqual(ok('b', 2));
  expect(await ejected('default')).toBe(0); // one failure is not enough
  expect(await send()).toEqual(ok('b', 2));
  expect(await ejected('default')).toBe(1);
  expect(logged('upstream ejected after failures in a row')).toEqual([expect.objectContaining({ upstream: 'default', ejection_ms: 400, failures: 2 })]);

  const seenByA = a.requests.length;
  for (let i = 0; i < 3; i++) expect(await send()).toEqual(ok('b', 1)); // a is not tried at all
  expect(a.requests.length).toBe(seenByA);

  await sleep(450);
  // The probe answers slowly: the requests sent beside it must not follow it to a.
  a.script.push({ 'x-fake-headers-delay': '200' });
  const answers = await Promise.all([send(), send(), send(), send()]);
  expect(a.requests.length).toBe(seenByA + 1);
  expect(answers.map((answer) => answer.upstream).sort()).toEqual(['a', 'b', 'b', 'b']);
  expect(await ejected('default')).toBe(0);
  expect(logged('upstream readmitted')).toEqual([expect.objectContaining({ upstream: 'default' })]);
  expect(await send()).toEqual(ok('a', 1));
});

test('each ejection in a row lasts twice the one before, up to max_ejection_ms; a failed probe ejects again', async () => {
  a.script.push({ 'x-fake-status': '503' }, { 'x-fake-status': '503' });
  await send();
  await send(); // ejected for 400 ms
  await sleep(450);
  expect(await send()).toEqual(ok('a', 1)); // the probe: readmitted
  a.script.push({ 'x-fake-status': '503' }, { 'x-fake-status': '503' });
  await send();
  await send(); // ejected again soon after: 800 ms
  const seenByA = a.requests.length;
  await sleep(450);
  expect(await send()).toEqual(ok('b', 1)); // still out
  expect(a.requests.length).toBe(seenByA);
  await sleep(400);
  a.script.push({ 'x-fake-status': '503' });
  expect(await send()).toEqual(ok('b', 2)); // the probe failed: out for min(1600, 1000) ms
  expect(logged('upstream ejected after failures in a row').map((entry) => entry['ejection_ms'])).toEqual([400, 800, 1000]);
  await sleep(450);
  expect(await send()).toEqual(ok('b', 1));
  expect(await ejected('default')).toBe(1);
});

test('no more than max_ejected_percent of the upstreams is ejected at once', async () => {
  a.script.push({ 'x-fake-status': '503' }, { 'x-fake-status': '503' });
  await send();
  await send();
  expect(await ejected('default')).toBe(1);
  // b now fails as often (and a, its last resort, too), but one of two upstreams (50 %) is already out: b stays in.
  for (let i = 0; i < 3; i++) {
    b.script.push({ 'x-fake-status': '503' });
    a.script.push({ 'x-fake-status': '502' });
    expect(await send('rb')).toEqual({ upstream: 'a', attempts: '2', status: 502 }); // the last answer, as it came
  }
  expect(await ejected('b')).toBe(0);
  expect(await ejected('default')).toBe(1);
  expect(logged('upstream ejected after failures in a row')).toHaveLength(1);
});

test('a last-resort attempt at an ejected upstream that succeeds readmits it', async () => {
  a.script.push({ 'x-fake-status': '503' }, { 'x-fake-status': '503' });
  await send();
  await send();
  b.script.push({ 'x-fake-status': '503' });
  expect(await send('rb')).toEqual(ok('a', 2)); // b failed, and nothing but the ejected a was left
  expect(await ejected('default')).toBe(0);
});
