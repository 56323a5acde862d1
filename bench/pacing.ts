/**
 * Pacing and per-stream bookkeeping of the long-stream profile: when each
 * stream opens, when each of its tokens is due, and the gaps between the
 * tokens a client sees. Pure (clocks and randomness come in as arguments), so
 * unit-tested without sockets or timers.
 */

/**
 * When each of `count` streams opens during a ramp of `rampMs`: one in each
 * equal slice of the ramp, at a random point inside its slice. Evenly spread
 * (no burst of connects), yet no two streams share a phase.
 */
export function rampOffsets(count: number, rampMs: number, random: () => number = Math.random): number[] {
  const slice = count === 0 ? 0 : rampMs / count;
  return Array.from({ length: count }, (_, index) => (index + random()) * slice);
}

/**
 * One stream's token schedule, kept by deadline: token k is due at
 * `start + k * intervalMs`, from the stream's own start. A late timer delays
 * one token, never the ones after it, and a stream keeps its own phase:
 * `setInterval` re-arms from the event loop's cached time, so streams whose
 * timers once fired in the same turn stay in step for good.
 */
export class TokenSchedule {
  readonly start: number;
  readonly intervalMs: number;
  readonly total: number;
  #sent = 0;

  constructor(start: number, intervalMs: number, total: number) {
    this.start = start;
    this.intervalMs = intervalMs;
    this.total = total;
  }

  get sent(): number {
    return this.#sent;
  }

  get done(): boolean {
    return this.#sent >= this.total;
  }

  /** When the next token is due (on the clock `start` was read from). */
  get nextDue(): number {
    return this.start + this.#sent * this.intervalMs;
  }

  /**
   * Whole milliseconds to wait from `now` for the next token; 0 when it is due
   * (within half a millisecond: Node's timers have millisecond resolution and
   * keep one list per distinct duration, so fractions would cost a list each).
   */
  delayFrom(now: number): number {
    return Math.max(0, Math.round(this.nextDue - now));
  }

  /** Counts the next token as sent at `now`; returns how late it left (negative: early, by less than half a millisecond). */
  markSent(now: number): number {
    const lateness = now - this.nextDue;
    this.#sent++;
    return lateness;
  }
}

const LF = 10;

/**
 * Times the events of one response as its body arrives (the payload, chunked
 * framing taken off; an event may be cut across chunks and reads): every
 * `\n\n` ends an event. The gap before each token event but the first is passed to
 * `record`, in milliseconds; events past `tokens` (the `[DONE]` that follows
 * the last token) are counted but not timed. Events that arrive in one read
 * are seen at the same time: gaps of 0, as a client would see them.
 */
export class EventClock {
  readonly #tokens: number;
  readonly #record: (gapMs: number) => void;
  #events = 0;
  #lastAt = 0;
  #endsWithLf = false;

  constructor(tokens: number, record: (gapMs: number) => void) {
    this.#tokens = tokens;
    this.#record = record;
  }

  /** Events ended so far in this response. */
  get events(): number {
    return this.#events;
  }

  /** A new response on the same connection. */
  reset(): void {
    this.#events = 0;
    this.#lastAt = 0;
    this.#endsWithLf = false;
  }

  /** Body bytes `data[start, end)` arrived at `now`. */
  push(data: Buffer, start: number, end: number, now: number): void {
    if (start >= end) return;
    let at = start;
    if (this.#endsWithLf && data[at] === LF) {
      this.#ended(now);
      at++;
    }
    let pending = false;
    for (;;) {
      const lf = data.indexOf(LF, at);
      if (lf === -1 || lf >= end) break;
      if (lf + 1 === end) {
        pending = true; // maybe the first half of an event's end: the next read tells
        break;
      }
      if (data[lf + 1] === LF) {
        this.#ended(now);
        at = lf + 2;
      } else at = lf + 1;
    }
    this.#endsWithLf = pending;
  }

  #ended(now: number): void {
    const index = this.#events++;
    if (index > 0 && index < this.#tokens) this.#record(now - this.#lastAt);
    this.#lastAt = now;
  }
}

/**
 * What a piece of input did to the response being decoded: `more` (it goes
 * on), `complete` (it ended whole: status 200, chunked, every token and the
 * `[DONE]` after them), `failed` (it ended otherwise, or is not an event
 * stream: the connection is no use any more).
 */
export type Decoded = 'more' | 'complete' | 'failed';

const HEAD_END = Buffer.from('\r\n\r\n');
const CR = 13;
const SEMICOLON = 59;
const MAX_HEAD = 16 * 1024;

const enum Phase {
  Head,
  Size,
  SizeExtension,
  Data,
  DataEnd,
  Trailer,
  Ended,
}

/**
 * Decodes one event-stream response after another on a connection, in place
 * (the input buffer may be reused once `push` returns; only a head cut
 * across reads is copied): status line, chunked framing, the events
 * (EventClock). Tells when the first body byte came and when the response
 * ended, whole or not.
 */
export class EventStreamDecoder {
  readonly #clock: EventClock;
  readonly #tokens: number;
  #phase = Phase.Head;
  #head: Buffer | null = null;
  #size = 0;
  #remaining = 0;
  #lineLength = 0;
  #firstByteAt = Number.NaN;

  constructor(tokens: number, recordGap: (gapMs: number) => void) {
    this.#tokens = tokens;
    this.#clock = new EventClock(tokens, recordGap);
  }

  /** Events ended in this response so far (tokens, then `[DONE]`). */
  get events(): number {
    return this.#clock.events;
  }

  /** When the first body byte of this response came (the `now` of its push), NaN before. */
  get firstByteAt(): number {
    return this.#firstByteAt;
  }

  /** Ready for the next response. */
  reset(): void {
    this.#phase = Phase.Head;
    this.#head = null;
    this.#firstByteAt = Number.NaN;
    this.#clock.reset();
  }

  /** Bytes `data[start, end)` arrived at `now`. After Complete or Failed, reset before the next response. */
  push(data: Buffer, start: number, end: number, now: number): Decoded {
    let at = start;
    if (this.#phase === Phase.Ended) return 'failed'; // bytes nobody asked for
    if (this.#phase === Phase.Head) {
      const input = this.#head === null ? data.subarray(start, end) : Buffer.concat([this.#head, data.subarray(start, end)]);
      const headEnd = input.indexOf(HEAD_END);
      if (headEnd === -1) {
        if (input.length > MAX_HEAD) return this.#fail();
        this.#head = Buffer.from(input); // a copy: `data` may be reused
        return 'more';
      }
      const head = input.toString('latin1', 0, headEnd).toLowerCase();
      if (!head.startsWith('http/1.1 200 ') || !head.includes('\r\ntransfer-encoding: chunked')) return this.#fail();
      this.#head = null;
      this.#phase = Phase.Size;
      this.#size = 0;
      data = input;
      at = headEnd + HEAD_END.length;
      end = input.length;
    }
    while (at < end) {
      switch (this.#phase) {
        case Phase.Size: {
          const byte = data[at++]!;
          if (byte === LF) {
            if (this.#size === 0) {
              this.#phase = Phase.Trailer;
              this.#lineLength = 0;
            } else {
              this.#phase = Phase.Data;
              this.#remaining = this.#size;
            }
          } else if (byte === SEMICOLON) this.#phase = Phase.SizeExtension;
          else if (byte !== CR) {
            const digit = hexDigit(byte);
            if (digit === -1) return this.#fail();
            this.#size = this.#size * 16 + digit;
          }
          break;
        }
        case Phase.SizeExtension: {
          const lf = data.indexOf(LF, at);
          if (lf === -1 || lf >= end) return 'more';
          at = lf;
          this.#phase = Phase.Size;
          break;
        }
        case Phase.Data: {
          const take = Math.min(this.#remaining, end - at);
          if (Number.isNaN(this.#firstByteAt)) this.#firstByteAt = now;
          this.#clock.push(data, at, at + take, now);
          this.#remaining -= take;
          at += take;
          if (this.#remaining === 0) {
            this.#phase = Phase.DataEnd;
            this.#remaining = 2;
          }
          break;
        }
        case Phase.DataEnd: {
          const skip = Math.min(this.#remaining, end - at);
          this.#remaining -= skip;
          at += skip;
          if (this.#remaining === 0) {
            this.#phase = Phase.Size;
            this.#size = 0;
          }
          break;
        }
        case Phase.Trailer: {
          // Trailer lines, if any, then an empty line ends the response.
          const byte = data[at++]!;
          if (byte === LF) {
            if (this.#lineLength === 0) {
              this.#phase = Phase.Ended;
              return at === end && this.#clock.events > this.#tokens ? 'complete' : 'failed';
            }
            this.#lineLength = 0;
          } else if (byte !== CR) this.#lineLength++;
          break;
        }
        default:
          return this.#fail();
      }
    }
    return 'more';
  }

  #fail(): Decoded {
    this.#phase = Phase.Ended;
    return 'failed';
  }
}

function hexDigit(byte: number): number {
  if (byte >= 48 && byte <= 57) return byte - 48;
  if (byte >= 97 && byte <= 102) return byte - 87;
  if (byte >= 65 && byte <= 70) return byte - 55;
  return -1;
}
