/**
 * The streaming load generator: keep-alive sockets that write a precomputed
 * request and decode just enough of the answer (status line, chunked framing,
 * the last event) to time the first body byte and check `data: [DONE]`.
 * Node's http client cost about as much CPU per event as the gateway relaying
 * it, on the same two cores; this one costs a fraction, so what the figure
 * measures is the gateway, not the client.
 */
import { connect, type Socket } from 'node:net';
import { CHAT_PATH, type StreamsResult, type Target } from './load.js';
import { percentile } from './stats.js';

const DONE = 'data: [DONE]\n\n';
const HEAD_END = Buffer.from('\r\n\r\n');

/** Where the decoder is in one response. */
const enum Phase {
  Head,
  Size,
  Data,
  DataEnd,
  Trailer,
}

class StreamConnection {
  readonly #target: URL;
  readonly #request: Buffer;
  readonly #onResult: (success: boolean, ttfbMs: number) => void;
  #socket: Socket | null = null;
  #phase = Phase.Head;
  #head: Buffer = Buffer.alloc(0);
  #sizeText = '';
  #remaining = 0;
  #tail = '';
  #startedAt = 0;
  #ttfbMs = -1;

  constructor(target: URL, request: Buffer, onResult: (success: boolean, ttfbMs: number) => void) {
    this.#target = target;
    this.#request = request;
    this.#onResult = onResult;
  }

  send(): void {
    if (this.#socket === null || this.#socket.destroyed) this.#open();
    this.#phase = Phase.Head;
    this.#head = Buffer.alloc(0);
    this.#sizeText = '';
    this.#tail = '';
    this.#ttfbMs = -1;
    this.#startedAt = performance.now();
    this.#socket!.write(this.#request);
  }

  close(): void {
    this.#socket?.destroy();
  }

  #open(): void {
    const socket = connect({ host: this.#target.hostname, port: Number(this.#target.port), noDelay: true });
    socket.on('data', (data: Buffer) => this.#read(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#end(false); // a no-op unless a response was still due
    });
    this.#socket = socket;
  }

  #end(success: boolean): void {
    const started = this.#startedAt;
    this.#startedAt = 0;
    if (started === 0) return;
    if (!success) {
      this.#socket?.destroy();
      this.#socket = null;
    }
    this.#onResult(success, this.#ttfbMs);
  }

  #read(data: Buffer): void {
    let at = 0;
    if (this.#phase === Phase.Head) {
      const head = this.#head.length === 0 ? data : Buffer.concat([this.#head, data]);
      const end = head.indexOf(HEAD_END);
      if (end === -1) {
        this.#head = head;
        return;
      }
      const text = head.toString('latin1', 0, end);
      if (!text.startsWith('HTTP/1.1 200') || !/\r\ntransfer-encoding: chunked/i.test(text)) {
        this.#end(false);
        return;
      }
      this.#phase = Phase.Size;
      data = head.subarray(end + HEAD_END.length);
    }
    while (at < data.length) {
      switch (this.#phase) {
        case Phase.Size: {
          const lineEnd = data.indexOf(10, at);
          if (lineEnd === -1) {
            this.#sizeText += data.toString('latin1', at);
            return;
          }
          const size = parseInt((this.#sizeText + data.toString('latin1', at, lineEnd)).trim(), 16);
          this.#sizeText = '';
          at = lineEnd + 1;
          if (size === 0) this.#phase = Phase.Trailer;
          else {
            this.#phase = Phase.Data;
            this.#remaining = size;
          }
          break;
        }
        case Phase.Data: {
          const take = Math.min(this.#remaining, data.length - at);
          if (this.#ttfbMs < 0) this.#ttfbMs = performance.now() - this.#startedAt;
          this.#tail = (this.#tail + data.toString('latin1', at, at + take)).slice(-DONE.length);
          this.#remaining -= take;
          at += take;
          if (this.#remaining === 0) {
            this.#phase = Phase.DataEnd;
            this.#remaining = 2;
          }
          break;
        }
        case Phase.DataEnd: {
          const skip = Math.min(this.#remaining, data.length - at);
          this.#remaining -= skip;
          at += skip;
          if (this.#remaining === 0) this.#phase = Phase.Size;
          break;
        }
        case Phase.Trailer: {
          // No trailers are sent: the final CRLF ends the response.
          this.#phase = Phase.Head;
          this.#end(this.#tail === DONE);
          return;
        }
        default:
          return;
      }
    }
  }
}

/** The bytes of a chat-completions POST to `target` with `body`, the target's headers and `extra`. */
export function streamRequest(target: Target, body: string, extra: Record<string, string>): Buffer {
  const headers = { ...target.headers, host: new URL(target.url).host, ...extra, 'content-length': String(Buffer.byteLength(body)) };
  return Buffer.from(
    `POST ${CHAT_PATH} HTTP/1.1\r\n${Object.entries(headers)
      .map(([name, value]) => `${name}: ${value}\r\n`)
      .join('')}\r\n${body}`,
  );
}

/**
 * Keeps `concurrency` event streams open for `seconds`, each a fresh request
 * on its keep-alive connection as soon as the previous one ends. TTFB is the
 * first body byte (the first event), measured from the request being written.
 */
export function rawStreams(target: Target, body: string, concurrency: number, seconds: number, chunks: number, intervalMs: number): Promise<StreamsResult> {
  const url = new URL(target.url);
  const request = streamRequest(target, body, { 'x-bench-chunks': String(chunks), 'x-bench-interval': String(intervalMs) });
  const ttfbs: number[] = [];
  let completed = 0;
  let errors = 0;
  const begin = performance.now();
  const deadline = begin + seconds * 1000;
  return new Promise((resolve) => {
    let open = concurrency;
    const connections: StreamConnection[] = [];
    for (let index = 0; index < concurrency; index++) {
      const connection: StreamConnection = new StreamConnection(url, request, (success, ttfbMs) => {
        if (success) {
          completed++;
          ttfbs.push(ttfbMs);
        } else errors++;
        if (performance.now() < deadline) {
          connection.send();
          return;
        }
        connection.close();
        if (--open === 0) {
          const elapsed = (performance.now() - begin) / 1000;
          resolve({ concurrency, seconds: elapsed, completed, errors, ttfbP50Ms: percentile(ttfbs, 50), ttfbP99Ms: percentile(ttfbs, 99) });
        }
      });
      connections.push(connection);
      connection.send();
    }
  });
}
