/**
 * For tests that drive a transport directly against real servers on loopback:
 * a recording ExchangeHandler (what the transport reported, in order), and
 * servers that count their connections (node:http ones, and raw node:net ones
 * that write whatever bytes a test likes). closeTransportHarness() in an
 * afterEach closes the servers and checks that no recorder got an event after
 * its end.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Exchange, ExchangeHandler, ResponseHeaders } from '../../src/transport/types.js';
import { RequestSplitter } from './request-splitter.js';

// ---------------------------------------------------------------------------
// A recording handler

export interface RecorderOptions {
  /** Keep the body bytes (false: only count them). */
  keepBody?: boolean;
  onHead?: (recorder: Recorder) => void;
  onBody?: (recorder: Recorder) => void;
}

/** Every recorder made, to check afterwards that none got events after its end. */
const recorders: Recorder[] = [];

export class Recorder implements ExchangeHandler {
  exchange: Exchange | null = null;
  status = 0;
  headers: ResponseHeaders = {};
  readonly chunks: Buffer[] = [];
  /** Each delivery's `last` flag. */
  readonly lasts: boolean[] = [];
  payload = 0;
  ended = false;
  error: Error | null = null;
  /** Callbacks in the order they came. */
  readonly events: string[] = [];
  /** Resolves on end or error (never rejects: inspect `error`). */
  readonly done: Promise<void>;
  /** Resolves when the head arrives. */
  readonly head: Promise<void>;
  readonly #options: RecorderOptions;
  #settle!: () => void;
  #headed!: () => void;

  constructor(options: RecorderOptions = {}) {
    this.#options = options;
    this.done = new Promise((resolve) => (this.#settle = resolve));
    this.head = new Promise((resolve) => (this.#headed = resolve));
    recorders.push(this);
  }

  onStart(exchange: Exchange): void {
    this.events.push('start');
    this.exchange = exchange;
  }

  onHead(status: number, headers: ResponseHeaders): void {
    this.events.push('head');
    this.status = status;
    this.headers = headers;
    this.#headed();
    this.#options.onHead?.(this);
  }

  onBody(bytes: Buffer, last: boolean): void {
    if (this.events.at(-1) !== 'body') this.events.push('body');
    this.payload += bytes.length;
    this.lasts.push(last);
    // Deliberately not copied: the handler owns these bytes, later reads must not overwrite them.
    if (this.#options.keepBody !== false) this.chunks.push(bytes);
    this.#options.onBody?.(this);
  }

  onEnd(): void {
    this.events.push('end');
    this.ended = true;
    this.#settle();
  }

  onError(error: Error): void {
    this.events.push('error');
    this.error = error;
    this.#settle();
  }

  /** The response came in chunked coding. */
  get chunked(): boolean {
    return this.headers['transfer-encoding'] !== undefined;
  }

  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get text(): string {
    return this.body.toString('latin1');
  }

  get code(): string | undefined {
    return codeOf(this.error);
  }

  /** Events after the first end/error, or a second start. */
  get violations(): string[] {
    const terminal = this.events.findIndex((event) => event === 'end' || event === 'error');
    const after = terminal === -1 ? [] : this.events.slice(terminal + 1);
    return this.events.filter((event) => event === 'start').length > 1 ? ['start', ...after] : after;
  }
}

function codeOf(error: Error | null): string | undefined {
  if (error === null) return undefined;
  const code = (error as Error & { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

// ---------------------------------------------------------------------------
// Servers that count their connections

/** A handler that aborts its exchange from onStart with `reason`, recording everything into `rec`. */
export function abortingOnStart(rec: Recorder, reason: Error): ExchangeHandler {
  return {
    onStart: (exchange) => {
      rec.onStart(exchange);
      exchange.abort(reason);
    },
    onHead: (status, headers) => rec.onHead(status, headers),
    onBody: (bytes, last) => rec.onBody(bytes, last),
    onEnd: () => rec.onEnd(),
    onError: (error) => rec.onError(error),
  };
}

export interface Accepted {
  socket: Socket;
  /** When the client's FIN arrived (the client closed it), else null. */
  endedAt: number | null;
  /** Resolves when the socket is closed. */
  closed: Promise<void>;
  isClosed: boolean;
}

export interface TestServer {
  url: string;
  port: number;
  /** Every connection accepted, in order. */
  accepted: Accepted[];
  /** Connections open now, and the most ever open at once. */
  open: number;
  maxOpen: number;
  close(): Promise<void>;
}

const servers: TestServer[] = [];

/** Counts `event` connections of `server` and listens on an ephemeral loopback port. */
export async function track(server: NetServer, event: 'connection' | 'secureConnection', scheme: 'http' | 'https'): Promise<TestServer> {
  const accepted: Accepted[] = [];
  const state: TestServer = {
    url: '',
    port: 0,
    accepted,
    open: 0,
    maxOpen: 0,
    close: () =>
      new Promise<void>((resolve) => {
        for (const entry of accepted) entry.socket.destroy();
        server.close(() => resolve());
      }),
  };
  server.on(event, (socket: Socket) => {
    let markClosed!: () => void;
    const entry: Accepted = { socket, endedAt: null, closed: new Promise((resolve) => (markClosed = resolve)), isClosed: false };
    accepted.push(entry);
    state.open++;
    state.maxOpen = Math.max(state.maxOpen, state.open);
    socket.on('end', () => (entry.endedAt ??= Date.now()));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      entry.isClosed = true;
      state.open--;
      markClosed();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  state.port = (server.address() as AddressInfo).port;
  state.url = `${scheme}://127.0.0.1:${state.port}`;
  servers.push(state);
  return state;
}

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

export interface HttpTestServer extends TestServer {
  requests: SeenRequest[];
}

/** A node:http server; `handler` answers once the request body was read. */
export async function startHttp(handler: (req: IncomingMessage, res: ServerResponse, seen: SeenRequest) => void): Promise<HttpTestServer> {
  const requests: SeenRequest[] = [];
  const server: HttpServer = createHttpServer((request, res) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const seen = { method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks) };
      requests.push(seen);
      handler(request, res, seen);
    });
  });
  server.keepAliveTimeout = 30_000; // the server never closes first during a test
  const tracked = await track(server, 'connection', 'http');
  return Object.assign(tracked, { requests });
}

export interface RawRequest {
  socket: Socket;
  head: string;
  /** Which accepted connection it came on (0-based). */
  connection: number;
}

export interface RawTestServer extends TestServer {
  requests: RawRequest[];
  /** Every byte received, on every connection. */
  received: Buffer[];
}

/**
 * A node:net server that reads request heads (and content-length bodies) and
 * hands each to `onRequest`, which writes whatever bytes it likes.
 */
export async function startRaw(onRequest: (request: RawRequest) => void): Promise<RawTestServer> {
  const requests: RawRequest[] = [];
  const received: Buffer[] = [];
  const server = createNetServer();
  const tracked = await track(server, 'connection', 'http');
  server.on('connection', (socket: Socket) => {
    socket.setNoDelay(true);
    const connection = tracked.accepted.findIndex((entry) => entry.socket === socket);
    const splitter = new RequestSplitter();
    socket.on('data', (data: Buffer) => {
      received.push(data);
      for (const { head } of splitter.push(data)) {
        const request = { socket, head, connection };
        requests.push(request);
        onRequest(request);
      }
    });
  });
  return Object.assign(tracked, { requests, received });
}

/** Sizes of the chunks of a chunked body; throws, saying where, at the first framing error. */
export function decodeChunked(body: Buffer): number[] {
  const sizes: number[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', at);
    if (lineEnd === -1) throw new Error(`no chunk-size line at offset ${at}`);
    const line = body.toString('latin1', at, lineEnd);
    if (!/^[0-9a-fA-F]+(;.*)?$/.test(line)) throw new Error(`invalid chunk-size line at offset ${at}: ${JSON.stringify(line.slice(0, 20))}`);
    const size = parseInt(line, 16);
    at = lineEnd + 2;
    if (size === 0) {
      if (body.toString('latin1', at) !== '\r\n') throw new Error(`unexpected bytes after the last chunk at offset ${at}`);
      return sizes;
    }
    if (body.toString('latin1', at + size, at + size + 2) !== '\r\n') {
      throw new Error(
        `chunk ${sizes.length} (size ${size}) at offset ${at} is not followed by CRLF: ${JSON.stringify(body.toString('latin1', at + size - 4, at + size + 8))}`,
      );
    }
    sizes.push(size);
    at += size + 2;
  }
}

export const OK = (body: string, extra = ''): string => `HTTP/1.1 200 OK\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;

/** Closes every server started here and checks the recorders made since the last call. */
export async function closeTransportHarness(): Promise<void> {
  const made = recorders.splice(0);
  await Promise.all(servers.splice(0).map((server) => server.close()));
  for (const recorder of made) expect(recorder.violations).toEqual([]);
}
