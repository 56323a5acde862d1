/**
 * An https upstream signed by a private CA (as in-cluster inference servers
 * often are): trusted through `tls.ca_file`, refused without it (502), and
 * reachable with `insecure_skip_verify` for trials.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, UPSTREAM_KEY } from '../support/gateway-harness.js';

let dir: string;
let upstream: FakeUpstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-tls-'));
  const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  writeFileSync(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=test-ca', '-keyout', 'ca.key', '-out', 'ca.pem');
  openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-keyout', 'server.key', '-out', 'server.csr');
  openssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-out',
    'server.pem',
    '-extfile',
    'san.ext',
  );
  upstream = await startFakeUpstream({ tls: { key: readFileSync(join(dir, 'server.key'), 'utf8'), cert: readFileSync(join(dir, 'server.pem'), 'utf8') } });
});
afterAll(async () => {
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

async function chat(url: string): Promise<{ status: number; body: Record<string, any> }> {
  const res = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-4"}',
  });
  return { status: res.statusCode, body: (await res.body.json()) as Record<string, any> };
}

test.each([
  ['the private CA from tls.ca_file', () => ({ ca_file: join(dir, 'ca.pem') }), 200],
  ['insecure_skip_verify', () => ({ insecure_skip_verify: true }), 200],
  ['no tls settings: the system CAs refuse it', () => undefined, 502],
])('https upstream with %s', async (_name, tls, status) => {
  const gw = await startTestGateway(baseConfig(upstream.url, { upstreams: { default: { url: `${upstream.url}/v1`, api_key: UPSTREAM_KEY, tls: tls() } } }));
  try {
    const res = await chat(gw.url);
    expect(res.status).toBe(status);
    if (status === 200) expect(res.body['choices'][0].message.content).toBe('hello from gpt-4o-2024-08-06');
    else expect(res.body['error'].code).toBe('upstream_tls');
  } finally {
    await gw.stop();
  }
});

test('an event stream from the https upstream arrives whole and in order (the relay reads TLS sockets too)', async () => {
  const gw = await startTestGateway(
    baseConfig(upstream.url, { upstreams: { default: { url: `${upstream.url}/v1`, api_key: UPSTREAM_KEY, tls: { ca_file: join(dir, 'ca.pem') } } } }),
  );
  try {
    const res = await request(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', 'x-fake-chunks': '200', 'x-fake-interval': '0' },
      body: '{"model":"gpt-4","stream":true}',
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    const events = (await res.body.text()).split('\n\n').filter((event) => event !== '');
    expect(events).toHaveLength(201);
    expect(events.at(-1)).toBe('data: [DONE]');
    const contents = events
      .slice(0, -1)
      .map((event) => (JSON.parse(event.slice('data: '.length)) as { choices: { delta: { content: string } }[] }).choices[0]!.delta.content);
    expect(contents).toEqual(Array.from({ length: 200 }, (_, i) => `tok${i} `));
  } finally {
    await gw.stop();
  }
});
