/**
 * An https upstream signed by a private CA (as in-cluster inference servers
 * often are): trusted through `tls.ca_file`, refused without it (502), and
 * reachable with `insecure_skip_verify` for trials; a certificate for another
 * name (`tls.servername`), client certificates (mTLS) from watched files, and
 * TLS session resumption counted on the upstream.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { makeTestCertificates, type TestCertificates } from '../support/real/index.js';
import { sleep, waitFor } from '../support/wait.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY, startTestGateway, UPSTREAM_KEY } from '../support/gateway-harness.js';

let dir: string;
let upstream: FakeUpstream;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-tls-'));
  const certificates = makeTestCertificates(dir, { serverNames: ['IP:127.0.0.1'] });
  upstream = await startFakeUpstream({ tls: { key: certificates.key, cert: certificates.cert } });
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

describe('servername, client certificates, session resumption', () => {
  let tlsDir: string;
  let certs: TestCertificates;
  /** A CA the upstream does not trust, with a client certificate of its own. */
  let stranger: TestCertificates;
  let named: TestCertificates;
  const servers: Server[] = [];

  beforeAll(() => {
    tlsDir = mkdtempSync(join(tmpdir(), 'api-proxy-tls-more-'));
    for (const sub of ['a', 'b', 'c']) mkdirSync(join(tlsDir, sub));
    certs = makeTestCertificates(join(tlsDir, 'a'), { client: true });
    stranger = makeTestCertificates(join(tlsDir, 'b'), { client: true });
    named = makeTestCertificates(join(tlsDir, 'c'), { serverNames: ['DNS:upstream.test'] });
  });
  afterAll(() => rmSync(tlsDir, { recursive: true, force: true }));
  afterEach(async () => {
    for (const server of servers.splice(0)) await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  /** An https upstream answering a chat completion that names the client certificate's CN; `resumed` per connection. */
  async function upstreamWith(options: ServerOptions, closeEach = false): Promise<{ url: string; resumed: boolean[] }> {
    const server = createHttpsServer(options, (req, res) => {
      req.resume();
      req.on('end', () => {
        const peer = (req.socket as TLSSocket).getPeerCertificate();
        const body = JSON.stringify({ id: 'x', object: 'chat.completion', model: 'm', client: peer.subject?.CN ?? null });
        res.writeHead(200, { 'content-type': 'application/json', ...(closeEach ? { connection: 'close' } : {}) });
        res.end(body);
      });
    });
    const resumed: boolean[] = [];
    server.on('secureConnection', (socket: TLSSocket) => resumed.push(socket.isSessionReused()));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    servers.push(server);
    return { url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, resumed };
  }

  const withTls = (url: string, tls: Record<string, unknown>): Record<string, unknown> =>
    baseConfig(url, { upstreams: { default: { url: `${url}/v1`, api_key: UPSTREAM_KEY, tls } } });

  test('tls.servername: a certificate for another name than the URL host is verified against it', async () => {
    const upstream = await upstreamWith({ key: named.key, cert: named.cert });
    const without = await startTestGateway(withTls(upstream.url, { ca_file: named.caFile }));
    const withName = await startTestGateway(withTls(upstream.url, { ca_file: named.caFile, servername: 'upstream.test' }));
    try {
      expect((await chat(without.url)).body['error'].code).toBe('upstream_tls');
      expect((await chat(withName.url)).status).toBe(200);
    } finally {
      await without.stop();
      await withName.stop();
    }
  });

  test('mTLS from files: the upstream sees the certificate; the files are watched (a wrong one, then the right one)', async () => {
    const upstream = await upstreamWith({ key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true, rejectUnauthorized: true });
    const certFile = join(tlsDir, 'client.pem');
    const keyFile = join(tlsDir, 'client.key');
    writeFileSync(certFile, stranger.client!.cert);
    writeFileSync(keyFile, stranger.client!.key);
    const gw = await startTestGateway(withTls(upstream.url, { ca_file: certs.caFile, client_cert_file: certFile, client_key_file: keyFile }));
    try {
      const refused = await chat(gw.url);
      expect(refused.status).toBe(502);
      // TLS 1.3 checks the client's certificate after the client's side of the handshake: the refusal reaches the
      // gateway as an alert or as a closed connection.
      expect(['upstream_tls', 'upstream_reset']).toContain(refused.body['error'].code);
      await sleep(1_500); // past the file source's first poll, which re-reads every file once, watched or not
      // Key first: the half-rotated pair is refused at load (the last good config stays), then the certificate.
      writeFileSync(keyFile, certs.client!.key);
      await waitFor(
        () => gw.logs.lines.some((line) => line.includes('config rejected') && line.includes('client_cert_file')),
        5000,
        'the mismatched pair refused at load',
      );
      expect(gw.logs.entries.find((entry) => entry['msg'] === 'config rejected; keeping the last good config')!['err']).toMatchObject({
        message: expect.stringContaining('the client key is not the certificate'),
      });
      expect((await chat(gw.url)).status).toBe(502);
      writeFileSync(certFile, certs.client!.cert);
      await waitFor(async () => (await chat(gw.url)).status === 200, 5000, 'the new client certificate in use');
      expect((await chat(gw.url)).body['client']).toBe('api-proxy test client');
    } finally {
      await gw.stop();
    }
  });

  test('TLS session resumption: five requests on five connections cost one full handshake', async () => {
    const upstream = await upstreamWith({ key: certs.key, cert: certs.cert }, true);
    const gw = await startTestGateway(withTls(upstream.url, { ca_file: certs.caFile }));
    try {
      for (let i = 0; i < 5; i++) {
        expect((await chat(gw.url)).status).toBe(200);
        await waitFor(() => upstream.resumed.length === i + 1, 2000, 'the connection');
      }
      expect(upstream.resumed).toEqual([false, true, true, true, true]);
    } finally {
      await gw.stop();
    }
  });
});
