import type { OutgoingHttpHeaders } from 'node:http';
import { ownedCopy } from '../io/owned-bytes.js';
import type { ResponseHeaders } from '../transport/types.js';
import { findModel, findUsage, usageAt, valueStart, type TokenUsage } from '../usage/token-usage.js';
import type { BodyTransform, BodyTransformFactory } from './body-transform.js';

/** What a request's answer says it cost. */
export type UsageResult =
  | { readonly kind: 'reported'; readonly usage: TokenUsage }
  /**
   * The answer should have said and did not (a stream the client left, an
   * upstream that reports nothing): token limits are charged `estimate`
   * instead (the prompt's bytes / 4, plus one token per event received), so
   * leaving a stream early does not spend nothing.
   */
  | { readonly kind: 'unknown'; readonly estimate: number };

/** How much of an answer's end is kept to find its usage: the usage object and what may follow it (user, metadata). */
const TAIL_BYTES = 64 * 1024;
/** How much of an answer's start is searched for the model that answered. */
const HEAD_BYTES = 4096;
/** The head's first allocation: most heads fill it with an event or two. */
const HEAD_START_BYTES = 1024;
/** An event held back this long without ending is let through as it is (it cannot be the small usage event). */
const MAX_HELD_EVENT = 1024 * 1024;
const LF = 0x0a;
const CR = 0x0d;
const OPEN_BRACE = 0x7b;
const COMMA = 0x2c;
const USAGE_TEXT = '"usage"';
const CHOICES_KEY = Buffer.from('"choices"');
const DATA_TEXT = 'data:';
const EMPTY = Buffer.alloc(0);

/**
 * Reads the token usage of one request's answer as it is relayed (the
 * usage transform: after the key redaction, on 2xx answers of the token
 * endpoints). A JSON answer passes untouched; its end is kept to find
 * `usage`, its start to find `model`. An event stream passes untouched too,
 * unless the gateway asked the upstream for usage the client did not ask
 * for (`stream_options.include_usage`): then the usage-only event and the
 * `"usage":null` of the other events are taken out, so the client gets what
 * it would have got. Only events that contain `"usage"` are looked into.
 */
export class UsageMeter implements BodyTransformFactory {
  /** The gateway adds include_usage to the request (and takes what it adds out of the answer). */
  readonly addsStreamUsage: boolean;
  readonly #requestBytes: number;
  #reader: UsageReader | null = null;

  /** `addsStreamUsage`: see above; `requestBytes`: the request body's size, for the estimate. */
  constructor(addsStreamUsage: boolean, requestBytes: number) {
    this.addsStreamUsage = addsStreamUsage;
    this.#requestBytes = requestBytes;
  }

  forResponse(status: number, upstreamHeaders: ResponseHeaders, relayed: OutgoingHttpHeaders): BodyTransform | null {
    this.#reader = null;
    if (status < 200 || status >= 300) return null;
    const type = upstreamHeaders['content-type'];
    if (typeof type !== 'string') return null;
    if (type.startsWith('text/event-stream')) {
      // Taking events out makes a declared length untrue (event streams rarely declare one).
      if (this.addsStreamUsage) delete relayed['content-length'];
      return (this.#reader = new StreamUsage(this.addsStreamUsage));
    }
    if (type.startsWith('application/json')) return (this.#reader = new JsonUsage());
    // An answer of another kind (audio, an image) reports no usage the gateway reads.
    return null;
  }

  /** What the answer reported, as far as it got; null when it was not one that reports usage (an error, no answer). */
  result(): UsageResult | null {
    const reader = this.#reader;
    if (reader === null) return null;
    const usage = reader.usage();
    if (usage !== null) return { kind: 'reported', usage };
    return { kind: 'unknown', estimate: Math.ceil(this.#requestBytes / 4) + reader.events };
  }

  /** The model the answer named (searched for when asked: most requests name their own); null when it named none or was not metered. */
  answerModel(): string | null {
    return this.#reader?.model() ?? null;
  }
}

interface UsageReader extends BodyTransform {
  usage(): TokenUsage | null;
  model(): string | null;
  /** Events received (0 for a JSON answer). */
  readonly events: number;
}

/** The last TAIL_BYTES (or a little more) of a body, as the pieces it came in. */
class Tail {
  readonly #pieces: Buffer[] = [];
  #first = 0;
  #size = 0;

  add(bytes: Buffer): void {
    this.#pieces.push(bytes);
    this.#size += bytes.length;
    while (this.#size - this.#pieces[this.#first]!.length >= TAIL_BYTES) this.#size -= this.#pieces[this.#first++]!.length;
    if (this.#first > 64 && this.#first * 2 > this.#pieces.length) {
      this.#pieces.splice(0, this.#first);
      this.#first = 0;
    }
  }

  bytes(): Buffer {
    const count = this.#pieces.length - this.#first;
    if (count === 1) return this.#pieces[this.#first]!;
    const joined = Buffer.concat(this.#pieces.slice(this.#first), this.#size);
    // Read once or twice at the end (usage, model): joined once.
    this.#pieces.length = 0;
    this.#pieces.push(joined);
    this.#first = 0;
    return joined;
  }
}

/** The first pieces of a body, up to HEAD_BYTES, as they came: a JSON answer's pieces live only as long as its request. */
class PieceHead {
  readonly #pieces: Buffer[] = [];
  #size = 0;

  add(bytes: Buffer): void {
    if (this.#size >= HEAD_BYTES) return;
    this.#pieces.push(bytes);
    this.#size += bytes.length;
  }

  /** The first `"model"` of the head. */
  model(): string | null {
    if (this.#pieces.length === 0) return null;
    const bytes = this.#pieces.length === 1 ? this.#pieces[0]! : Buffer.concat(this.#pieces, this.#size);
    return findModel(bytes.subarray(0, HEAD_BYTES), false);
  }
}

/**
 * The start of a body, up to HEAD_BYTES, copied into memory of its own: an
 * event stream keeps it for its whole life (src/io/owned-bytes.ts). Once
 * full, only the model found in it is kept.
 */
class Head {
  #bytes: Buffer = EMPTY;
  #size = 0;
  /** Found once the head is full (its bytes then dropped); undefined before. */
  #model: string | null | undefined;

  add(bytes: Buffer): void {
    if (this.#model !== undefined) return;
    const take = Math.min(bytes.length, HEAD_BYTES - this.#size);
    const size = this.#size + take;
    if (size > this.#bytes.length) {
      const grown = Buffer.allocUnsafeSlow(Math.min(HEAD_BYTES, Math.max(HEAD_START_BYTES, size * 2)));
      this.#bytes.copy(grown, 0, 0, this.#size);
      this.#bytes = grown;
    }
    bytes.copy(this.#bytes, this.#size, 0, take);
    this.#size = size;
    if (size === HEAD_BYTES) {
      this.#model = findModel(this.#bytes, false);
      this.#bytes = EMPTY;
    }
  }

  /** The first `"model"` of the head. */
  model(): string | null {
    return this.#model !== undefined ? this.#model : findModel(this.#bytes.subarray(0, this.#size), false);
  }
}

class JsonUsage implements UsageReader {
  readonly events = 0;
  readonly #head = new PieceHead();
  readonly #tail = new Tail();
  #usage: TokenUsage | null | undefined;

  push(bytes: Buffer): Buffer {
    this.#head.add(bytes);
    this.#tail.add(bytes);
    return bytes;
  }

  end(): null {
    return null;
  }

  usage(): TokenUsage | null {
    if (this.#usage === undefined) this.#usage = findUsage(this.#tail.bytes());
    return this.#usage;
  }

  /** Near the start in chat completions and responses; near the end in embeddings. */
  model(): string | null {
    return this.#head.model() ?? findModel(this.#tail.bytes(), true);
  }
}

class StreamUsage implements UsageReader {
  /** Takes out what the gateway's include_usage added; without it the stream passes untouched. */
  readonly #strip: boolean;
  /** The start of an event not yet complete (held back when stripping, only read otherwise). */
  #carry: Buffer | null = null;
  #usage: TokenUsage | null = null;
  /** Every event of a chat stream names the model; the first of a Responses stream holds it. */
  readonly #head = new Head();
  events = 0;

  constructor(strip: boolean) {
    this.#strip = strip;
  }

  push(bytes: Buffer): Buffer {
    this.#head.add(bytes);
    let data = bytes;
    const carried = this.#carry?.length ?? 0;
    if (this.#carry !== null) {
      data = Buffer.concat([this.#carry, bytes]);
      this.#carry = null;
    }
    // latin1: one character per byte, so string indexes are byte offsets; searched as a string, which costs
    // no call into C++ per search (docs/performance.md, "The usage meter searches a string").
    const text = data.toString('latin1');
    // Events begun in this read: a `data:` wholly in the carry was counted with the read that brought it.
    const first = Math.max(0, carried - DATA_TEXT.length + 1);
    for (let at = text.indexOf(DATA_TEXT, first); at !== -1; at = text.indexOf(DATA_TEXT, at + DATA_TEXT.length)) this.events++;
    // Usage is read from whole events: an incomplete one waits for its end (a client acts on whole events only).
    const end = completeEventsEnd(text);
    // Kept across reads: in memory of its own (src/io/owned-bytes.ts).
    if (end < data.length && data.length - end <= MAX_HELD_EVENT) this.#carry = ownedCopy(data, end);
    const limit = this.#carry === null ? data.length : end;
    if (!this.#strip) {
      this.#read(data, text, limit);
      return bytes;
    }
    return this.#rewrite(data, text, limit);
  }

  end(): Buffer | null {
    const carry = this.#carry;
    this.#carry = null;
    if (carry === null) return null;
    const text = carry.toString('latin1');
    if (!this.#strip) {
      this.#read(carry, text, carry.length);
      return null;
    }
    return this.#rewrite(carry, text, carry.length);
  }

  /** Cut short: the unfinished event goes out as it came, so the client sees the cut where the upstream made it. */
  abandon(): Buffer | null {
    const carry = this.#carry;
    if (carry !== null) this.#usage ??= findUsage(carry);
    this.#carry = null;
    return this.#strip ? carry : null;
  }

  usage(): TokenUsage | null {
    // A usage event may sit unfinished in the carry when the stream was cut.
    if (this.#usage === null && this.#carry !== null) this.#usage = findUsage(this.#carry);
    return this.#usage;
  }

  model(): string | null {
    return this.#head.model();
  }

  /** Notes the usage objects of `data` (read as `text`) up to `end` (whole events; the last one found counts). */
  #read(data: Buffer, text: string, end: number): void {
    for (let at = text.indexOf(USAGE_TEXT); at !== -1 && at < end; at = text.indexOf(USAGE_TEXT, at + USAGE_TEXT.length)) {
      const value = valueStart(data, at, USAGE_TEXT.length);
      if (value === -1 || data[value] !== OPEN_BRACE) continue;
      const usage = usageAt(data, at);
      if (usage !== null) this.#usage = usage;
    }
  }

  /**
   * `data` up to `limit` (read as `text`) without the usage-only event and
   * the `"usage":null` members; the same bytes when it has neither. Events
   * without `"usage"` pass whole, unlooked at.
   */
  #rewrite(data: Buffer, text: string, limit: number): Buffer {
    let at = text.indexOf(USAGE_TEXT);
    if (at === -1 || at >= limit) return limit === data.length ? data : data.subarray(0, limit);
    const pieces: Buffer[] = [];
    let start = 0;
    while (at !== -1 && at < limit) {
      let end = eventEnd(text, start, limit);
      while (end <= at) {
        start = end;
        end = eventEnd(text, start, limit);
      }
      // The event [start, end) holds `at`.
      pieces.push(this.#rewriteEvent(data.subarray(start, end), text, start, at - start));
      start = end;
      at = text.indexOf(USAGE_TEXT, end);
    }
    if (start < limit) pieces.push(data.subarray(start, limit));
    return pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
  }

  /** One event (at `offset` in `text`) whose first `"usage"` is at `at`: what of it goes on. */
  #rewriteEvent(event: Buffer, text: string, offset: number, at: number): Buffer {
    const pieces: Buffer[] = [];
    let from = 0;
    while (at !== -1 && at < event.length) {
      const value = valueStart(event, at, USAGE_TEXT.length);
      if (value !== -1 && event[value] === OPEN_BRACE) {
        const usage = usageAt(event, at);
        if (usage !== null) {
          this.#usage = usage;
          if (hasNoChoices(event)) return EMPTY;
        }
      } else if (value !== -1 && isNull(event, value)) {
        const [cutFrom, cutTo] = memberSpan(event, at, value + 4);
        pieces.push(event.subarray(from, cutFrom));
        from = cutTo;
      }
      const next = text.indexOf(USAGE_TEXT, offset + Math.max(from, at + USAGE_TEXT.length));
      at = next === -1 ? -1 : next - offset;
    }
    if (from === 0) return event;
    pieces.push(event.subarray(from));
    return Buffer.concat(pieces);
  }
}

/** `null` at `at`. */
function isNull(bytes: Buffer, at: number): boolean {
  return bytes[at] === 0x6e && bytes[at + 1] === 0x75 && bytes[at + 2] === 0x6c && bytes[at + 3] === 0x6c;
}

/** The member `"usage":null` from `key` to `valueEnd`, with the comma that separates it from a neighbour. */
function memberSpan(event: Buffer, key: number, valueEnd: number): [number, number] {
  let before = key - 1;
  while (before >= 0 && isBlank(event[before]!)) before--;
  if (event[before] === COMMA) return [before, valueEnd];
  let after = valueEnd;
  while (after < event.length && isBlank(event[after]!)) after++;
  if (event[after] !== COMMA) return [key, valueEnd];
  after++;
  while (after < event.length && isBlank(event[after]!)) after++;
  return [key, after];
}

/** An event whose `choices` is an empty array: the usage-only event include_usage adds. */
function hasNoChoices(event: Buffer): boolean {
  const at = event.indexOf(CHOICES_KEY);
  if (at === -1) return false;
  const value = valueStart(event, at, CHOICES_KEY.length);
  if (value === -1 || event[value] !== 0x5b) return false;
  let i = value + 1;
  while (i < event.length && isBlank(event[i]!)) i++;
  return event[i] === 0x5d;
}

function isBlank(c: number): boolean {
  return c === 0x20 || c === LF || c === CR || c === 0x09;
}

/** The index after the blank line that ends the event starting at `from` in `text[0, limit)`, or limit. */
function eventEnd(text: string, from: number, limit: number): number {
  for (let i = text.indexOf('\n', from); i !== -1 && i < limit; i = text.indexOf('\n', i + 1)) {
    const next = i + 1 < limit ? text.charCodeAt(i + 1) : -1;
    if (next === LF) return i + 2;
    if (next === CR && i + 2 < limit && text.charCodeAt(i + 2) === LF) return i + 3;
  }
  return limit;
}

/** The index after the last blank line in `text` (where its complete events end), or 0. */
function completeEventsEnd(text: string): number {
  for (let i = text.lastIndexOf('\n'); i > 0; i = text.lastIndexOf('\n', i - 1)) {
    const before = text.charCodeAt(i - 1);
    if (before === LF || (before === CR && text.charCodeAt(i - 2) === LF)) return i + 1;
  }
  return 0;
}
