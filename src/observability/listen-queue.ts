import { open, readFile } from 'node:fs/promises';

/**
 * The kernel's side of accepting connections, read from procfs (Linux only; null elsewhere or when
 * unreadable). A connection the kernel has completed but the gateway has not yet accepted waits in
 * the listening socket's accept queue, unseen by the gateway; when that queue is full, the kernel
 * drops the handshake's last packet and the client retries a second or more later. Node offers no
 * view of either (nor does a library here), so they are read where `ss` and `netstat -s` read them.
 */

const LISTEN_STATE = '0A';
const CHUNK_BYTES = 64 * 1024;

/** The procfs table that lists the listening sockets of an address family. */
export function socketTable(family: string): string {
  return family === 'IPv6' ? '/proc/net/tcp6' : '/proc/net/tcp';
}

/**
 * Connections waiting in the accept queue of the listening socket on `port` in `table` (socketTable);
 * null when nothing listens there. For a listening socket, the rx_queue column is that queue's length
 * (sk_ack_backlog). Only the listener's own family's table is read: the other one's walk finds no
 * line to stop at and goes through every connection of the host.
 */
export async function readAcceptQueue(port: number, table: string): Promise<number | null> {
  const portHex = ':' + port.toString(16).toUpperCase().padStart(4, '0');
  let waiting: number | null = null;
  for (const [local, queues] of (await listeningSockets(table)) ?? []) {
    if (local.endsWith(portHex)) waiting = (waiting ?? 0) + parseInt(queues.slice(queues.indexOf(':') + 1), 16);
  }
  return waiting;
}

/**
 * The local address and "tx_queue:rx_queue" of each listening socket in a /proc/net/tcp-format file. The
 * kernel lists listening sockets before all others (tcp_get_idx), so reading stops at the first other
 * line: the whole file holds a line per connection, and reading all of it at each scrape costs CPU
 * in proportion to the open streams (docs/performance.md, "The accept queue's cost per scrape").
 */
async function listeningSockets(file: string): Promise<[string, string][] | null> {
  const handle = await open(file, 'r').catch(() => null);
  if (handle === null) return null;
  try {
    const sockets: [string, string][] = [];
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    let partial = '';
    let header = true;
    for (;;) {
      const { bytesRead } = await handle.read(chunk, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) return sockets;
      const lines = (partial + chunk.toString('latin1', 0, bytesRead)).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (header) {
          header = false;
          continue;
        }
        // "  0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 ...": slot, local, remote, state, tx_queue:rx_queue
        const [, local, , state, queues] = line.trim().split(/\s+/, 5);
        if (state !== LISTEN_STATE || local === undefined || queues === undefined) return sockets;
        sockets.push([local, queues]);
      }
    }
  } finally {
    await handle.close();
  }
}

/** TcpExt ListenOverflows of the network namespace (the pod's, in Kubernetes): handshakes dropped because an accept queue was full. */
export async function readListenOverflows(file = '/proc/net/netstat'): Promise<number | null> {
  const text = await readFile(file, 'latin1').catch(() => null);
  if (text === null) return null;
  // Two lines per group: "TcpExt: Name1 Name2 ..." then "TcpExt: 1 2 ...".
  const [names, values] = text.split('\n').filter((line) => line.startsWith('TcpExt:'));
  if (names === undefined || values === undefined) return null;
  const at = names.split(' ').indexOf('ListenOverflows');
  const value = at === -1 ? undefined : values.split(' ')[at];
  return value === undefined ? null : Number(value);
}

/** The accept queue's limit: the backlog asked for, capped by net.core.somaxconn. */
export async function readAcceptQueueLimit(backlog: number, file = '/proc/sys/net/core/somaxconn'): Promise<number | null> {
  const text = await readFile(file, 'latin1').catch(() => null);
  if (text === null) return null;
  const somaxconn = Number(text.trim());
  return Number.isInteger(somaxconn) ? Math.min(backlog, somaxconn) : null;
}
