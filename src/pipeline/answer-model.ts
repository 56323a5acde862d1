import type { OutgoingHttpHeaders } from 'node:http';
import { ownedConcat, ownedCopy, ownedText } from '../io/owned-bytes.js';
import type { RoutePlan } from '../routing/resolve.js';
import type { ResponseHeaders } from '../transport/types.js';
import type { BodyTransform, BodyTransformFactory } from './body-transform.js';
import { objectValueSpan } from './json-request.js';
import { partialSuffix } from './redact.js';

/**
 * The model a client asked for, written back into the answer's `model` (the
 * seed's "automatic model mapping"): a client that asked for `gpt-4`, sent
 * upstream as `gpt-4o`, reads `gpt-4` in the answer, so code that checks
 * `response.model` does not change behaviour when an alias moves. Only the
 * value of `model` changes; every other byte is the upstream's. The model
 * the upstream got stays visible in the `x-apiproxy-upstream-model` header.
 */

/** What became of an answer whose model was due to be replaced. */
export type AnswerModelResult = 'rewritten' | 'absent' | 'compressed' | 'too_large';

/** The response header naming the model the request was sent upstream as. */
export const UPSTREAM_MODEL_HEADER = 'x-apiproxy-upstream-model';

/**
 * A JSON answer is held whole to replace its model and send a true
 * Content-Length; one larger than this is relayed as it came (the model of an
 * embeddings list comes after its vectors, so holding less would not do).
 */
export const MAX_HELD_ANSWER = 8 * 1024 * 1024;

/** An event-stream line longer than this is relayed as it comes, unchanged, rather than held. */
export const MAX_EVENT_LINE = 1024 * 1024;

const EMPTY: Buffer = Buffer.alloc(0);
const MODEL_KEY = '"model"';
const MODEL_KEY_BYTES = Buffer.from(MODEL_KEY);
const DATA_FIELD = 'data:';
const LF = 10;
const CR = 13;
const QUOTE = 34;

/** Decides per response whether its model is replaced, and names the upstream's model in a header. */
export interface AnswerModelFactory extends BodyTransformFactory {
  /** Answers are to carry the requested model: the upstream is asked for an unencoded body. */
  readonly rewrites: boolean;
}

/**
 * The answer-model stage of a request whose route sent it upstream under
 * another name (`sent`), or null when no route changed the name. `report`
 * hears what became of each answer that was due a rewrite.
 */
export function answerModel(plan: RoutePlan, sent: string, report: (result: AnswerModelResult) => void): AnswerModelFactory | null {
  const requested = plan.requestedModel;
  if (requested === null || requested === sent) return null;
  return new AnswerModel(requested, sent, plan.answerModel === 'requested', report);
}

class AnswerModel implements AnswerModelFactory {
  readonly rewrites: boolean;
  readonly #requested: string;
  readonly #sent: string;
  readonly #report: (result: AnswerModelResult) => void;

  constructor(requested: string, sent: string, rewrites: boolean, report: (result: AnswerModelResult) => void) {
    this.#requested = requested;
    this.#sent = sent;
    this.rewrites = rewrites;
    this.#report = report;
  }

  forResponse(status: number, headers: ResponseHeaders, relayed: OutgoingHttpHeaders): BodyTransform | null {
    relayed[UPSTREAM_MODEL_HEADER] = headerValue(this.#sent);
    // Error bodies are the upstream's word and pass as they came.
    if (!this.rewrites || status < 200 || status > 299) return null;
    const kind = answerKind(headers['content-type']);
    if (kind === null) return null;
    if (encoded(headers['content-encoding'])) {
      // Asked for identity and compressed anyway: rewriting the bytes would corrupt it.
      this.#report('compressed');
      return null;
    }
    const requested = JSON.stringify(this.#requested);
    if (kind === 'json') return new JsonAnswerModel(Buffer.from(requested), relayed, this.#report);
    delete relayed['content-length'];
    // Kept for the stream's life: in memory of its own (src/io/owned-bytes.ts).
    return new EventAnswerModel(ownedText(requested), this.#report);
  }
}

/** `json` for a JSON answer, `events` for an event stream, null for anything else (audio, images, text). */
function answerKind(contentType: string | string[] | undefined): 'json' | 'events' | null {
  if (typeof contentType !== 'string') return null;
  if (contentType.startsWith('text/event-stream')) return 'events';
  const semicolon = contentType.indexOf(';');
  const type = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return type === 'application/json' || type.endsWith('+json') ? 'json' : null;
}

function encoded(contentEncoding: string | string[] | undefined): boolean {
  if (contentEncoding === undefined) return false;
  if (Array.isArray(contentEncoding)) return true;
  const coding = contentEncoding.trim().toLowerCase();
  return coding !== '' && coding !== 'identity';
}

const HEADER_SAFE = /^[\x20-\x24\x26-\x7e]*$/;

/**
 * A model name as a header value: printable ASCII as it is; any other byte of
 * its UTF-8, and `%`, percent-encoded (a header cannot carry the rest).
 */
export function headerValue(model: string): string {
  if (HEADER_SAFE.test(model)) return model;
  let value = '';
  for (const byte of Buffer.from(model, 'utf8')) {
    value += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
  }
  return value;
}

/**
 * A JSON answer (chat, completions, responses, embeddings): held whole, then
 * its top-level `model` string replaced and its Content-Length set to the
 * result's length. The relay writes the head only when the body comes out,
 * so the header is true when sent.
 */
export class JsonAnswerModel implements BodyTransform {
  readonly #requested: Buffer;
  readonly #relayed: OutgoingHttpHeaders;
  readonly #report: (result: AnswerModelResult) => void;
  #chunks: Buffer[] = [];
  #size = 0;
  /** Past MAX_HELD_ANSWER: the rest passes as it comes. */
  #passing = false;

  constructor(requested: Buffer, relayed: OutgoingHttpHeaders, report: (result: AnswerModelResult) => void) {
    this.#requested = requested;
    this.#relayed = relayed;
    this.#report = report;
  }

  push(bytes: Buffer): Buffer {
    if (this.#passing) return bytes;
    this.#chunks.push(bytes);
    this.#size += bytes.length;
    if (this.#size <= MAX_HELD_ANSWER) return EMPTY;
    this.#passing = true;
    this.#report('too_large');
    const held = Buffer.concat(this.#chunks);
    this.#chunks = [];
    return held;
  }

  end(): Buffer | null {
    if (this.#passing) return null;
    const chunks = this.#chunks;
    this.#chunks = [];
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    // latin1: one character per byte, so the scanner's indexes are byte offsets and no byte is re-encoded.
    const text = body.toString('latin1');
    const span = topLevelModel(text);
    if (span === null || text.charCodeAt(span[0]) !== QUOTE) {
      this.#report('absent');
      return body.length === 0 ? null : body;
    }
    const rewritten = Buffer.concat([body.subarray(0, span[0]), this.#requested, body.subarray(span[1])]);
    this.#relayed['content-length'] = rewritten.length;
    this.#report('rewritten');
    return rewritten;
  }
}

/**
 * An event stream: the model of every `data:` event replaced (top-level, as
 * chat and completions chunks carry it, or `response.model`, as Responses API
 * events do), one event at a time and with no JSON parse: `"model"` is
 * searched for, and only a line that has it is scanned. A line cut across
 * reads is passed on as far as it surely holds no model; from its first
 * `"model"` (or a tail that may begin one) it waits for the line's end.
 */
export class EventAnswerModel implements BodyTransform {
  readonly #requested: Buffer;
  readonly #report: (result: AnswerModelResult) => void;
  #rewritten = false;
  /** The line a read ended in the middle of: its bytes so far; null between lines. */
  #line: Buffer[] | null = null;
  #lineLength = 0;
  /** How many of the line's bytes went on already. */
  #passed = 0;
  /** Bytes of the line not yet passed on, while no `"model"` is in it (at most a partial `"model`). */
  #unpassed: Buffer = EMPTY;
  /** The line has a `"model"` at `#passed`: the rest waits for its end. */
  #holding = false;
  /** The line outgrew MAX_EVENT_LINE: it goes on as it comes, up to its end. */
  #skipping = false;
  /**
   * The last event rewritten from a line's start: its bytes up to the end of
   * its top-level model, and those bytes with the requested model. The events
   * of one stream share them (id, object, created, model), and a line that
   * starts with the same bytes has its model in the same place.
   */
  #prefix: Buffer | null = null;
  #rewrittenPrefix: Buffer = EMPTY;

  constructor(requested: Buffer, report: (result: AnswerModelResult) => void) {
    this.#requested = requested;
    this.#report = report;
  }

  push(bytes: Buffer): Buffer {
    if (this.#line === null && !this.#skipping) {
      // The usual read: whole events.
      const last = bytes[bytes.length - 1];
      if (last === LF || last === CR) return this.#rewrite(bytes);
    }
    let finished: Buffer = EMPTY;
    let at = 0;
    if (this.#line !== null || this.#skipping) {
      const end = firstLineEnd(bytes);
      if (end === -1) return this.#continueLine(bytes);
      finished = this.#finishLine(bytes.subarray(0, end + 1));
      at = end + 1;
    }
    const last = lastLineEnd(bytes);
    let whole: Buffer = EMPTY;
    if (last >= at) {
      whole = this.#rewrite(bytes.subarray(at, last + 1));
      at = last + 1;
    }
    const started = at < bytes.length ? this.#startLine(bytes.subarray(at)) : EMPTY;
    return join(finished, whole, started);
  }

  end(): Buffer | null {
    if (!this.#rewritten) this.#report('absent');
    const line = this.#line;
    if (line === null) return null;
    this.#line = null;
    const rest = this.#rewrite(Buffer.concat(line)).subarray(this.#passed);
    return rest.length === 0 ? null : rest;
  }

  #startLine(bytes: Buffer): Buffer {
    this.#line = [bytes];
    this.#lineLength = bytes.length;
    this.#passed = 0;
    this.#unpassed = EMPTY;
    this.#holding = false;
    return this.#advance(bytes);
  }

  #continueLine(bytes: Buffer): Buffer {
    if (this.#skipping) return bytes;
    const line = this.#line!;
    line.push(bytes);
    this.#lineLength += bytes.length;
    if (this.#lineLength <= MAX_EVENT_LINE) return this.#holding ? EMPTY : this.#advance(bytes);
    this.#skipping = true;
    this.#line = null;
    return Buffer.concat(line).subarray(this.#passed);
  }

  /** What of the line can go on now that `bytes` joined it (the line holds no `"model"` before them but `#unpassed`). */
  #advance(bytes: Buffer): Buffer {
    const probe = this.#unpassed.length === 0 ? bytes : Buffer.concat([this.#unpassed, bytes]);
    const model = probe.indexOf(MODEL_KEY_BYTES);
    const pass = model !== -1 ? model : probe.length - partialSuffix(probe, MODEL_KEY_BYTES);
    this.#holding = model !== -1;
    this.#unpassed = model !== -1 || pass === probe.length ? EMPTY : ownedCopy(probe, pass);
    this.#passed += pass;
    return probe.subarray(0, pass);
  }

  /** The line ends with `bytes` (which end with its line end): the rest of it, its model replaced. */
  #finishLine(bytes: Buffer): Buffer {
    if (this.#skipping) {
      this.#skipping = false;
      return bytes;
    }
    const line = this.#line!;
    this.#line = null;
    line.push(bytes);
    // Every `"model"` lies past what was passed on, so any replacement does too.
    return this.#rewrite(Buffer.concat(line)).subarray(this.#passed);
  }

  /** Whole lines (the last may lack its line end): each `data:` line's model replaced. */
  #rewrite(lines: Buffer): Buffer {
    const prefix = this.#prefix;
    if (
      prefix !== null &&
      lines.length > prefix.length &&
      lines.compare(prefix, 0, prefix.length, 0, prefix.length) === 0 &&
      lines.indexOf(MODEL_KEY_BYTES, prefix.length) === -1
    ) {
      // The same event start as the last one, and no other "model" after it: the scan would find what it found then.
      const rewritten = this.#rewrittenPrefix;
      const at = prefix.length - rewritten.length;
      if (at < 0) return Buffer.concat([rewritten, lines.subarray(prefix.length)]);
      // The bytes are this transform's own: the shorter start is written over the end of the old one.
      rewritten.copy(lines, at);
      return lines.subarray(at);
    }
    // latin1: one character per byte, so string indexes are byte offsets; searched and scanned as a string, which V8 does fastest.
    const text = lines.toString('latin1');
    let at = text.indexOf(MODEL_KEY);
    if (at === -1) return lines;
    const crs = text.indexOf('\r') !== -1;
    const spans: number[] = [];
    let floor = 0;
    while (at !== -1) {
      const end = lineEnd(text, at, crs);
      const start = lineStart(text, floor, at, crs);
      if (addEventModelSpan(text, start, end, spans) && start === 0) {
        // Kept for the stream's life: in memory of their own (src/io/owned-bytes.ts).
        this.#prefix = ownedCopy(lines, 0, spans[1]);
        this.#rewrittenPrefix = ownedConcat([lines.subarray(0, spans[0]), this.#requested]);
      }
      floor = end;
      at = text.indexOf(MODEL_KEY, end);
    }
    if (spans.length === 0) return lines;
    if (!this.#rewritten) {
      this.#rewritten = true;
      this.#report('rewritten');
    }
    return replaceSpans(lines, spans, this.#requested);
  }
}

/** `bytes` with each [start, end) of `spans` (in order) replaced by `value`. */
function replaceSpans(bytes: Buffer, spans: readonly number[], value: Buffer): Buffer {
  let size = bytes.length;
  for (let i = 0; i < spans.length; i += 2) size += value.length - (spans[i + 1]! - spans[i]!);
  const out = Buffer.allocUnsafe(size);
  let written = 0;
  let cursor = 0;
  for (let i = 0; i < spans.length; i += 2) {
    written += bytes.copy(out, written, cursor, spans[i]);
    written += value.copy(out, written);
    cursor = spans[i + 1]!;
  }
  bytes.copy(out, written, cursor);
  return out;
}

/**
 * The top-level `model` value of the JSON object in `text`: the scan stops at
 * the first, which is the one JSON.parse keeps unless the key comes again.
 */
function topLevelModel(text: string): [number, number] | null {
  const first = objectValueSpan(text, 'model', 0, true);
  return first === null || text.indexOf(MODEL_KEY, first[1]) === -1 ? first : objectValueSpan(text, 'model');
}

/**
 * Adds to `spans` the span of the model string in the `data:` line
 * text[start, end), if it has one: the event's top-level `model`, else its
 * `response.model`. The line is scanned on its own, so broken JSON in it
 * costs no more than its length. True when it added a top-level model.
 */
function addEventModelSpan(text: string, start: number, end: number, spans: number[]): boolean {
  if (!text.startsWith(DATA_FIELD, start)) return false;
  const from = start + DATA_FIELD.length;
  const json = text.slice(from, end);
  let span = topLevelModel(json);
  const topLevel = span !== null;
  if (span === null) {
    const response = objectValueSpan(json, 'response');
    if (response !== null) span = objectValueSpan(json, 'model', response[0]);
  }
  if (span === null || json.charCodeAt(span[0]) !== QUOTE) return false;
  spans.push(from + span[0], from + span[1]);
  return topLevel;
}

/**
 * Where the line holding `at` starts, looking back no further than `floor`
 * (a line start), so that the scans of one text read each byte once.
 */
function lineStart(text: string, floor: number, at: number, crs: boolean): number {
  // Without CRs every line ends with LF, and the last one before `at` is at or after floor - 1.
  if (!crs) return text.lastIndexOf('\n', at) + 1;
  let i = at - 1;
  while (i >= floor) {
    const c = text.charCodeAt(i);
    if (c === LF || c === CR) break;
    i--;
  }
  return i + 1;
}

/** The index of the line end after `at` (the text's length when the line has none). */
function lineEnd(text: string, at: number, crs: boolean): number {
  if (!crs) {
    const lf = text.indexOf('\n', at);
    return lf === -1 ? text.length : lf;
  }
  let i = at;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === LF || c === CR) break;
    i++;
  }
  return i;
}

/** The index of the first CR or LF, or -1. */
function firstLineEnd(bytes: Buffer): number {
  const lf = bytes.indexOf(LF);
  const cr = (lf === -1 ? bytes : bytes.subarray(0, lf)).indexOf(CR);
  return cr !== -1 ? cr : lf;
}

/** The index of the last CR or LF, or -1. */
function lastLineEnd(bytes: Buffer): number {
  return Math.max(bytes.lastIndexOf(LF), bytes.lastIndexOf(CR));
}

function join(a: Buffer, b: Buffer, c: Buffer): Buffer {
  if (b.length === 0 && c.length === 0) return a;
  if (a.length === 0 && c.length === 0) return b;
  if (a.length === 0 && b.length === 0) return c;
  return Buffer.concat([a, b, c]);
}
