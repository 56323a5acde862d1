/**
 * The long-stream profile's upstream: event streams paced per stream by
 * deadline (TokenSchedule), on raw sockets. Node's http server cost about as
 * much CPU per event as the gateway relaying it; at thousands of streams on
 * two shared cores that would measure the upstream, not the gateway. This
 * one parses only what it needs of a request (its end, two bench headers)
 * and writes precomputed chunk frames.
 *
 *   Every request is answered with an event stream of `x-bench-chunks`
 *   chunks (default 1: a request that is not the bench's, such as a
 *   readiness probe, gets one event at once), the first with the head, then one every
 *   `x-bench-interval` ms (default 50) from the stream's start, the last
 *   one with `data: [DONE]` and the end of the response in one write.
 *   Keep-alive; request bodies by Content-Length or chunked.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { TokenSchedule } from './pacing.js';

const EVENT = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model', choices: [{ index: 0, delta: { content: ' token' }, finish_reason: null }] })}\n\n`;
const DONE = 'data: [DONE]\n\n';
const frame = (payload: string): string => `${Buffer.byteLength(payload).toString(16)}\r\n${payload}\r\n`;
const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n';
const FIRST = Buffer.from(HEAD + frame(EVENT));
const CHUNK = Buffer.from(frame(EVENT));
const LAST = Buffer.from(frame(EVENT + DONE) + '0\r\n\r\n');
const ONLY = Buffer.from(HEAD + frame(EVENT + DONE) + '0\r\n\r\n');
const BAD_REQUEST = Buffer.from('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const CHUNKED_END = Buffer.from('0\r\n\r\n');
const MAX_HEAD = 64 * 1024;

export interface PacedUpstreamOptions {
  /** How late (ms; negative: early) each chunk after the first left. */
  readonly onLateness?: (ms: number) => void;
}

/** A number from a header of a lower-cased request head, or `fallback`. */
function headerNumber(head: string, name: string, fallback: number): number {
  const at = head.indexOf(`\r\n${name}:`);
  if (at === -1) return fallback;
  const start = at + name.length + 3;
  const end = head.indexOf('\r\n', start);
  const value = Number(head.slice(start, end === -1 ? undefined : end).trim());
  return Number.isFinite(value) && value >= 0 ? value : fallback;
}

const enum State {
  Head,
  Body,
  ChunkedBody,
  Streaming,
}

class PacedConnection {
  readonly #socket: Socket;
  readonly #onLateness: ((ms: number) => void) | undefined;
  #state = State.Head;
  #pending: Buffer = Buffer.alloc(0);
  #bodyLeft = 0;
  #chunks = 0;
  #intervalMs = 0;
  #schedule: TokenSchedule | null = null;
  #timer: NodeJS.Timeout | null = null;
  readonly #tick = (): void => this.#send();

  constructor(socket: Socket, options: PacedUpstreamOptions) {
    this.#socket = socket;
    this.#onLateness = options.onLateness;
    socket.setNoDelay(true);
    socket.on('data', (data: Buffer) => this.#read(data));
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#timer !== null) clearTimeout(this.#timer);
      this.#timer = null;
    });
  }

  #read(data: Buffer): void {
    let input = this.#pending.length === 0 ? data : Buffer.concat([this.#pending, data]);
    this.#pending = Buffer.alloc(0);
    while (input.length > 0) {
      switch (this.#state) {
        case State.Head: {
          const end = input.indexOf(HEAD_END);
          if (end === -1) {
            if (input.length > MAX_HEAD) this.#fail();
            else this.#pending = input;
            return;
          }
          const head = input.toString('latin1', 0, end + 2).toLowerCase();
          this.#chunks = headerNumber(head, 'x-bench-chunks', 1);
          this.#intervalMs = headerNumber(head, 'x-bench-interval', 50);
          input = input.subarray(end + HEAD_END.length);
          if (head.includes('\r\ntransfer-encoding: chunked\r\n')) this.#state = State.ChunkedBody;
          else {
            this.#bodyLeft = headerNumber(head, 'content-length', 0);
            if (this.#bodyLeft === 0) this.#respond();
            else this.#state = State.Body;
          }
          break;
        }
        case State.Body: {
          const take = Math.min(this.#bodyLeft, input.length);
          this.#bodyLeft -= take;
          input = input.subarray(take);
          if (this.#bodyLeft === 0) this.#respond();
          break;
        }
        case State.ChunkedBody: {
          // The bench's request bodies hold no "0\r\n\r\n" of their own: their end is the last chunk.
          const end = input.indexOf(CHUNKED_END);
          if (end === -1) {
            this.#pending = input.subarray(Math.max(0, input.length - CHUNKED_END.length + 1));
            return;
          }
          input = input.subarray(end + CHUNKED_END.length);
          this.#respond();
          break;
        }
        case State.Streaming:
          this.#fail(); // no pipelining: nothing may come before the answer has ended
          return;
      }
    }
  }

  #respond(): void {
    if (this.#chunks <= 1) {
      this.#socket.write(ONLY);
      this.#state = State.Head;
      return;
    }
    this.#state = State.Streaming;
    const now = performance.now();
    this.#schedule = new TokenSchedule(now, this.#intervalMs, this.#chunks);
    this.#schedule.markSent(now);
    this.#socket.write(FIRST);
    this.#arm();
  }

  #arm(): void {
    this.#timer = setTimeout(this.#tick, Math.max(1, this.#schedule!.delayFrom(performance.now())));
  }

  #send(): void {
    this.#timer = null;
    const schedule = this.#schedule!;
    if (this.#socket.destroyed) return;
    const now = performance.now();
    if (schedule.delayFrom(now) > 0) {
      this.#arm(); // fired before the deadline: the timer started from the loop's cached time
      return;
    }
    this.#onLateness?.(schedule.markSent(now));
    if (schedule.done) {
      this.#schedule = null;
      this.#state = State.Head;
      this.#socket.write(LAST);
      return;
    }
    this.#socket.write(CHUNK);
    this.#arm();
  }

  #fail(): void {
    this.#socket.end(BAD_REQUEST);
    this.#socket.destroySoon();
  }
}

export function createPacedUpstream(options: PacedUpstreamOptions = {}): Server {
  return createServer({ noDelay: true }, (socket) => new PacedConnection(socket, options));
}
