import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { ClientGoneError } from '../errors/client-gone.js';
import { errorBody } from '../errors/gateway-error.js';
import { fromUpstreamError, timeoutPhase } from '../errors/upstream.js';
import { frameChunk } from '../io/chunk-frame.js';
import { atTurnEnd, corkForTurn } from '../io/turn-end.js';
import type { Exchange, ExchangeHandler, ResponseHeaders } from '../transport/types.js';
import { abandonThrough, endThrough, pushThrough, type BodyTransform, type BodyTransformFactory } from './body-transform.js';
import type { RequestLifecycle } from './lifecycle.js';
import { redactHeaders } from './redact.js';
import { clientResponseHeaders } from './upstream-headers.js';

/** What the relay needs to know besides the response. */
export interface RelayOptions {
  /** Values that must not reach the client (every secret the config holds): redacted from the headers. */
  readonly secrets: readonly string[];
  /** What the body passes through, in order (the secrets' redaction first); decided per response at its head. */
  readonly transforms: readonly BodyTransformFactory[];
  /** Rewrites a successful (2xx) body, which is then held and sent whole; null relays it as it comes. */
  readonly rewriteBody: ((body: Buffer) => Buffer) | null;
}

/**
 * The attempt loop's say over the answer (pipeline/forward.ts): it decides at
 * the head whether the answer is relayed, or discarded for another attempt.
 */
export interface AnswerGate {
  /** The answer's head came: true relays it; false discards it, and the relay holds its body for the loop. */
  opens(status: number, headers: ResponseHeaders): boolean;
  /** A discarded answer came whole: the loop keeps it as the last answer and tries again. */
  discarded(status: number, headers: ResponseHeaders, body: Buffer): void;
  /** A discarded answer's body grew past what is held: it is relayed after all, and the loop tries no more. */
  overflowed(): void;
  /** The exchange failed before an answer was relayed (or while a discarded one came): the loop tries again or answers. */
  failed(error: Error): void;
}

/** A body to rewrite is held whole up to this size; a larger one is relayed as it came. */
const MAX_HELD_BODY = 1024 * 1024;
/** A discarded answer is kept (to be relayed if no attempt answers better) up to this size; a larger one is relayed at once. */
const MAX_DISCARDED_BODY = 64 * 1024;
const CR = 13;
const LF = 10;
const NO_TRANSFORMS: readonly BodyTransform[] = [];

function transformsFor(
  factories: readonly BodyTransformFactory[],
  status: number,
  headers: ResponseHeaders,
  relayed: OutgoingHttpHeaders,
): readonly BodyTransform[] {
  const transforms: BodyTransform[] = [];
  for (const factory of factories) {
    const transform = factory.forResponse(status, headers, relayed);
    if (transform !== null) transforms.push(transform);
  }
  return transforms;
}

/**
 * Relays one upstream response into the client's response, chunk by chunk:
 * backpressure pauses the upstream, secrets are taken out of headers and
 * body, and what happens is reported to the request's lifecycle. With a gate,
 * nothing goes out before the attempt loop has opened it at the head; a
 * failure before that, or a discarded answer, is the loop's. Knows nothing of
 * Koa.
 */
export class Relay implements ExchangeHandler {
  readonly #lifecycle: RequestLifecycle;
  readonly #res: ServerResponse;
  readonly #secrets: readonly string[];
  readonly #rewriteBody: ((body: Buffer) => Buffer) | null;
  readonly #gate: AnswerGate | null;
  readonly #transformFactories: readonly BodyTransformFactory[];
  #transforms: readonly BodyTransform[] = NO_TRANSFORMS;
  #exchange: Exchange | null = null;
  #status = 0;
  #stream = false;
  /** The head went (or is going) to the client: from here on failures are the relay's. */
  #relaying = false;
  /** A discarded answer, held for the attempt loop. */
  #discarded: { status: number; headers: ResponseHeaders; chunks: Buffer[]; size: number } | null = null;
  /** An event stream whose first bytes the request's trace waits for. */
  #awaitingFirstChunk = false;
  /** Set while a body to rewrite is held back whole. */
  #held: { headers: OutgoingHttpHeaders; chunks: Buffer[]; size: number } | null = null;
  /** The head of an answer that is not an event stream, until the transforms let body bytes out: they may change it until then. */
  #head: OutgoingHttpHeaders | null = null;
  /**
   * An event stream's socket, written in chunks framed here: set when the
   * response owns it (not queued behind a pipelined one) and is chunked.
   * Its head and its end still go through the response.
   */
  #chunkSocket: Socket | null = null;
  /** Paused until the client's side (the response, or the chunk socket) drains. */
  #draining = false;
  /** The body's last bytes, when the upstream's response completes with them: they go out with its end. */
  #lastBytes: Buffer | null = null;
  /** The last (up to) three body bytes sent, the last in the low byte, and how many there are. */
  #tail = 0;
  #tailLength = 0;

  constructor(lifecycle: RequestLifecycle, options: RelayOptions, gate: AnswerGate | null) {
    this.#lifecycle = lifecycle;
    this.#res = lifecycle.res;
    this.#secrets = options.secrets;
    this.#rewriteBody = options.rewriteBody;
    this.#transformFactories = options.transforms;
    this.#gate = gate;
  }

  onStart(exchange: Exchange): void {
    this.#exchange = exchange;
    this.#lifecycle.attach(exchange);
  }

  onHead(status: number, headers: ResponseHeaders): void {
    const gate = this.#gate;
    if (gate !== null && !this.#res.destroyed && !gate.opens(status, headers)) {
      this.#discarded = { status, headers, chunks: [], size: 0 };
      return;
    }
    this.#relayHead(status, headers);
  }

  #relayHead(status: number, headers: ResponseHeaders): void {
    this.#relaying = true;
    this.#status = status;
    const contentType = headers['content-type'];
    this.#stream = typeof contentType === 'string' && contentType.startsWith('text/event-stream');
    const lifecycle = this.#lifecycle;
    lifecycle.upstreamResponded(this.#stream);
    this.#awaitingFirstChunk = this.#stream && lifecycle.trace !== null;
    const res = this.#res;
    if (res.destroyed) {
      this.#exchange?.abort(new ClientGoneError());
      return;
    }
    const relayed = clientResponseHeaders(headers, lifecycle.record.id);
    relayed['x-apiproxy-attempts'] = lifecycle.record.attempts;
    // Chunked coding overrides a Content-Length sent with it (RFC 9112 6.3); relaying it would misframe the answer.
    if (headers['transfer-encoding'] !== undefined) delete relayed['content-length'];
    // Any status: an upstream that echoes the request's Authorization in a header must not hand the key on.
    if (this.#secrets.length > 0 && redactHeaders(relayed, this.#secrets) > 0) this.#lifecycle.redacted('header');
    // The consumer's budgets at this gateway, in place of whatever the upstream says of its own.
    const budgets = this.#lifecycle.rateLimitHeaders;
    if (budgets !== null) Object.assign(relayed, budgets);
    if (this.#transformFactories.length > 0) this.#transforms = transformsFor(this.#transformFactories, status, headers, relayed);
    if (this.#rewriteBody !== null && status >= 200 && status < 300) {
      this.#held = { headers: relayed, chunks: [], size: 0 };
      return;
    }
    if (!this.#stream && this.#transforms.length > 0) {
      this.#head = relayed;
      return;
    }
    res.writeHead(status, relayed);
    if (!this.#stream) return;
    res.flushHeaders();
    // A response is given its socket only when it is the one being answered, so its head is on that socket now.
    if (res.chunkedEncoding && res.socket !== null) this.#chunkSocket = res.socket;
  }

  onBody(bytes: Buffer, last: boolean): void {
    const discarded = this.#discarded;
    if (discarded !== null) {
      discarded.chunks.push(bytes);
      discarded.size += bytes.length;
      if (discarded.size > MAX_DISCARDED_BODY) this.#relayDiscarded();
      return;
    }
    if (this.#awaitingFirstChunk) {
      this.#awaitingFirstChunk = false;
      this.#lifecycle.firstChunk();
    }
    if (this.#transforms.length > 0) {
      bytes = pushThrough(this.#transforms, bytes);
      if (bytes.length === 0) return;
    }
    const held = this.#held;
    if (held !== null) {
      held.chunks.push(bytes);
      held.size += bytes.length;
      if (held.size > MAX_HELD_BODY) this.#releaseHeld();
      return;
    }
    if (this.#head !== null) this.#writeHead();
    this.#send(bytes, last);
  }

  onEnd(): void {
    const discarded = this.#discarded;
    if (discarded !== null) {
      this.#discarded = null;
      this.#exchange = null;
      this.#gate!.discarded(discarded.status, discarded.headers, Buffer.concat(discarded.chunks, discarded.size));
      return;
    }
    const held = this.#held;
    let lastBytes = this.#lastBytes;
    const carried = this.#transforms.length > 0 ? endThrough(this.#transforms) : null;
    if (held !== null) {
      this.#held = null;
      if (carried !== null) held.chunks.push(carried);
      const body = this.#rewriteBody!(Buffer.concat(held.chunks));
      held.headers['content-length'] = body.length;
      this.#res.writeHead(this.#status, held.headers);
      this.#count(body);
      lastBytes = body;
    } else if (carried !== null) {
      this.#count(carried);
      lastBytes = lastBytes === null ? carried : Buffer.concat([lastBytes, carried]);
    }
    if (this.#head !== null) this.#writeHead();
    const res = this.#res;
    if (!res.writableEnded) {
      // A plain answer ends with the rest of this turn's writes; an event stream's end is never held back.
      if (this.#stream) endResponse(res, lastBytes);
      else atTurnEnd(endResponse, res, lastBytes);
    }
    this.#finish(null);
  }

  onError(error: Error): void {
    if (!this.#relaying && this.#gate !== null) {
      this.#discarded = null;
      this.#exchange = null;
      this.#gate.failed(error);
      return;
    }
    const res = this.#res;
    if (error instanceof ClientGoneError || res.destroyed) {
      this.#finish(null);
      return;
    }
    const gatewayError = fromUpstreamError(error);
    const phase = timeoutPhase(error);
    if (phase !== null) this.#lifecycle.timedOut(phase);
    this.#held = null;
    this.#head = null;
    // What a transform held only to see it whole (the start of an event) goes out as the upstream sent it.
    const rest = res.headersSent && this.#transforms.length > 0 ? abandonThrough(this.#transforms) : null;
    if (rest !== null) this.#count(rest);
    if (!res.headersSent) {
      this.#lifecycle.fail(gatewayError);
    } else if (this.#stream && this.#appendable()) {
      // Headers are gone: end the event stream with an OpenAI-style error event the SDKs raise.
      const event = `data: ${errorBody(gatewayError)}\n\n`;
      res.end(rest === null ? event : Buffer.concat([rest, Buffer.from(event)]));
    } else if (rest !== null) {
      // A truncated body (or event) must not look complete: close the connection, once the rest is out.
      res.write(rest, () => res.destroy());
    } else {
      res.destroy();
    }
    this.#finish(gatewayError.code);
  }

  #writeHead(): void {
    this.#res.writeHead(this.#status, this.#head!);
    this.#head = null;
  }

  #send(bytes: Buffer, last: boolean): void {
    this.#count(bytes);
    if (last) {
      // One call then writes them and ends the response (with the head, when they are all there is).
      this.#lastBytes = bytes;
      return;
    }
    // An event's bytes leave with the rest of the turn's writes: on a busy gateway one write and one reader wakeup per batch, not per event.
    const socket = this.#chunkSocket;
    if (socket !== null) {
      if (bytes.length === 0) return; // an empty chunk is the body's end
      corkForTurn(socket);
      if (!socket.write(frameChunk(bytes))) this.#waitForDrain();
      return;
    }
    if (this.#stream) corkForTurn(this.#res.socket);
    if (!this.#res.write(bytes)) this.#waitForDrain();
  }

  /** A discarded answer grew past what is kept: relayed after all, from here on as it comes. */
  #relayDiscarded(): void {
    const discarded = this.#discarded!;
    this.#discarded = null;
    this.#gate!.overflowed();
    this.#relayHead(discarded.status, discarded.headers);
    for (const chunk of discarded.chunks) {
      if (this.#exchange === null) return; // the client left at the head
      this.onBody(chunk, false);
    }
  }

  /** A body to rewrite grew past the bound: it goes out as it came, from here on relayed as it comes. */
  #releaseHeld(): void {
    const held = this.#held!;
    this.#held = null;
    this.#res.writeHead(this.#status, held.headers);
    for (const chunk of held.chunks) this.#send(chunk, false);
  }

  #count(bytes: Buffer): void {
    this.#lifecycle.record.bytesOut += bytes.length;
    let tail = this.#tail;
    for (let at = bytes.length - Math.min(bytes.length, 3); at < bytes.length; at++) tail = ((tail << 8) | bytes[at]!) & 0xffffff;
    this.#tail = tail;
    this.#tailLength = Math.min(3, this.#tailLength + bytes.length);
  }

  /** Whether an event may follow what was sent: nothing was, or it ends with a blank line (two line ends). */
  #appendable(): boolean {
    const length = this.#tailLength;
    if (length === 0) return true;
    const tail = this.#tail;
    const last = tail & 0xff;
    const second = length >= 2 ? (tail >> 8) & 0xff : -1;
    if (last === CR) return second === CR || second === LF;
    if (last !== LF) return false;
    const before = second === CR ? (length >= 3 ? (tail >> 16) & 0xff : -1) : second;
    return before === CR || before === LF;
  }

  #waitForDrain(): void {
    // The rest of an upstream read still arrives after the pause: wait for one drain, not one per write.
    if (this.#draining) return;
    this.#draining = true;
    this.#exchange?.pause();
    (this.#chunkSocket ?? this.#res).once('drain', this.#resume);
  }

  readonly #resume = (): void => {
    this.#draining = false;
    this.#exchange?.resume();
  };

  #finish(errorCode: string | null): void {
    (this.#chunkSocket ?? this.#res).off('drain', this.#resume);
    this.#exchange = null;
    this.#lifecycle.upstreamSettled(errorCode);
  }
}

function endResponse(res: ServerResponse, lastBytes: Buffer | null): void {
  if (res.destroyed) return;
  if (lastBytes === null) res.end();
  else res.end(lastBytes);
}
