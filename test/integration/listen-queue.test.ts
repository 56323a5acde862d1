/**
 * The kernel's accept queue, read where `ss` reads it: a listener in another process that stops
 * accepting (its event loop blocked) holds connections in the queue up to its backlog, and the kernel
 * drops the handshakes past it; the gateway's metrics show its own queue, its limit and the drops,
 * for an IPv4 and an IPv6 listener.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { readAcceptQueue, readAcceptQueueLimit, readListenOverflows, socketTable } from '../../src/observability/listen-queue.js';
import { SERVER_LIMITS } from '../../src/http/server.js';
import { baseConfig, startTestGateway, type TestGateway } from '../support/gateway-harness.js';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { series } from '../reliability/helpers.js';
import { sleep, waitFor } from '../support/wait.js';

const BACKLOG = 4;
const FAMILIES = [
  { family: 'IPv4', host: '127.0.0.1', table: '/proc/net/tcp' },
  { family: 'IPv6', host: '::1', table: '/proc/net/tcp6' },
] as const;

/** A listener on `host` that prints its port, then blocks its event loop for 20 s: it accepts nothing. */
async function startStalledListener(host: string): Promise<{ port: number; child: ChildProcess }> {
  const script = `
const server = require('node:net').createServer().listen({ port: 0, host: '${host}', backlog: ${BACKLOG} }, () => {
  process.stdout.write(server.address().port + '\\n');
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20000);
});`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  const first = await createInterface({ input: child.stdout })[Symbol.asyncIterator]().next();
  return { port: Number(first.value), child };
}

const children: ChildProcess[] = [];
const clients: Socket[] = [];
afterAll(() => {
  for (const client of clients) client.destroy();
  for (const child of children) child.kill('SIGKILL');
});

test.each(FAMILIES)(
  'an $family listener that stops accepting: its queue holds backlog + 1 connections, the rest are dropped and counted as overflows',
  async ({ family, host, table }) => {
    expect(socketTable(family)).toBe(table);
    const { port, child } = await startStalledListener(host);
    children.push(child);
    expect(await readAcceptQueue(port, table)).toBe(0);
    const overflowsBefore = (await readListenOverflows())!;
    for (let i = 0; i < BACKLOG + 6; i++) clients.push(connect(port, host).on('error', () => undefined));
    // Linux holds one more than the backlog before it calls the queue full.
    await waitFor(async () => (await readAcceptQueue(port, table)) === BACKLOG + 1, 3000, 'the accept queue full');
    await waitFor(async () => (await readListenOverflows())! > overflowsBefore, 3000, 'an overflow counted');
    await sleep(200);
    expect(await readAcceptQueue(port, table)).toBe(BACKLOG + 1);
    // The other family's table does not list it.
    expect(await readAcceptQueue(port, table === '/proc/net/tcp' ? '/proc/net/tcp6' : '/proc/net/tcp')).toBeNull();
  },
);

test('nothing listening on a port: no queue (null), not a zero', async () => {
  // Port 1 is privileged and nothing here listens on it.
  expect(await readAcceptQueue(1, '/proc/net/tcp')).toBeNull();
});

test('the limit is the backlog capped by net.core.somaxconn; an unreadable procfs gives null', async () => {
  expect(await readAcceptQueueLimit(511)).toBe(Math.min(511, Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1').trim())));
  expect(await readAcceptQueueLimit(1_000_000)).toBeLessThan(1_000_000);
  expect(await readAcceptQueueLimit(511, '/nonexistent')).toBeNull();
  expect(await readAcceptQueue(1, '/nonexistent')).toBeNull();
  expect(await readListenOverflows('/nonexistent')).toBeNull();
});

describe.each(FAMILIES)('a gateway listening on $host', ({ host }) => {
  let upstream: FakeUpstream;
  let gw: TestGateway;
  beforeAll(async () => {
    upstream = await startFakeUpstream();
    gw = await startTestGateway(baseConfig(upstream.url), { host });
  });
  afterAll(async () => {
    await gw.stop();
    await upstream.close();
  });

  test("reports its own listening port's queue and limit, and the namespace's overflows", async () => {
    const text = await gw.gateway.metrics.prometheus();
    const labels = { port: String(gw.gateway.port) };
    expect(series(text, 'apiproxy_listen_queue_connections', labels)).toBe(0);
    // One backlog per listening socket (src/http/listen.ts).
    expect(series(text, 'apiproxy_listen_queue_limit', labels)).toBe((await readAcceptQueueLimit(511))! * SERVER_LIMITS.acceptors);
    const overflows = series(text, 'apiproxy_listen_overflows_total');
    expect(overflows).toBeGreaterThan(0); // the tests above overflowed queues in this namespace
    expect(overflows).toBeLessThanOrEqual((await readListenOverflows())!);
  });
});
