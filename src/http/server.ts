import { createServer, type IncomingMessage, type RequestListener, type Server } from 'node:http';
import type { Socket } from 'node:net';

/** Server limits against slow or oversized clients (slowloris, header floods). */
export const SERVER_LIMITS = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 60_000,
  keepAliveTimeoutMs: 5_000,
  maxHeaderSize: 16 * 1024,
  /** How often Node checks headersTimeout and requestTimeout (its default). */
  connectionsCheckingIntervalMs: 30_000,
} as const;

export type ServerLimits = { readonly [K in keyof typeof SERVER_LIMITS]: number };

const AWAITING_FIRST_REQUEST = Symbol('awaiting first request');
type AwaitingFirstRequest = Socket & { [AWAITING_FIRST_REQUEST]?: boolean };

/** The HTTP/1.1 server with the limits applied and malformed requests answered without reaching the app. */
export function createHttpServer(handler: RequestListener, limits: ServerLimits): Server {
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
  // Node's headersTimeout counts from a request's first byte: a connection that never sends one
  // would be held forever (a slowloris that sends nothing). Close it after headersTimeout of
  // silence; from its first request on, requestTimeout and then keep-alive take over.
  server.on('connection', (socket: Socket) => {
    (socket as AwaitingFirstRequest)[AWAITING_FIRST_REQUEST] = true;
    socket.setTimeout(limits.headersTimeoutMs);
  });
  server.on('request', (req: IncomingMessage) => {
    const socket = req.socket as AwaitingFirstRequest;
    if (socket[AWAITING_FIRST_REQUEST] === true) {
      socket[AWAITING_FIRST_REQUEST] = false;
      socket.setTimeout(0);
    }
  });
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy();
    const status = error.code === 'HPE_HEADER_OVERFLOW' ? 431 : error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    socket.end(
      `HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`,
    );
  });
  return server;
}
