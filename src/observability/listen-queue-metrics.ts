import client from 'prom-client';
import type { AddressInfo } from 'node:net';
import { readAcceptQueue, readAcceptQueueLimit, readListenOverflows, socketTable } from './listen-queue.js';

/**
 * The accept queue in metrics: how many connections wait in it now, its limit, and how many handshakes
 * were dropped because a queue was full. Registered only where procfs answers (Linux); elsewhere these
 * series are absent rather than a false zero. Every cluster worker reads the same kernel figures, so
 * the cluster reports one of them (`max`), not their sum.
 */
export async function registerListenQueueMetrics(registry: client.Registry, { port, family }: AddressInfo, backlog: number, sockets: number): Promise<void> {
  const table = socketTable(family);
  const [waiting, limit, overflows] = await Promise.all([readAcceptQueue(port, table), readAcceptQueueLimit(backlog), readListenOverflows()]);
  const registers = [registry];
  if (waiting !== null)
    new client.Gauge({
      name: 'apiproxy_listen_queue_connections',
      help: 'Client connections the kernel completed that the gateway has not yet accepted (the accept queues of its listening sockets); it grows when the event loop is too busy to accept.',
      labelNames: ['port'],
      registers,
      aggregator: 'max',
      async collect() {
        const now = await readAcceptQueue(port, table);
        this.reset();
        if (now !== null) this.set({ port: String(port) }, now);
      },
    });
  if (limit !== null)
    new client.Gauge({
      name: 'apiproxy_listen_queue_limit',
      help: "The accept queues' limit: the listen backlog, capped by net.core.somaxconn, times the listening sockets.",
      labelNames: ['port'],
      registers,
      aggregator: 'max',
      collect() {
        this.set({ port: String(port) }, limit * sockets);
      },
    });
  if (overflows !== null)
    new client.Counter({
      name: 'apiproxy_listen_overflows_total',
      help: "Handshakes the kernel dropped because an accept queue was full (TcpExt ListenOverflows of the network namespace: the pod's in Kubernetes, the host's otherwise); each costs its client a retry a second or more later.",
      registers,
      aggregator: 'max',
      async collect() {
        const now = await readListenOverflows();
        if (now === null) return;
        this.reset();
        this.inc(now);
      },
    });
}
