import { readFile } from 'node:fs/promises';

/**
 * The kernel's side of accepting connections, read from procfs (Linux only; null elsewhere or when
 * unreadable). A connection the kernel has completed but the gateway has not yet accepted waits in
 * the listening socket's accept queue, unseen by the gateway; when that queue is full, the kernel
 * drops the handshake's last packet and the client retries a second or more later. Node offers no
 * view of either (nor does a library here), so they are read where `ss` and `netstat -s` read them.
 */

const LISTEN_STATE = '0A';

/**
 * Connections waiting in the accept queue of the listening sockets on `port` (IPv4 and IPv6 summed);
 * null when nothing listens there. For a listening socket, /proc/net/tcp's rx_queue column is that
 * queue's length (sk_ack_backlog).
 */
export async function readAcceptQueue(port: number, files: readonly string[] = ['/proc/net/tcp', '/proc/net/tcp6']): Promise<number | null> {
  const portHex = port.toString(16).toUpperCase().padStart(4, '0');
  // "  0: 0100007F:1F90 00000000:0000 0A 00000000:00000003 ..." : local address:port, remote, state, tx_queue:rx_queue
  const listener = new RegExp(`^\\s*\\d+: [0-9A-F]+:${portHex} [0-9A-F]+:[0-9A-F]{4} ${LISTEN_STATE} [0-9A-F]+:([0-9A-F]+) `, 'gm');
  let waiting: number | null = null;
  for (const file of files) {
    const text = await readFile(file, 'latin1').catch(() => null);
    if (text === null) continue;
    for (const match of text.matchAll(listener)) waiting = (waiting ?? 0) + parseInt(match[1]!, 16);
  }
  return waiting;
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
