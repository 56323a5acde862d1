/**
 * Several listening sockets for one server (src/http/listen.ts): libuv accepts one connection per
 * listening socket per event-loop iteration, so a busy loop accepts as many per iteration as there are
 * sockets. Each connection, whichever socket took it, is the one server's.
 */
import { spawn } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { request } from 'undici';
import { listen } from '../../src/http/listen.js';
import { readAcceptQueue } from '../../src/observability/listen-queue.js';

/** LISTEN sockets on `port` in /proc/net/tcp, counted here without src's reader, so the test does not lean on the code it checks. */
async function listeningSockets(port: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const portHex = ':' + port.toString(16).toUpperCase().padStart(4, '0') + ' ';
  return (await readFile('/proc/net/tcp', 'latin1')).split('\n').filter((line) => line.includes(portHex) && / 0A /.test(line)).length;
}

/** Connects `count` sockets from another process (this one's loop is blocked meanwhile); they stay open 5 s. */
function connectFromChild(port: number, count: number): void {
  const script = `const net = require('node:net'); for (let i = 0; i < ${count}; i++) net.connect(${port}, '127.0.0.1').on('error', () => {}); setTimeout(() => process.exit(0), 5000);`;
  spawn(process.execPath, ['-e', script], { stdio: 'ignore' }).unref();
}

/** Blocks this event loop for `ms`, then counts the connections accepted in each of the next iterations. */
function acceptedPerIteration(server: Server, ms: number, iterations: number): Promise<number[]> {
  const counts: number[] = [0];
  server.on('connection', () => counts[counts.length - 1]!++);
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
  return new Promise((resolve) => {
    const next = (): void => {
      if (counts.length === iterations) return resolve(counts);
      counts.push(0);
      setImmediate(next);
    };
    setImmediate(next);
  });
}

test('one server, 8 listening sockets on one port: connections through all of them reach it; closing the acceptors leaves its own', async () => {
  const server = createHttpServer((_, res) => res.end('ok'));
  const listening = await listen(server, { port: 0, host: '127.0.0.1', backlog: 511, acceptors: 8 });
  try {
    expect(listening.acceptors).toBe(8);
    expect(await listeningSockets(listening.address.port)).toBe(8);
    const answers = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const res = await request(`http://127.0.0.1:${listening.address.port}/`, { reset: true });
        return res.body.text();
      }),
    );
    expect(answers).toEqual(Array.from({ length: 40 }, () => 'ok'));
    listening.closeAcceptors();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(await listeningSockets(listening.address.port)).toBe(1);
  } finally {
    listening.closeAcceptors();
    server.close();
  }
});

test.each([
  [1, 'one'],
  [8, 'several'],
])('a blocked loop with %i listening socket(s) accepts %s per iteration afterwards', async (acceptors) => {
  const accepted = new Set<Socket>();
  const server = createServer((socket) => accepted.add(socket.on('error', () => undefined)));
  const listening = await listen(server, { port: 0, host: '127.0.0.1', backlog: 511, acceptors });
  try {
    connectFromChild(listening.address.port, 48);
    const counts = await acceptedPerIteration(server, 1500, 12);
    // Counted by the server's own 'connection' event: the acceptors hand their connections to it.
    expect(counts.reduce((sum, count) => sum + count, 0)).toBeGreaterThan(0);
    if (acceptors === 1) expect(Math.max(...counts)).toBe(1);
    else expect(Math.max(...counts)).toBeGreaterThanOrEqual(4);
    expect(await readAcceptQueue(listening.address.port, '/proc/net/tcp')).not.toBeNull();
  } finally {
    for (const socket of accepted) socket.destroy();
    listening.closeAcceptors();
    server.close();
  }
});

test('a port another socket holds without SO_REUSEPORT is refused (EADDRINUSE), and nothing is left listening', async () => {
  const holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
  const port = (holder.address() as { port: number }).port;
  try {
    const server = createHttpServer();
    await expect(listen(server, { port, host: '127.0.0.1', backlog: 511, acceptors: 8 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(await listeningSockets(port)).toBe(1); // the holder's
  } finally {
    holder.close();
  }
});

test('a port another gateway holds with SO_REUSEPORT too is refused (EADDRINUSE), not silently shared', async () => {
  const first = createHttpServer();
  const held = await listen(first, { port: 0, host: '127.0.0.1', backlog: 511, acceptors: 4 });
  try {
    const second = createHttpServer();
    await expect(listen(second, { port: held.address.port, host: '127.0.0.1', backlog: 511, acceptors: 4 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await expect(listen(second, { port: held.address.port, host: '0.0.0.0', backlog: 511, acceptors: 4 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    expect(await listeningSockets(held.address.port)).toBe(4); // the first one's, none added
  } finally {
    held.closeAcceptors();
    first.close();
  }
});
