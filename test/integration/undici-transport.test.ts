/**
 * UndiciTransport driven directly against real servers on loopback (node:http,
 * node:https with a throwaway CA, raw node:net ones that misbehave): the same
 * handler contract as the native client's (test/integration/h1-transport.test.ts),
 * and what only undici does here: TLS (trust, servername, client certificates,
 * session resumption). HTTP/2 and proxies are tested through the gateway
 * (http2-upstream.test.ts, egress-proxy.test.ts).
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer as createH2cServer } from 'node:http2';
import { createServer as createHttpsServer, type ServerOptions } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, type Writable } from 'node:stream';
import { fromUpstreamError } from '../../src/errors/upstream.js';
import type { UpstreamRequest } from '../../src/transport/types.js';
import type { UndiciConnection } from '../../src/transport/undici/dispatcher.js';
import { UndiciTransport } from '../../src/transport/undici/undici-transport.js';
import { makeTestCertificates, type TestCertificates } from '../support/real/index.js';
import { abortingOnStart, closeTransportHarness, OK, Recorder, startHttp, startRaw, track, type TestServer } from '../support/transport-harness.js';
import { freePort, sleep, waitFor } from '../support/wait.js';

const transports: UndiciTransport[] = [];

function makeTransport(origin: string, options: Partial<Omit<UndiciConnection, 'tls'>> & { tls?: Partial<UndiciConnection['tls']> } = {}): UndiciTransport {
  const { tls, ...rest } = options;
  const transport = new UndiciTransport({
    origin,
    connectTimeoutMs: 2000,
    keepAliveMs: 10_000,
    maxHeaderBytes: 64 * 1024,
    http2: 'auto',
    proxy: null,
    envProxy: null,
    ...rest,
    tls: { ca: null, rejectUnauthorized: true, servername: null, clientCert: null, ...tls },
  });
  transports.push(transport);
  return transport;
}

function req(path = '/', extra: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path, headers: {}, body: null, headersTimeoutMs: 2000, idleTimeoutMs: 2000, sendNow: false, ...extra };
}

async function send(transport: UndiciTransport, request: UpstreamRequest, recorder = new Recorder()): Promise<Recorder> {
  transport.dispatch(request, recorder);
  await recorder.done;
  return recorder;
}

/** The gateway error code a client would get for the recorded failure. */
const clientCode = (recorder: Recorder): string => fromUpstreamError(recorder.error).code;

afterEach(async () => {
  await Promise.all(transports.splice(0).map((transport) => transport.destroy()));
  await closeTransportHarness();
});

describe('the handler contract', () => {
  test('head, body and end in order; sequential requests share one kept-alive connection', async () => {
    const server = await startHttp((_request, res, seen) => {
      res.setHeader('x-seen', seen.url);
      res.end(`hello ${seen.url}`);
    });
    const transport = makeTransport(server.url);
    for (const path of ['/a', '/b', '/c']) {
      await sleep(0); // a request dispatched from within the previous one's end finds its connection still busy
      const rec = await send(transport, req(path));
      expect(rec.events).toEqual(['start', 'head', 'body', 'end']);
      expect(rec.status).toBe(200);
      expect(rec.headers['x-seen']).toBe(path);
      expect(rec.text).toBe(`hello ${path}`);
    }
    expect(server.accepted).toHaveLength(1);
  });

  test('a repeated response header arrives as an array', async () => {
    const server = await startRaw(({ socket }) => socket.write('HTTP/1.1 200 OK\r\nx-two: a\r\nx-two: b\r\ncontent-length: 0\r\n\r\n'));
    const rec = await send(makeTransport(server.url), req());
    expect(rec.headers['x-two']).toEqual(['a', 'b']);
  });

  test('a Buffer body and a streamed body (chunked, no content-length) arrive byte for byte', async () => {
    const server = await startHttp((_request, res, seen) => res.end(`${seen.headers['transfer-encoding'] ?? 'length'}:${seen.body.toString()}`));
    const transport = makeTransport(server.url);
    const buffered = await send(transport, req('/', { method: 'POST', headers: { 'content-length': '5' }, body: Buffer.from('whole') }));
    expect(buffered.text).toBe('length:whole');
    const streamed = await send(transport, req('/', { method: 'POST', body: Readable.from([Buffer.from('in '), Buffer.from('parts')]) }));
    expect(streamed.text).toBe('chunked:in parts');
  });

  test('a body stream that fails mid-upload fails the exchange with its own error', async () => {
    const server = await startHttp((_request, res) => res.end('never'));
    const failure = Object.assign(new Error('the client went away'), { code: 'CLIENT_GONE_TEST' });
    let sent = false;
    const body = new Readable({
      read() {
        if (sent) return;
        sent = true;
        this.push('part');
        setImmediate(() => this.destroy(failure));
      },
    });
    const rec = await send(makeTransport(server.url), req('/', { method: 'POST', body }));
    expect(rec.error).toBe(failure);
  });

  test('abort() from onStart: nothing is sent, the handler hears it at once', async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok')));
    const transport = makeTransport(server.url);
    const reason = new Error('already gone');
    const rec = new Recorder();
    const handler = abortingOnStart(rec, reason);
    transport.dispatch(req(), handler);
    expect(rec.error).toBe(reason);
    await sleep(100);
    expect(server.requests).toHaveLength(0);
  });

  test('abort() while the connection is still being made: the handler hears it at once; nothing is sent', async () => {
    // A server that accepts TCP but never finishes the TLS handshake keeps the request queued.
    const server = await startRaw(() => undefined);
    const transport = makeTransport(server.url.replace('http:', 'https:'));
    const rec = new Recorder();
    transport.dispatch(req(), rec);
    await waitFor(() => server.accepted.length === 1, 2000, 'the connection attempt');
    const reason = new Error('client left');
    rec.exchange!.abort(reason);
    expect(rec.error).toBe(reason);
    expect(rec.events).toEqual(['start', 'error']);
  });

  test.each(['waiting for the head', 'mid-body'])('abort() %s: onError with that error at once, the upstream sees the connection close', async (when) => {
    const server = await startRaw(({ socket }) => {
      if (when === 'mid-body') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome');
    });
    const transport = makeTransport(server.url);
    const rec = new Recorder();
    transport.dispatch(req('/held'), rec);
    if (when === 'mid-body') await waitFor(() => rec.payload === 4, 2000, 'the first body bytes');
    else await waitFor(() => server.requests.length === 1, 2000, 'the request reaches the server');
    const reason = new Error('caller gave up');
    rec.exchange!.abort(reason);
    expect(rec.error).toBe(reason);
    await server.accepted[0]!.closed;
  });

  test('pause() stops reading (the upstream blocks); resume() delivers the rest', async () => {
    const total = 16 * 1024 * 1024;
    let written = 0;
    const server = await startHttp((_request, res) => {
      res.writeHead(200, { 'content-length': total });
      writeWithBackpressure(res, total, 'y', (bytes) => (written += bytes));
    });
    const rec = new Recorder({
      keepBody: false,
      onHead: (recorder) => recorder.exchange!.pause(),
    });
    const transport = makeTransport(server.url);
    transport.dispatch(req(), rec);
    await rec.head;
    await sleep(300);
    const stalledAt = written;
    await sleep(300);
    expect(written).toBe(stalledAt); // socket buffers full: the upstream waits
    expect(written).toBeLessThan(total);
    rec.exchange!.resume();
    await rec.done;
    expect(rec.error).toBeNull();
    expect(rec.payload).toBe(total);
  });
});

describe('HTTP/2', () => {
  test('pause() holds an h2 stream back through flow control; resume() delivers the rest', async () => {
    const total = 16 * 1024 * 1024;
    let written = 0;
    const server = createH2cServer((_request, res) => {
      res.writeHead(200, { 'content-length': String(total) });
      writeWithBackpressure(res, total, 'z', (bytes) => (written += bytes));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const transport = makeTransport(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { http2: 'on' });
      const rec = new Recorder({ keepBody: false, onHead: (recorder) => recorder.exchange!.pause() });
      transport.dispatch(req(), rec);
      await rec.head;
      await sleep(300);
      const stalledAt = written;
      await sleep(300);
      expect(written).toBe(stalledAt);
      expect(written).toBeLessThan(4 * 1024 * 1024); // the stream's window and the socket's buffers, not the body
      rec.exchange!.resume();
      await rec.done;
      expect(rec.error).toBeNull();
      expect(rec.payload).toBe(total);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('timeouts and failures, as the client sees them', () => {
  test('no head within headersTimeoutMs: upstream_timeout (undici headers timeout)', async () => {
    const server = await startRaw(() => undefined);
    const rec = await send(makeTransport(server.url), req('/', { headersTimeoutMs: 200 }));
    expect(rec.code).toBe('UND_ERR_HEADERS_TIMEOUT');
    expect(clientCode(rec)).toBe('upstream_timeout');
  });

  test('a body silent for idleTimeoutMs: upstream_timeout; while paused it does not fire', async () => {
    const server = await startRaw(({ socket, head }) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfirst');
      if (head.includes('/paused')) setTimeout(() => socket.write('later'), 700);
    });
    const transport = makeTransport(server.url);
    const silent = await send(transport, req('/silent', { idleTimeoutMs: 250 }));
    expect(silent.code).toBe('UND_ERR_BODY_TIMEOUT');
    expect(clientCode(silent)).toBe('upstream_timeout');

    const paused = new Recorder({ onBody: (recorder) => recorder.payload === 5 && recorder.exchange!.pause() });
    transport.dispatch(req('/paused', { idleTimeoutMs: 250 }), paused);
    await waitFor(() => paused.payload === 5, 2000, 'the first bytes');
    await sleep(1_000); // four idle timeouts long, paused: the rest came meanwhile and waits
    expect(paused.error).toBeNull();
    paused.exchange!.resume();
    await paused.done;
    expect(paused.error).toBeNull();
    expect(paused.text).toBe('firstlater');
  });

  test('the upstream closes mid-body: upstream_reset', async () => {
    const server = await startRaw(({ socket }) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort'));
    const rec = await send(makeTransport(server.url), req());
    expect(rec.error).not.toBeNull();
    expect(clientCode(rec)).toBe('upstream_reset');
  });

  test('an invalid response: upstream_bad_response', async () => {
    const server = await startRaw(({ socket }) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n'));
    const rec = await send(makeTransport(server.url), req());
    expect(clientCode(rec)).toBe('upstream_bad_response');
  });

  test('connection refused: upstream_unreachable', async () => {
    const rec = await send(makeTransport(`http://127.0.0.1:${await freePort()}`), req());
    expect(rec.code).toBe('ECONNREFUSED');
    expect(clientCode(rec)).toBe('upstream_unreachable');
  });

  test('a header value with a line break is the gateway’s fault (internal_error), and nothing is sent', async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok')));
    const rec = await send(makeTransport(server.url), req('/', { headers: { authorization: 'Bearer key\r\nx-smuggled: 1' } }));
    expect(clientCode(rec)).toBe('internal_error');
    await sleep(100);
    expect(server.requests).toHaveLength(0);
  });

  test('destroy() fails what is in flight; later dispatches fail too', async () => {
    const server = await startRaw(() => undefined);
    const transport = makeTransport(server.url);
    const rec = new Recorder();
    transport.dispatch(req(), rec);
    await waitFor(() => server.requests.length === 1, 2000, 'the request reaches the server');
    await transport.destroy();
    await rec.done;
    expect(rec.error).not.toBeNull();
    expect((await send(transport, req())).error).not.toBeNull();
  });
});

describe('TLS', () => {
  let dir: string;
  let certs: TestCertificates;
  /** Signed by a CA of its own, for the name upstream.test only. */
  let named: TestCertificates;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'undici-transport-tls-'));
    mkdirSync(join(dir, 'a'));
    mkdirSync(join(dir, 'b'));
    certs = makeTestCertificates(join(dir, 'a'), { client: true });
    named = makeTestCertificates(join(dir, 'b'), { serverNames: ['DNS:upstream.test'] });
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  interface TlsServer extends TestServer {
    /** Per TLS connection: whether it resumed an earlier session (no full handshake). */
    resumed: boolean[];
  }

  async function startTls(options: ServerOptions, closeEach = false): Promise<TlsServer> {
    const server = createHttpsServer(options, (request, res) => {
      request.resume();
      request.on('end', () => {
        const peer = (request.socket as TLSSocket).getPeerCertificate();
        res.setHeader('x-client-cert', peer.subject?.CN ?? 'none');
        if (closeEach) res.setHeader('connection', 'close');
        res.end(`secure ${request.url}`);
      });
    });
    server.keepAliveTimeout = 30_000;
    const resumed: boolean[] = [];
    server.on('secureConnection', (socket: TLSSocket) => resumed.push(socket.isSessionReused()));
    return Object.assign(await track(server, 'secureConnection', 'https'), { resumed });
  }

  test('a certificate from an untrusted CA: upstream_tls, nothing sent', async () => {
    const server = await startTls({ key: certs.key, cert: certs.cert });
    const rec = await send(makeTransport(server.url), req());
    expect(clientCode(rec)).toBe('upstream_tls');
    expect(rec.events).toEqual(['start', 'error']);
  });

  test('trusted through the CA: requests work and share one connection; rejectUnauthorized false works without it', async () => {
    const server = await startTls({ key: certs.key, cert: certs.cert });
    const trusted = makeTransport(server.url, { tls: { ca: certs.ca } });
    for (const path of ['/a', '/b']) {
      await sleep(0);
      expect((await send(trusted, req(path))).text).toBe(`secure ${path}`);
    }
    expect(server.accepted).toHaveLength(1);
    const insecure = makeTransport(server.url, { tls: { rejectUnauthorized: false } });
    expect((await send(insecure, req('/x'))).text).toBe('secure /x');
  });

  test('servername: a certificate that names another host is verified against that name', async () => {
    const server = await startTls({ key: named.key, cert: named.cert });
    const byAddress = await send(makeTransport(server.url, { tls: { ca: named.ca } }), req());
    expect(byAddress.code).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
    expect(clientCode(byAddress)).toBe('upstream_tls');
    const byName = await send(makeTransport(server.url, { tls: { ca: named.ca, servername: 'upstream.test' } }), req('/named'));
    expect(byName.error).toBeNull();
    expect(byName.text).toBe('secure /named');
  });

  test('mTLS: an upstream that requires a client certificate refuses the gateway without one, accepts it with one', async () => {
    const server = await startTls({ key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true, rejectUnauthorized: true });
    const without = await send(makeTransport(server.url, { tls: { ca: certs.ca } }), req());
    expect(without.events).toEqual(['start', 'error']);
    // TLS 1.3 verifies the client's certificate after the client's side of the handshake is done: the refusal
    // (an alert, then a close) may reach undici as the alert or as the close.
    expect(['upstream_tls', 'upstream_reset']).toContain(clientCode(without));
    const withCert = await send(makeTransport(server.url, { tls: { ca: certs.ca, clientCert: certs.client! } }), req('/mtls'));
    expect(withCert.error).toBeNull();
    expect(withCert.headers['x-client-cert']).toBe('api-proxy test client');
  });

  test('TLS session resumption: of five connections, one full handshake; the others resume its session', async () => {
    // The upstream closes each connection after its answer: every request needs a new handshake.
    const server = await startTls({ key: certs.key, cert: certs.cert }, true);
    const transport = makeTransport(server.url, { tls: { ca: certs.ca } });
    for (let i = 0; i < 5; i++) {
      const rec = await send(transport, req(`/${i}`));
      expect(rec.text).toBe(`secure /${i}`);
      await waitFor(() => server.accepted[i]?.isClosed === true, 2000, 'the upstream closed the connection');
    }
    expect(server.accepted).toHaveLength(5);
    expect(server.resumed).toEqual([false, true, true, true, true]);
  });
});

/** Writes `total` bytes of `fill` in 64 KiB blocks as fast as `res` takes them, telling `onWrite` each block handed over. */
function writeWithBackpressure(res: Writable, total: number, fill: string, onWrite: (bytes: number) => void): void {
  const block = Buffer.alloc(64 * 1024, fill);
  let written = 0;
  const pump = (): void => {
    while (written < total) {
      written += block.length;
      onWrite(block.length);
      if (!res.write(block)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
  };
  pump();
}
