/**
 * UpstreamPool driven directly against real servers on loopback: node:http
 * ones for well-behaved upstreams, raw node:net ones that misbehave on demand
 * (stall, cut a body, send bytes after a response, reset mid-chunk). A
 * recording ExchangeHandler keeps what the pool reported, in order. (https
 * origins are undici's: test/integration/undici-transport.test.ts.)
 */
import type { ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { Worker } from 'node:worker_threads';
import type { UpstreamRequest } from '../../src/transport/types.js';
import { UpstreamPool, type PoolOptions } from '../../src/transport/h1/pool.js';
import { freePort, sleep, waitFor } from '../support/wait.js';
import {
  abortingOnStart,
  closeTransportHarness,
  decodeChunked,
  OK,
  Recorder,
  startHttp,
  startRaw,
  track,
  type HttpTestServer,
} from '../support/transport-harness.js';

// ---------------------------------------------------------------------------
// Pools and requests

const pools: UpstreamPool[] = [];

function makePool(origin: string, options: Partial<PoolOptions> = {}): UpstreamPool {
  const pool = new UpstreamPool({
    origin,
    maxIdle: 256,
    connectTimeoutMs: 2000,
    keepAliveMs: 10_000,
    ...options,
  });
  pools.push(pool);
  return pool;
}

function req(path = '/', extra: Partial<UpstreamRequest> = {}): UpstreamRequest {
  return { method: 'GET', path, headers: {}, body: null, headersTimeoutMs: 2000, idleTimeoutMs: 2000, sendNow: false, ...extra };
}

/** Dispatches and waits for the end or the error. */
async function send(pool: UpstreamPool, request: UpstreamRequest, recorder = new Recorder()): Promise<Recorder> {
  pool.dispatch(request, recorder);
  await recorder.done;
  return recorder;
}

afterEach(async () => {
  await Promise.all(pools.splice(0).map((pool) => pool.destroy()));
  await closeTransportHarness();
});

// ---------------------------------------------------------------------------

describe('connection reuse and the queue', () => {
  test('sequential requests share one kept-alive connection', async () => {
    const server = await startHttp((request, res) => res.end(`ok ${request.url}`));
    const pool = makePool(server.url);
    for (let i = 0; i < 5; i++) {
      const rec = await send(pool, req(`/r${i}`));
      expect(rec.error).toBeNull();
      expect(rec.status).toBe(200);
      expect(rec.text).toBe(`ok /r${i}`);
      expect(rec.events).toEqual(['start', 'head', 'body', 'end']);
    }
    expect(server.accepted).toHaveLength(1);
    expect(pool.connections).toBe(1);
    expect(server.requests.map((r) => r.headers.host)).toEqual(Array(5).fill(`127.0.0.1:${server.port}`));
  });

  test('five slow requests at once: five connections, none waits for another (the pool never queues)', async () => {
    const held = new Map<string, ServerResponse>();
    const server = await startHttp((request, res) => held.set(request.url ?? '', res));
    const pool = makePool(server.url);
    const recs = [1, 2, 3, 4, 5].map((i) => {
      const rec = new Recorder();
      pool.dispatch(req(`/${i}`), rec);
      return rec;
    });
    await waitFor(() => held.size === 5, 2000, 'all five requests reach the server');
    for (const [path, res] of held) res.end(`done ${path}`);
    await Promise.all(recs.map((rec) => rec.done));
    expect(recs.map((rec) => rec.text)).toEqual(['/1', '/2', '/3', '/4', '/5'].map((path) => `done ${path}`));
    expect(server.accepted).toHaveLength(5);
    expect(pool.connections).toBe(5);
  });

  test('maxIdle 2: of five connections freed at once, two stay open for reuse and three are closed', async () => {
    const held: ServerResponse[] = [];
    const server = await startHttp((_request, res) => held.push(res));
    const pool = makePool(server.url, { maxIdle: 2 });
    const recs = [1, 2, 3, 4, 5].map((i) => {
      const rec = new Recorder();
      pool.dispatch(req(`/${i}`), rec);
      return rec;
    });
    await waitFor(() => held.length === 5, 2000, 'all five requests reach the server');
    for (const res of held) res.end('ok');
    await Promise.all(recs.map((rec) => rec.done));
    await waitFor(() => pool.connections === 2, 2000, 'three connections closed');
    await send(pool, req('/again'));
    await send(pool, req('/again'));
    expect(server.accepted).toHaveLength(5);
  });
});

describe('keep-alive', () => {
  test('an idle connection is closed after keepAliveMs', async () => {
    const server = await startHttp((_request, res) => res.end('ok'));
    const pool = makePool(server.url, { keepAliveMs: 150 });
    await send(pool, req());
    const idleSince = Date.now();
    expect(pool.connections).toBe(1);
    await server.accepted[0]!.closed;
    const entry = server.accepted[0]!;
    expect(entry.endedAt).not.toBeNull(); // the pool closed it, not the server
    expect(entry.endedAt! - idleSince).toBeGreaterThanOrEqual(130);
    expect(entry.endedAt! - idleSince).toBeLessThan(1500);
    expect(pool.connections).toBe(0);
    // and the next request simply opens a new one
    expect((await send(pool, req())).text).toBe('ok');
    expect(server.accepted).toHaveLength(2);
  });

  test("an upstream's Keep-Alive: timeout=2 shortens the idle time to 1 s", async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok', 'keep-alive: timeout=2\r\n')));
    const pool = makePool(server.url, { keepAliveMs: 30_000 });
    await send(pool, req());
    const idleSince = Date.now();
    await server.accepted[0]!.closed;
    const closedAfter = server.accepted[0]!.endedAt! - idleSince;
    expect(closedAfter).toBeGreaterThanOrEqual(900);
    expect(closedAfter).toBeLessThan(1900);
  });

  test('Keep-Alive: timeout=1 leaves no safe idle time: the connection is not kept', async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok', 'keep-alive: timeout=1\r\n')));
    const pool = makePool(server.url);
    await send(pool, req());
    await server.accepted[0]!.closed;
    expect(server.accepted[0]!.endedAt).not.toBeNull();
    await send(pool, req());
    expect(server.accepted).toHaveLength(2);
  });

  test('a Connection: close response: the pool closes that connection and the next request opens a new one', async () => {
    // The raw server never closes by itself: only the pool can.
    const server = await startRaw(({ socket }) => socket.write(OK('bye', 'connection: close\r\n')));
    const pool = makePool(server.url);
    const first = await send(pool, req());
    expect(first.text).toBe('bye');
    await server.accepted[0]!.closed;
    expect(server.accepted[0]!.endedAt).not.toBeNull();
    expect((await send(pool, req())).text).toBe('bye');
    expect(server.accepted).toHaveLength(2);
    expect(server.requests.map((r) => r.connection)).toEqual([0, 1]);
  });

  test('an HTTP/1.0 response without keep-alive is not reused', async () => {
    const server = await startRaw(({ socket }) => socket.write('HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok'));
    const pool = makePool(server.url);
    expect((await send(pool, req())).text).toBe('ok');
    expect((await send(pool, req())).text).toBe('ok');
    expect(server.accepted).toHaveLength(2);
  });

  test('a response with bytes after its end: the connection is not reused', async () => {
    // One write: the response and trailing junk arrive together.
    const server = await startRaw(({ socket }) => socket.write(`${OK('ok')}HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nextra`));
    const pool = makePool(server.url);
    const first = await send(pool, req('/1'));
    expect(first.error).toBeNull();
    expect(first.text).toBe('ok');
    await server.accepted[0]!.closed;
    const second = await send(pool, req('/2'));
    expect(second.text).toBe('ok'); // not "extra": a fresh connection answered
    expect(server.requests.map((r) => r.connection)).toEqual([0, 1]);
  });

  test('bytes that arrive on an idle connection: it is closed, never read as the next response', async () => {
    const server = await startRaw(({ socket, connection }) => {
      socket.write(OK(`ok ${connection}`));
      if (connection === 0) setTimeout(() => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nbogus!'), 30);
    });
    const pool = makePool(server.url);
    expect((await send(pool, req())).text).toBe('ok 0');
    await server.accepted[0]!.closed;
    expect(pool.connections).toBe(0);
    expect((await send(pool, req())).text).toBe('ok 1');
  });
});

describe('responses without a body, and interim responses', () => {
  test.each([
    ['HEAD', 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n'],
    ['GET', 'HTTP/1.1 204 No Content\r\n\r\n'],
    ['GET', 'HTTP/1.1 304 Not Modified\r\ncontent-length: 50\r\n\r\n'],
  ])('%s answered by %j: ends at the head, the connection is reused', async (method, response) => {
    const server = await startRaw(({ socket }) => socket.write(response));
    const pool = makePool(server.url);
    for (let i = 0; i < 2; i++) {
      const rec = await send(pool, req('/', { method }));
      expect(rec.error).toBeNull();
      expect(rec.events).toEqual(['start', 'head', 'end']);
    }
    expect(server.accepted).toHaveLength(1);
  });

  test('1xx interim responses are skipped: the handler sees only the final one', async () => {
    const server = await startRaw(({ socket }) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      setTimeout(() => socket.write('HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n' + OK('final', 'x-final: 1\r\n')), 10);
    });
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.status).toBe(200);
    expect(rec.headers['x-final']).toBe('1');
    expect(rec.headers['link']).toBeUndefined();
    expect(rec.text).toBe('final');
    expect(rec.events).toEqual(['start', 'head', 'body', 'end']);
  });
});

describe('timeouts', () => {
  test('no response head within headersTimeoutMs: UPSTREAM_HEADERS_TIMEOUT, the connection is closed', async () => {
    const server = await startRaw(() => undefined);
    const pool = makePool(server.url);
    const started = Date.now();
    const rec = await send(pool, req('/', { headersTimeoutMs: 150 }));
    expect(rec.code).toBe('UPSTREAM_HEADERS_TIMEOUT');
    expect(rec.events).toEqual(['start', 'error']);
    expect(Date.now() - started).toBeGreaterThanOrEqual(130);
    expect(Date.now() - started).toBeLessThan(1500);
    await server.accepted[0]!.closed;
    expect(pool.connections).toBe(0);
  });

  test('the headers timeout also holds on a reused connection', async () => {
    const server = await startRaw(({ socket, head }) => {
      if (head.startsWith('GET /fast ')) socket.write(OK('fast'));
    });
    const pool = makePool(server.url);
    expect((await send(pool, req('/fast'))).text).toBe('fast');
    const rec = await send(pool, req('/slow', { headersTimeoutMs: 100 }));
    expect(rec.code).toBe('UPSTREAM_HEADERS_TIMEOUT');
    expect(server.accepted).toHaveLength(1);
  });

  test('body silent for idleTimeoutMs: UPSTREAM_BODY_TIMEOUT after the bytes that came', async () => {
    const server = await startRaw(({ socket }) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc'));
    const pool = makePool(server.url);
    const rec = new Recorder();
    const started = Date.now();
    pool.dispatch(req('/', { idleTimeoutMs: 150 }), rec);
    await rec.done;
    expect(rec.status).toBe(200);
    expect(rec.text).toBe('abc');
    expect(rec.code).toBe('UPSTREAM_BODY_TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(130);
    await server.accepted[0]!.closed;
  });

  test('a body that keeps trickling within idleTimeoutMs is not timed out', async () => {
    const server = await startRaw(({ socket }) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n');
      let sent = 0;
      const timer = setInterval(() => {
        socket.write('x');
        if (++sent === 5) clearInterval(timer);
      }, 60);
    });
    const pool = makePool(server.url);
    const rec = await send(pool, req('/', { idleTimeoutMs: 150 }));
    expect(rec.error).toBeNull();
    expect(rec.text).toBe('xxxxx');
  });

  test('while the handler has paused the exchange the body timeout does not fire; it is armed again on resume', async () => {
    let upstreamSocket = null as Socket | null;
    const server = await startRaw(({ socket }) => {
      upstreamSocket = socket;
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n');
    });
    const pool = makePool(server.url);
    const rec = new Recorder({
      onHead: (r) => {
        r.exchange!.pause();
        // The body is sent only now, so it certainly arrives while paused.
        upstreamSocket!.write('hello');
      },
    });
    pool.dispatch(req('/', { idleTimeoutMs: 100 }), rec);
    await rec.head;
    await sleep(350); // more than three idle timeouts
    expect(rec.error).toBeNull();
    expect(rec.ended).toBe(false);
    rec.exchange!.resume();
    await waitFor(() => rec.payload === 5, 1000, 'the paused bytes after resume');
    expect(rec.error).toBeNull();
    // the rest never comes: now the idle timeout runs again
    await rec.done;
    expect(rec.code).toBe('UPSTREAM_BODY_TIMEOUT');
    expect(rec.text).toBe('hello');
  });
});

describe('upstream failures', () => {
  test('the upstream closes mid-body (content-length): UPSTREAM_CLOSED', async () => {
    const server = await startRaw(({ socket }) => socket.end('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial'));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_CLOSED');
    expect(rec.text).toBe('partial');
    expect(rec.events).toEqual(['start', 'head', 'body', 'error']);
    expect(pool.connections).toBe(0);
  });

  test('the upstream closes mid-body (chunked): UPSTREAM_CLOSED', async () => {
    const server = await startRaw(({ socket }) => socket.end('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nab'));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_CLOSED');
    expect(rec.text).toBe('helloab');
  });

  test('the upstream closes a fresh connection before any response: UPSTREAM_NO_RESPONSE', async () => {
    const server = await startRaw(({ socket }) => socket.end());
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_NO_RESPONSE');
    expect(rec.events).toEqual(['start', 'error']);
  });

  test('the upstream resets a fresh connection before any response: UPSTREAM_NO_RESPONSE', async () => {
    const server = await startRaw(({ socket }) => socket.resetAndDestroy());
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_NO_RESPONSE');
  });

  test.each([
    ['closes', (socket: Socket) => socket.end()],
    ['resets', (socket: Socket) => socket.resetAndDestroy()],
  ])('the upstream %s a reused connection before any response: UPSTREAM_STALE_CONNECTION; freshConnection opens a new one', async (_how, hangUp) => {
    const server = await startRaw(({ socket, connection }) => {
      // The first connection answers once, then hangs up on its next request, as an upstream closing an idle connection does.
      if (connection === 0 && server.requests.filter((r) => r.connection === 0).length > 1) hangUp(socket);
      else socket.write(OK('fine'));
    });
    const pool = makePool(server.url);
    expect((await send(pool, req())).text).toBe('fine');
    const stale = await send(pool, req());
    expect(stale.code).toBe('UPSTREAM_STALE_CONNECTION');
    expect(stale.events).toEqual(['start', 'error']);
    expect((await send(pool, req('/', { freshConnection: true }))).text).toBe('fine');
    expect(server.accepted).toHaveLength(2);
    // That connection is idle now: freshConnection must not take it.
    expect((await send(pool, req('/', { freshConnection: true }))).text).toBe('fine');
    expect(server.accepted).toHaveLength(3);
  });

  test('a reused connection that breaks after some response bytes is not stale: the upstream answered', async () => {
    const server = await startRaw(({ socket }) => {
      if (server.requests.length === 1) socket.write(OK('fine'));
      else socket.end('HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\npart');
    });
    const pool = makePool(server.url);
    await send(pool, req());
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_CLOSED');
    expect(rec.text).toBe('part');
  });

  test('a close-delimited body (no content-length, not chunked) completes on close, and that connection is gone', async () => {
    const server = await startRaw(({ socket }) => {
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nfirst ');
      setTimeout(() => socket.end('second'), 20);
    });
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.error).toBeNull();
    expect(rec.ended).toBe(true);
    expect(rec.text).toBe('first second');
    expect(rec.chunked).toBe(false);
    await waitFor(() => pool.connections === 0, 1000, 'the connection is dropped');
    expect((await send(pool, req())).text).toBe('first second');
    expect(server.accepted).toHaveLength(2);
  });

  test('connection refused: an error with code ECONNREFUSED', async () => {
    const port = await freePort();
    const pool = makePool(`http://127.0.0.1:${port}`);
    const rec = await send(pool, req());
    expect(rec.code).toBe('ECONNREFUSED');
    expect(rec.events).toEqual(['start', 'error']);
    expect(pool.connections).toBe(0);
  });

  test('connection refused for three requests at once: each fails, none is left waiting', async () => {
    const port = await freePort();
    const pool = makePool(`http://127.0.0.1:${port}`);
    const recs = [new Recorder(), new Recorder(), new Recorder()];
    for (const rec of recs) pool.dispatch(req(), rec);
    await Promise.all(recs.map((rec) => rec.done));
    expect(recs.map((rec) => rec.code)).toEqual(['ECONNREFUSED', 'ECONNREFUSED', 'ECONNREFUSED']);
    expect(pool.connections).toBe(0);
  });

  test('a connection that fails leaves a concurrent request on another connection unharmed', async () => {
    const server = await startRaw(({ socket, head }) => {
      if (head.startsWith('GET /reset ')) socket.resetAndDestroy();
      else socket.write(OK('fine'));
    });
    const pool = makePool(server.url);
    const failing = new Recorder();
    const queued = new Recorder();
    pool.dispatch(req('/reset'), failing);
    pool.dispatch(req('/fine'), queued);
    await Promise.all([failing.done, queued.done]);
    expect(failing.code).toBe('UPSTREAM_NO_RESPONSE');
    expect((failing.error as Error & { cause?: Error & { code?: string } }).cause?.code).toBe('ECONNRESET');
    expect(queued.error).toBeNull();
    expect(queued.text).toBe('fine');
    expect(server.requests.map((r) => r.connection)).toEqual([0, 1]);
  });

  test('an invalid response: UPSTREAM_BAD_RESPONSE and the connection is closed', async () => {
    const server = await startRaw(({ socket }) => socket.write('HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n'));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.code).toBe('UPSTREAM_BAD_RESPONSE');
    await server.accepted[0]!.closed;
  });
});

describe('abort', () => {
  test.each(['waiting for the head', 'mid-body'])(
    'abort() of an in-flight exchange %s: onError with that error, the connection is not reused',
    async (when) => {
      const server = await startRaw(({ socket, head }) => {
        if (head.startsWith('GET /next ')) socket.write(OK('next'));
        else if (when === 'mid-body') socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nsome');
      });
      const pool = makePool(server.url);
      const rec = new Recorder();
      pool.dispatch(req('/held'), rec);
      if (when === 'mid-body') await waitFor(() => rec.payload === 4, 2000, 'the first body bytes');
      else await waitFor(() => server.requests.length === 1, 2000, 'the request reaches the server');
      const reason = new Error('caller gave up');
      rec.exchange!.abort(reason);
      expect(rec.error).toBe(reason); // synchronously, with the very error
      await server.accepted[0]!.closed;
      expect(server.accepted[0]!.endedAt).not.toBeNull();
      rec.exchange!.abort(new Error('again')); // a settled exchange ignores it
      expect(rec.error).toBe(reason);
      expect((await send(pool, req('/next'))).text).toBe('next');
      expect(server.requests.map((r) => r.connection)).toEqual([0, 1]);
    },
  );

  test('abort() from onStart: nothing is sent', async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok')));
    const pool = makePool(server.url);
    const reason = new Error('already gone');
    const rec = new Recorder();
    const handler = abortingOnStart(rec, reason);
    pool.dispatch(req(), handler);
    expect(rec.error).toBe(reason);
    expect(pool.connections).toBe(0);
    expect((await send(pool, req())).text).toBe('ok');
    expect(server.requests).toHaveLength(1);
  });
});

describe('close and destroy', () => {
  test('destroy() fails every in-flight exchange with UPSTREAM_POOL_CLOSED; later dispatches fail too', async () => {
    const server = await startRaw(() => undefined);
    const pool = makePool(server.url);
    const inFlight = new Recorder();
    const queued = new Recorder();
    pool.dispatch(req('/a'), inFlight);
    pool.dispatch(req('/b'), queued);
    await waitFor(() => server.requests.length === 2, 2000, 'both requests reach the server');
    await pool.destroy();
    await Promise.all([inFlight.done, queued.done]);
    expect(inFlight.code).toBe('UPSTREAM_POOL_CLOSED');
    expect(queued.code).toBe('UPSTREAM_POOL_CLOSED');
    expect(pool.connections).toBe(0);
    await Promise.all(server.accepted.map((entry) => entry.closed));
    const late = await send(pool, req('/c'));
    expect(late.code).toBe('UPSTREAM_POOL_CLOSED');
    expect(server.requests).toHaveLength(2);
    expect(server.accepted).toHaveLength(2);
  });

  test('close() lets in-flight requests finish, then closes their connections and resolves', async () => {
    const server = await startRaw(({ socket, head }) => {
      if (head.startsWith('GET /warm ')) socket.write(OK('warm'));
    });
    const pool = makePool(server.url);
    expect((await send(pool, req('/warm'))).text).toBe('warm');
    // one request on the idle connection, one on a new one
    const first = new Recorder();
    const second = new Recorder();
    pool.dispatch(req('/first'), first);
    pool.dispatch(req('/second'), second);
    await waitFor(() => server.requests.length === 3, 2000, 'both requests reach the server');
    const order: string[] = [];
    void first.done.then(() => order.push('first done'));
    void second.done.then(() => order.push('second done'));
    const closed = pool.close().then(() => order.push('closed'));
    await sleep(50);
    expect(order).toEqual([]);
    expect(pool.connections).toBe(2);
    for (const entry of server.requests.slice(1)) entry.socket.write(OK(`done ${entry.head.split(' ')[1]}`));
    await closed;
    expect(order).toEqual(['first done', 'second done', 'closed']);
    expect(first.text).toBe('done /first');
    expect(second.text).toBe('done /second');
    expect(pool.connections).toBe(0);
    await Promise.all(server.accepted.map((entry) => entry.closed));
    expect(server.accepted.every((entry) => entry.endedAt !== null)).toBe(true);
  });

  test('close() with only idle connections closes them and resolves at once', async () => {
    const server = await startHttp((_request, res) => res.end('ok'));
    const pool = makePool(server.url);
    await Promise.all([send(pool, req()), send(pool, req())]);
    expect(pool.connections).toBe(2);
    await pool.close();
    expect(pool.connections).toBe(0);
    await Promise.all(server.accepted.map((entry) => entry.closed));
  });
});

describe('when a request leaves', () => {
  /**
   * An upstream on its own thread: it keeps answering while this thread is
   * blocked, and counts the request bytes that reach it in shared memory.
   */
  async function threadUpstream(): Promise<{ url: string; arrivals: Int32Array; stop(): Promise<number> }> {
    const arrivals = new Int32Array(new SharedArrayBuffer(4));
    const worker = new Worker(
      `const { createServer } = require('node:net');
       const { parentPort, workerData } = require('node:worker_threads');
       const server = createServer((socket) => socket.on('data', (data) => {
         Atomics.add(workerData.arrivals, 0, 1);
         Atomics.notify(workerData.arrivals, 0);
         if (data.includes('\\r\\n\\r\\n')) socket.write('HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok');
       }));
       server.listen(0, '127.0.0.1', () => parentPort.postMessage(server.address().port));`,
      { eval: true, workerData: { arrivals } },
    );
    const port = await new Promise<number>((resolve) => worker.once('message', resolve));
    return { url: `http://127.0.0.1:${port}`, arrivals, stop: () => worker.terminate() };
  }

  /** Dispatches on a warm connection, then blocks this thread right after the dispatching tick: did the request reach the upstream? */
  async function arrivesBeforeTheTurnEnds(sendNow: boolean): Promise<boolean> {
    const upstream = await threadUpstream();
    try {
      const pool = makePool(upstream.url);
      expect((await send(pool, req('/warm'))).text).toBe('ok');
      const before = Atomics.load(upstream.arrivals, 0);
      const recorder = new Recorder();
      const outcome = await new Promise<string>((resolve) => {
        pool.dispatch(req('/', { method: 'POST', headers: { 'content-length': '2' }, body: Buffer.from('{}'), sendNow }), recorder);
        // Ticks run in order, before the check phase where a turn's batched writes go out.
        process.nextTick(() => resolve(Atomics.wait(upstream.arrivals, 0, before, 500)));
      });
      await recorder.done;
      expect(recorder.text).toBe('ok');
      return outcome !== 'timed-out';
    } finally {
      await upstream.stop();
    }
  }

  test('sendNow (an event stream): the request is written within the tick that dispatched it', async () => {
    expect(await arrivesBeforeTheTurnEnds(true)).toBe(true);
  });

  test("otherwise the request leaves with the rest of the turn's writes, and only then", async () => {
    expect(await arrivesBeforeTheTurnEnds(false)).toBe(false);
  });
});

describe('request bodies', () => {
  const echo = (): Promise<HttpTestServer> => startHttp((_request, res, seen) => res.end(`${seen.body.length}`));

  test('a Buffer body arrives byte for byte', async () => {
    const server = await echo();
    const pool = makePool(server.url);
    const body = Buffer.from(Array.from({ length: 1024 }, (_, i) => i % 256));
    const rec = await send(pool, req('/', { method: 'POST', headers: { 'content-length': String(body.length) }, body }));
    expect(rec.text).toBe('1024');
    expect(server.requests[0]!.body).toEqual(body);
    expect(server.requests[0]!.headers['content-length']).toBe('1024');
    expect(server.requests[0]!.headers['transfer-encoding']).toBeUndefined();
  });

  test('a Readable with a content-length is streamed as is', async () => {
    const server = await echo();
    const pool = makePool(server.url);
    const parts = [Buffer.from('first,'), Buffer.alloc(100_000, 'm'), Buffer.from(',last')];
    const total = parts.reduce((sum, part) => sum + part.length, 0);
    const rec = await send(pool, req('/', { method: 'POST', headers: { 'content-length': String(total) }, body: Readable.from(parts) }));
    expect(rec.text).toBe(String(total));
    expect(server.requests[0]!.headers['transfer-encoding']).toBeUndefined();
    expect(server.requests[0]!.headers['content-length']).toBe(String(total));
    expect(server.requests[0]!.body).toEqual(Buffer.concat(parts));
  });

  test('a Readable without a content-length goes out in chunked coding, bytes exact', async () => {
    const server = await echo();
    const pool = makePool(server.url);
    const parts = [Buffer.from('alpha '), Buffer.from([0, 13, 10, 255]), Buffer.from(' omega')];
    const rec = await send(pool, req('/', { method: 'POST', headers: {}, body: Readable.from(parts) }));
    expect(rec.error).toBeNull();
    expect(server.requests[0]!.headers['transfer-encoding']).toBe('chunked');
    expect(server.requests[0]!.headers['content-length']).toBeUndefined();
    expect(server.requests[0]!.body).toEqual(Buffer.concat(parts));
    // the connection stays usable
    expect((await send(pool, req('/next'))).error).toBeNull();
    expect(server.accepted).toHaveLength(1);
  });

  test('a Readable without a content-length, in chunks of 64 KiB and more: the chunked framing on the wire stays exact', async () => {
    // A raw server, to see the framing itself: it answers once the last chunk came.
    let wire = Buffer.alloc(0);
    const server = createNetServer((socket) => {
      socket.on('data', (data: Buffer) => {
        wire = Buffer.concat([wire, data]);
        if (wire.subarray(-7).toString('latin1') === '\r\n0\r\n\r\n') socket.write(OK('got it'));
      });
    });
    const tracked = await track(server, 'connection', 'http');
    const pool = makePool(tracked.url);
    const parts = [Buffer.alloc(70_000, 'a'), Buffer.alloc(128 * 1024, 'b'), Buffer.alloc(10, 'c'), Buffer.alloc(200_000, 'd')];
    const rec = await send(pool, req('/', { method: 'POST', headers: {}, body: Readable.from(parts) }));
    expect(rec.error).toBeNull();
    expect(rec.text).toBe('got it');
    const headEnd = wire.indexOf('\r\n\r\n');
    expect(wire.toString('latin1', 0, headEnd)).toMatch(/\r\ntransfer-encoding: chunked$/);
    // Every chunk must be `size CRLF data CRLF`: decode strictly and compare.
    expect(decodeChunked(wire.subarray(headEnd + 4))).toEqual(parts.map((part) => part.length));
  });

  test('a Readable that fails mid-upload fails the exchange with its error and drops the connection', async () => {
    const server = await echo();
    const pool = makePool(server.url);
    const failure = new Error('body source broke');
    const body = new Readable({ read() {} });
    body.push('start');
    const rec = new Recorder();
    pool.dispatch(req('/', { method: 'POST', headers: {}, body }), rec);
    await sleep(20);
    body.destroy(failure);
    await rec.done;
    expect(rec.error).toBe(failure);
    await server.accepted[0]!.closed;
  });

  test('a response that comes before the streamed body ended: delivered, and the connection is not reused', async () => {
    const server = await startRaw(({ socket, head }) => {
      if (head.startsWith('POST ')) socket.write('HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\n\r\nbig');
      else socket.write(OK('next'));
    });
    const pool = makePool(server.url);
    const body = new Readable({ read() {} });
    body.push('never ');
    body.push('ending');
    const rec = await send(pool, req('/', { method: 'POST', headers: {}, body }));
    expect(rec.error).toBeNull();
    expect(rec.status).toBe(413);
    expect(rec.text).toBe('big');
    await server.accepted[0]!.closed;
    expect((await send(pool, req('/next'))).text).toBe('next');
    expect(server.accepted).toHaveLength(2);
    body.destroy();
  });

  test.each([
    ['a string value', { 'x-note': 'fine\r\nx-injected: 1' }],
    ['a bare LF', { 'x-note': 'fine\nx-injected: 1' }],
    ['a NUL', { 'x-note': 'fine\0' }],
    ['an item of a list', { 'x-list': ['ok', 'bad\r\n\r\nGET /smuggled HTTP/1.1'] }],
  ])('a header with a line break in %s: UPSTREAM_INVALID_HEADER, nothing reaches the server', async (_name, headers) => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok')));
    // on a fresh connection
    const fresh = makePool(server.url);
    const rec = await send(fresh, req('/evil', { headers }));
    expect(rec.code).toBe('UPSTREAM_INVALID_HEADER');
    expect(rec.events).toEqual(['start', 'error']);
    // and on a warm one
    const warm = makePool(server.url);
    expect((await send(warm, req('/warm'))).text).toBe('ok');
    const again = await send(warm, req('/evil', { headers }));
    expect(again.code).toBe('UPSTREAM_INVALID_HEADER');
    expect((await send(warm, req('/after'))).text).toBe('ok');
    await sleep(30);
    const seen = Buffer.concat(server.received).toString('latin1');
    expect(seen).not.toContain('/evil');
    expect(seen).not.toContain('injected');
    expect(seen).not.toContain('smuggled');
    expect(server.requests.map((r) => r.head.split(' ')[1])).toEqual(['/warm', '/after']);
  });

  test('an invalid header with a streamed body: the body is not read, nothing is sent', async () => {
    const server = await startRaw(({ socket }) => socket.write(OK('ok')));
    const pool = makePool(server.url);
    const body = Readable.from([Buffer.from('payload')]);
    const rec = await send(pool, req('/', { method: 'POST', headers: { 'x-bad': 'a\rb' }, body }));
    expect(rec.code).toBe('UPSTREAM_INVALID_HEADER');
    await sleep(30);
    expect(Buffer.concat(server.received).length).toBe(0);
  });
});

describe('chunked bodies', () => {
  const CHUNKED_HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';

  /** Writes `pieces` one per event loop turn, so they tend to arrive as separate reads. */
  async function writePieces(socket: Socket, pieces: string[]): Promise<void> {
    for (const piece of pieces) {
      if (socket.destroyed) return;
      socket.write(piece, 'latin1');
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** Cuts `text` into pieces of the given sizes, cycling. */
  function cut(text: string, sizes: number[]): string[] {
    const pieces: string[] = [];
    for (let at = 0, i = 0; at < text.length; i++) {
      const size = sizes[i % sizes.length]!;
      pieces.push(text.slice(at, at + size));
      at += size;
    }
    return pieces;
  }

  /** [extension, data] of each chunk: extensions, uppercase hex, events split across chunks, CRLFs inside data. */
  const CHUNKS: [string, string][] = [
    [';x=y', 'hello'],
    ['', ' '],
    [';name="quoted value";flag', 'world!'],
    ['', 'data: {"a":1}\n\ndata: {"b"'],
    [';n=1', ':2}\n\n\r\n\r\n'],
    ['', '\r\n\r\n\r'],
  ];
  const BODY =
    CHUNKS.map(([ext, data], i) => {
      const size = Buffer.byteLength(data).toString(16);
      return `${i === 3 ? size.toUpperCase() : size}${ext}\r\n${data}\r\n`;
    }).join('') + '0\r\n\r\n';
  const PAYLOAD = CHUNKS.map(([, data]) => data).join('');

  test.each([
    ['in one write', [BODY.length]],
    ['byte by byte', [1]],
    ['in uneven pieces', [3, 1, 7, 2, 11, 5]],
    ['cut around every CRLF', [4, 2, 9, 2, 2, 13]],
  ])('the decoded payload, whatever the framing and however it is cut (%s); the connection is reused', async (_name, sizes) => {
    const server = await startRaw(({ socket }) => void writePieces(socket, [CHUNKED_HEAD, ...cut(BODY, sizes)]));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.error).toBeNull();
    expect(rec.chunked).toBe(true);
    expect(rec.text).toBe(PAYLOAD);
    const next = await send(pool, req());
    expect(next.text).toBe(PAYLOAD);
    expect(server.accepted).toHaveLength(1);
  });

  test('trailers and a last-chunk extension end the body; nothing of them is delivered', async () => {
    const body = '4\r\nabcd\r\n0;end=1\r\nx-trailer: t\r\n\r\n';
    const server = await startRaw(({ socket }) => void writePieces(socket, [CHUNKED_HEAD, ...cut(body, [2, 3])]));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.error).toBeNull();
    expect(rec.text).toBe('abcd');
  });

  test('an event stream whose last event and end come in one read: that event is marked last', async () => {
    const server = await startRaw(({ socket }) => socket.write(CHUNKED_HEAD + '7\r\ndata: a\r\n9\r\ndata: end\r\n0\r\n\r\n'));
    const pool = makePool(server.url);
    const rec = await send(pool, req());
    expect(rec.text).toBe('data: adata: end');
    expect(rec.lasts.at(-1)).toBe(true);
    expect(rec.lasts.slice(0, -1).every((last) => !last)).toBe(true);
  });

  test.each([
    ['reset', 'inside a chunk', '7;a=b\r\nhello\n\n\r\na\r\n01234', 'hello\n\n01234', 'ECONNRESET'],
    ['reset', 'between chunks', '5;a=b\r\nhello\r\n', 'hello', 'ECONNRESET'],
    ['reset', 'with the next size line begun', '7\r\nhello\n\n\r\n1', 'hello\n\n', 'ECONNRESET'],
    ['closed', 'inside a chunk', '5;a=b\r\nhello\r\na\r\n01234', 'hello01234', 'UPSTREAM_CLOSED'],
    ['closed', 'between chunks', '7;a=b\r\nhello\n\n\r\n', 'hello\n\n', 'UPSTREAM_CLOSED'],
  ])('an upstream %s %s: onError with its code after the payload so far', async (how, _where, sent, seen, code) => {
    let upstream = null as Socket | null;
    const server = await startRaw(({ socket }) => {
      upstream = socket;
      socket.write(CHUNKED_HEAD + sent);
    });
    const pool = makePool(server.url);
    const rec = new Recorder();
    pool.dispatch(req(), rec);
    await waitFor(() => rec.text === seen, 2000, 'the payload so far');
    if (how === 'reset') upstream!.resetAndDestroy();
    else upstream!.end();
    await rec.done;
    expect(rec.code).toBe(code);
    expect(rec.text).toBe(seen);
  });
});

describe('backpressure', () => {
  test('a paused exchange stops reading (the upstream blocks); resume delivers the rest', async () => {
    const total = 64 * 1024 * 1024;
    const block = Buffer.alloc(256 * 1024, 'z');
    let blocked = false;
    let drains = 0;
    let sent = 0;
    const server = await startRaw(({ socket }) => {
      socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${total}\r\n\r\n`);
      const pump = (): void => {
        while (sent < total) {
          sent += block.length;
          if (!socket.write(block)) {
            blocked = true;
            socket.once('drain', () => {
              blocked = false;
              drains++;
              pump();
            });
            return;
          }
        }
      };
      pump();
    });
    const pool = makePool(server.url);
    const rec = new Recorder({ keepBody: false, onHead: (r) => r.exchange!.pause() });
    pool.dispatch(req('/', { idleTimeoutMs: 300 }), rec);
    await rec.head;
    await waitFor(() => blocked, 5000, 'the upstream write returns false');
    const payloadWhenBlocked = rec.payload;
    const drainsWhenBlocked = drains;
    const upstreamSocket = server.accepted[0]!.socket;
    const queuedWhenBlocked = upstreamSocket.writableLength;
    expect(queuedWhenBlocked).toBeGreaterThan(0);
    await sleep(400); // longer than idleTimeoutMs too
    expect(rec.payload).toBe(payloadWhenBlocked);
    expect(blocked).toBe(true);
    expect(drains).toBe(drainsWhenBlocked);
    expect(upstreamSocket.writableLength).toBeGreaterThanOrEqual(queuedWhenBlocked);
    expect(rec.error).toBeNull();
    expect(rec.payload).toBeLessThan(total);
    rec.exchange!.resume();
    await rec.done;
    expect(rec.error).toBeNull();
    expect(rec.payload).toBe(total);
  });
});
