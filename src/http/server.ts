import { createServer, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

/**
 * Server limits against slow or oversized clients (slowloris, header floods).
 * None of them applies to an answer: a stream lives as long as its upstream
 * keeps sending (the upstream's idle timeout is the only clock on it).
 */
export const SERVER_LIMITS = {
  /** To send the request head; also the longest a new connection may stay silent. A head is small. */
  headersTimeoutMs: 10_000,
  /** To send the whole request, body included: an 8 MiB upload needs about 70 s at 1 Mbit/s. */
  requestTimeoutMs: 300_000,
  /** An idle keep-alive connection between two requests. */
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
  /**
   * Connections the kernel completes before the gateway accepts them, per listening socket (Node's and nginx's
   * default; the kernel caps it at net.core.somaxconn). It fills only when the event loop is too busy to accept,
   * and then holds each new client unseen: `apiproxy_listen_queue_connections` shows it,
   * `apiproxy_listen_overflows_total` when it is full.
   */
  listenBacklog: 511,
  /**
   * Listening sockets on the port (src/http/listen.ts): the connections one event-loop iteration can accept.
   * Idle ones cost nothing; docs/performance.md has the same-run figures that chose 64.
   */
  acceptors: 64,
  /** How often Node checks headersTimeout and requestTimeout: how late past them a connection can be closed. */
  connectionsCheckingIntervalMs: 5_000,
  /**
   * After an early answer (413, 401) to a request not read to its end, the rest is read and dropped before the
   * connection closes (io/lingering-close.ts), for at most 30 s (nginx's lingering_time) ...
   */
  lingerMs: 30_000,
  /** ... 5 s without a byte (nginx's lingering_timeout) ... */
  lingerIdleMs: 5_000,
  /**
   * ... or 128 MiB: twice the 64 MiB upload a client sends whole before it reads, 16 times the default body limit.
   * Dropping costs a read per 64 KiB and no memory; 128 MiB take about 10 s at 100 Mbit/s, within the 30 s.
   */
  lingerBytes: 128 * 1024 * 1024,
} as const;

/** Why the server refused or closed a client connection itself, for `apiproxy_client_errors_total`. */
export type ClientErrorReason = 'request_timeout' | 'header_overflow' | 'bad_request' | 'silent_connection';

export type ServerLimits = { readonly [K in keyof typeof SERVER_LIMITS]: number };

/**
 * Node's headersTimeout runs from the moment a connection opens, so one that never sends a byte is
 * closed by the same clock as a slow head (up to connectionsCheckingIntervalMs late); only the byte
 * count tells the two apart.
 */
function reasonFor(status: 400 | 408 | 431, socket: Duplex): ClientErrorReason {
  if (status === 431) return 'header_overflow';
  if (status === 400) return 'bad_request';
  return (socket as Socket).bytesRead === 0 ? 'silent_connection' : 'request_timeout';
}

/** The HTTP/1.1 server with the limits applied and malformed requests answered without reaching the app. */
export function createHttpServer(handler: RequestListener, limits: ServerLimits, onClientError: (reason: ClientErrorReason) => void): Server {
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      maxHeaderSize: limits.maxHeaderSize,
      connectionsCheckingInterval: limits.connectionsCheckingIntervalMs,
      noDelay: true,
    },
    handler,
  );
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    // A reset or a close mid-request is the client leaving, not a limit biting.
    if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') onClientError(reasonFor(status, socket));
    if (!socket.writable) return socket.destroy();
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
    );
  });
  return server;
}
