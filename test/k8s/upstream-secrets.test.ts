/**
 * Transport credentials held in Secrets on a real kube-apiserver, watched like
 * upstream keys: a client certificate (kubernetes.io/tls) for an upstream that
 * requires one (mTLS), and an egress proxy's password (a real squid), each
 * used at once and rotated live.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { CLUSTER_START_TIMEOUT_MS, startCluster, type TestCluster } from './harness/cluster.js';
import { startKubeGateway } from './harness/gateway.js';
import { CLIENT_KEY } from '../support/gateway-harness.js';
import { makeTestCertificates, startSquid, type SquidHandle, type TestCertificates } from '../support/real/index.js';
import { waitFor } from '../support/wait.js';

const NS = 'transport';
let cluster: TestCluster;
let dir: string;
let certs: TestCertificates;
/** Another CA's client certificate: the upstream does not trust it. */
let stranger: TestCertificates;
let upstream: Server;
let upstreamUrl: string;
let squid: SquidHandle;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-k8s-transport-'));
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  certs = makeTestCertificates(join(dir, 'a'), { client: true });
  stranger = makeTestCertificates(join(dir, 'b'), { client: true });
  // An upstream that requires a client certificate from its CA and names it in the answer.
  upstream = createHttpsServer({ key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'chat.completion', model: 'm', client: (req.socket as TLSSocket).getPeerCertificate().subject?.CN ?? null }));
    });
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamUrl = `https://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  squid = await startSquid({ users: { gateway: 'first-proxy-password' } });
  cluster = await startCluster({ crds: true });
  await cluster.ensureNamespace(NS);
}, CLUSTER_START_TIMEOUT_MS);

afterAll(async () => {
  await cluster?.stop();
  await squid?.stop();
  await new Promise<void>((resolve) => upstream?.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

async function chat(url: string): Promise<{ status: number; body: { client?: string; error?: { code: string } } }> {
  const res = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: '{"model":"m"}',
  });
  return { status: res.statusCode, body: (await res.body.json()) as { client?: string; error?: { code: string } } };
}

function secret(name: string, type: string, data: Record<string, string>): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    type,
    metadata: { name, namespace: NS },
    data: Object.fromEntries(Object.entries(data).map(([key, value]) => [key, Buffer.from(value).toString('base64')])),
  };
}

test('a client certificate from a kubernetes.io/tls Secret is used, and rotated live', async () => {
  const tls = (pair: { cert: string; key: string }) => secret('upstream-mtls', 'kubernetes.io/tls', { 'tls.crt': pair.cert, 'tls.key': pair.key });
  await cluster.request('POST', `/api/v1/namespaces/${NS}/secrets`, tls(certs.client!));
  const gw = await startKubeGateway(cluster, upstreamUrl, NS, {
    upstreams: { default: { url: `${upstreamUrl}/v1`, tls: { ca_file: certs.caFile, client_cert_secret: { name: 'upstream-mtls' } } } },
  });
  try {
    const first = await chat(gw.url);
    expect(first.status).toBe(200);
    expect(first.body.client).toBe('api-proxy test client');
    // A certificate the upstream does not trust: refused (TLS 1.3 reports it as an alert or a close).
    await cluster.request('PUT', `/api/v1/namespaces/${NS}/secrets/upstream-mtls`, tls(stranger.client!));
    expect(await waitFor(async () => (await chat(gw.url)).status === 502, 5000, 'the untrusted certificate in use')).toBeLessThan(1000);
    expect(['upstream_tls', 'upstream_reset']).toContain((await chat(gw.url)).body.error!.code);
    await cluster.request('PUT', `/api/v1/namespaces/${NS}/secrets/upstream-mtls`, tls(certs.client!));
    expect(await waitFor(async () => (await chat(gw.url)).status === 200, 5000, 'the trusted certificate again')).toBeLessThan(1000);
  } finally {
    await gw.stop();
  }
});

test("an egress proxy's password from a Secret is used, and rotated live", async () => {
  const password = (value: string) => secret('egress-proxy', 'Opaque', { password: value });
  await cluster.request('POST', `/api/v1/namespaces/${NS}/secrets`, password('first-proxy-password'));
  const gw = await startKubeGateway(cluster, upstreamUrl, NS, {
    upstreams: {
      default: {
        url: `${upstreamUrl}/v1`,
        tls: { ca_file: certs.caFile, client_cert_file: certs.client!.certFile, client_key_file: certs.client!.keyFile },
        proxy: { url: squid.url, username: 'gateway', password_secret: { name: 'egress-proxy', key: 'password' } },
      },
    },
  });
  try {
    expect((await chat(gw.url)).status).toBe(200);
    await cluster.request('PUT', `/api/v1/namespaces/${NS}/secrets/egress-proxy`, password('not-the-password'));
    expect(await waitFor(async () => (await chat(gw.url)).body.error?.code === 'upstream_proxy_auth', 5000, 'the wrong password in use')).toBeLessThan(1000);
    await cluster.request('PUT', `/api/v1/namespaces/${NS}/secrets/egress-proxy`, password('first-proxy-password'));
    expect(await waitFor(async () => (await chat(gw.url)).status === 200, 5000, 'the right password again')).toBeLessThan(1000);
    expect(gw.logs.lines.join('\n')).not.toContain('first-proxy-password');
  } finally {
    await gw.stop();
  }
  // Through squid, as its log says (it logs a tunnel when the tunnel closes: the gateway has stopped).
  await waitFor(() => squid.accessLog().some((line) => line.includes(`CONNECT ${new URL(upstreamUrl).host} gateway`)), 5000, 'the tunnel in the access log');
});
