import cluster from 'node:cluster';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { readAcceptQueue, socketTable } from '../observability/listen-queue.js';

export interface ListenOptions {
  readonly port: number;
  readonly host: string;
  readonly backlog: number;
  /** Listening sockets on the port, each accepting for the one server (Linux, outside a cluster; 1 elsewhere). */
  readonly acceptors: number;
}

export interface Listening {
  readonly address: AddressInfo;
  /** Listening sockets opened: `acceptors`, or 1 where they cannot share a port. */
  readonly acceptors: number;
  /** Client connections open, over every listening socket (`server.getConnections` counts its own socket's only). */
  connections(): Promise<number>;
  /** Closes the extra listening sockets; the server's own closes with `server.close()`. */
  closeAcceptors(): void;
}

/**
 * Listens with `acceptors` sockets on one port, every connection going to `server`.
 *
 * libuv accepts one connection per listening socket per event-loop iteration (libuv#3696, since 1.45),
 * and with thousands of streams relayed an iteration lasts tens of milliseconds: one socket then accepts
 * a few dozen connections a second, its queue fills, and the kernel drops handshakes that the clients
 * retry 1, 3, 7, 15 s later (docs/performance.md, "One connection accepted per loop iteration").
 * SO_REUSEPORT sockets each accept one per iteration, and the kernel spreads connections over them.
 * A cluster worker's listen goes through the primary, whose loop is quiet: one socket there.
 */
export async function listen(server: Server, options: ListenOptions): Promise<Listening> {
  const acceptors = process.platform === 'linux' && cluster.isPrimary ? options.acceptors : 1;
  const reusePort = acceptors > 1;
  // SO_REUSEPORT would let this process share a port that another one (of the same user) listens on with
  // it too, say a second gateway: refuse as a plain bind would. Two starting at the same instant can still both bind.
  if (reusePort && options.port !== 0 && (await listenedOn(options.port))) {
    throw Object.assign(new Error(`listen EADDRINUSE: address already in use ${options.host}:${options.port}`), {
      code: 'EADDRINUSE',
      syscall: 'listen',
      port: options.port,
    });
  }
  await listenOne(server, { port: options.port, host: options.host, backlog: options.backlog, reusePort });
  const address = server.address() as AddressInfo;
  const extra: Server[] = [];
  try {
    for (let i = 1; i < acceptors; i++) {
      const acceptor = createServer({ noDelay: true }, (socket) => server.emit('connection', socket));
      extra.push(acceptor);
      await listenOne(acceptor, { port: address.port, host: options.host, backlog: options.backlog, reusePort });
    }
  } catch (error) {
    for (const acceptor of extra) acceptor.close();
    server.close();
    throw error;
  }
  return {
    address,
    acceptors,
    connections: async () => {
      const counts = await Promise.all(
        [server, ...extra].map(
          (one) => new Promise<number>((resolve, reject) => one.getConnections((error, count) => (error ? reject(error) : resolve(count)))),
        ),
      );
      return counts.reduce((sum, count) => sum + count, 0);
    },
    closeAcceptors: () => {
      for (const acceptor of extra) acceptor.close();
    },
  };
}

/** Whether any socket of this network namespace listens on `port`, IPv4 or IPv6. */
async function listenedOn(port: number): Promise<boolean> {
  for (const family of ['IPv4', 'IPv6']) if ((await readAcceptQueue(port, socketTable(family))) !== null) return true;
  return false;
}

function listenOne(server: Server, options: { port: number; host: string; backlog: number; reusePort: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(options, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
