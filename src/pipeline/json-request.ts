import { isUtf8 } from 'node:buffer';
import { GatewayError } from '../errors/gateway-error.js';

/** The body to rewrite has no top-level `model`: a bug, since only validated bodies are rewritten. */
export class BodyRewriteError extends Error {
  readonly code = 'BODY_REWRITE_FAILED';
  constructor() {
    super('replaceModel: no top-level model in validated JSON');
    this.name = 'BodyRewriteError';
  }
}

export interface JsonRequest {
  readonly text: string;
  readonly model: string;
  /** The client asked for an event stream (`"stream": true`). */
  readonly stream: boolean;
  /** The client asked for the stream's usage (`"stream_options": {"include_usage": true}`). */
  readonly includeUsage: boolean;
}

const MODEL = 'model';
const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const COLON = 58;
const OPEN_BRACE = 123;

/** Validates a JSON request body and extracts its model; the body is parsed once. */
export function parseJsonRequest(body: Buffer): JsonRequest {
  if (!isUtf8(body)) throw new GatewayError('invalid_utf8');
  const text = body.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new GatewayError('invalid_json');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new GatewayError('invalid_body');
  // Parsers disagree on which of two keys wins: the model decided on here must be the one the upstream reads.
  if (mayRepeatModel(text) && repeatsModel(text)) {
    throw new GatewayError('duplicate_model', "The JSON body has more than one top-level 'model' key; parsers disagree on which one counts.", {
      param: 'model',
    });
  }
  const model = Object.hasOwn(parsed, 'model') ? (parsed as { model: unknown }).model : undefined;
  if (typeof model !== 'string' || model === '') {
    throw new GatewayError('missing_model', undefined, { param: 'model' });
  }
  const stream = Object.hasOwn(parsed, 'stream') && (parsed as { stream: unknown }).stream === true;
  const options = stream && Object.hasOwn(parsed, 'stream_options') ? (parsed as { stream_options: unknown }).stream_options : null;
  const includeUsage = options !== null && typeof options === 'object' && (options as { include_usage?: unknown }).include_usage === true;
  return { text, model, stream, includeUsage };
}

/**
 * Whether JSON `text` may hold `model` as a key more than once: false when
 * `"model"` occurs at most once and no key can spell one of its letters with
 * a `\u006X` escape. Two quick scans instead of the top-level scanner, for
 * the bodies nearly every client sends. `model"` is searched rather than
 * `"model"`: V8 finds a needle by its first character with memchr, and `"`
 * is everywhere in JSON.
 */
export function mayRepeatModel(text: string): boolean {
  let quoted = 0;
  for (let at = text.indexOf('model"'); at !== -1; at = text.indexOf('model"', at + 6)) {
    if (text.charCodeAt(at - 1) === QUOTE && ++quoted > 1) return true;
  }
  return text.includes('\\u006');
}

/** Whether valid JSON `text` has more than one top-level `model` key, however spelled: the first one found is not the last. */
function repeatsModel(text: string): boolean {
  const first = objectValueSpan(text, MODEL, 0, true);
  return first !== null && objectValueSpan(text, MODEL)![0] !== first[0]; // a first one found means a last one too
}

/**
 * Replaces the top-level `model` value in already-validated JSON text,
 * leaving every other byte as the client sent it (field order, number
 * spelling, unknown fields). JSON.parse keeps the last duplicate key; so does this.
 */
export function replaceModel(text: string, model: string): string {
  const span = objectValueSpan(text, MODEL);
  if (span === null) throw new BodyRewriteError();
  return text.slice(0, span[0]) + JSON.stringify(model) + text.slice(span[1]);
}

const INCLUDE_USAGE = '"include_usage":true';

/**
 * Asks the upstream for a stream's usage in already-validated JSON text:
 * `"stream_options":{"include_usage":true}` appended, or `include_usage`
 * set to true inside the client's own `stream_options` object; every other
 * byte as the client sent it. A `stream_options` that is not an object (or
 * null) is left for the upstream to refuse.
 */
export function addStreamUsage(text: string): string {
  const span = objectValueSpan(text, 'stream_options');
  if (span === null) {
    const close = text.lastIndexOf('}');
    const empty = text.charCodeAt(skipWhitespaceBack(text, close - 1)) === OPEN_BRACE;
    return `${text.slice(0, close)}${empty ? '' : ','}"stream_options":{${INCLUDE_USAGE}}${text.slice(close)}`;
  }
  const [start, end] = span;
  if (text.startsWith('null', start)) return `${text.slice(0, start)}{${INCLUDE_USAGE}}${text.slice(end)}`;
  if (text.charCodeAt(start) !== OPEN_BRACE) return text;
  const inner = objectValueSpan(text, 'include_usage', start);
  if (inner !== null) return `${text.slice(0, inner[0])}true${text.slice(inner[1])}`;
  const empty = text.charCodeAt(skipWhitespace(text, start + 1)) === 125;
  return `${text.slice(0, start + 1)}${INCLUDE_USAGE}${empty ? '' : ','}${text.slice(start + 1)}`;
}

/**
 * Where the value of `key` lies in the JSON object that starts at `from`
 * (after optional whitespace): [start, end) of its text, the last one when
 * the key repeats (as JSON.parse keeps), or with `first` the first one (the
 * scan stops there). Null when the key is absent or the text is not an
 * object there. Also given text nobody validated (an upstream's answer read
 * as latin1, so indexes are byte offsets) it ends, in time linear in the
 * text's length; what it finds in broken JSON is only where a value would be.
 */
export function objectValueSpan(text: string, key: string, from = 0, first = false): [number, number] | null {
  let i = skipWhitespace(text, from);
  if (text.charCodeAt(i) !== OPEN_BRACE) return null;
  i++;
  let found: [number, number] | null = null;
  for (;;) {
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) !== QUOTE) break; // '}'
    const keyStart = i;
    i = skipString(text, i);
    if (i === -1) return null;
    const matches = keyIs(text, keyStart, i, key);
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) !== COLON) return null;
    i = skipWhitespace(text, i + 1);
    const valueStart = i;
    i = skipValue(text, i);
    if (i <= valueStart) return null;
    if (matches) {
      found = [valueStart, i];
      if (first) break;
    }
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) !== COMMA) break;
    i++;
  }
  return found;
}

/** Whether the JSON string text[start, end) (quotes included) spells `key`; an escaped spelling is decoded. */
function keyIs(text: string, start: number, end: number, key: string): boolean {
  const length = end - start - 2;
  if (length === key.length) return text.startsWith(key, start + 1);
  // An escape only lengthens a spelling; only a longer one with a backslash can spell the key.
  if (length < key.length || !hasBackslash(text, start + 1, end - 1)) return false;
  try {
    return JSON.parse(text.slice(start, end)) === key;
  } catch {
    return false; // a bad escape in text nobody validated
  }
}

function hasBackslash(text: string, start: number, end: number): boolean {
  for (let i = start; i < end; i++) if (text.charCodeAt(i) === BACKSLASH) return true;
  return false;
}

function skipWhitespaceBack(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i;
    i--;
  }
}

function skipWhitespace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i;
    i++;
  }
}

/** `i` is at an opening quote; returns the index after the closing one, or -1 when there is none. */
function skipString(text: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const quote = text.indexOf('"', j);
    if (quote === -1) return -1;
    let backslashes = 0;
    for (let k = quote - 1; text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    j = quote + 1;
  }
}

/** `i` is at a value; returns the index after it, or -1 when an object, array or string in it never ends. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c === OPEN_BRACE || c === 91) {
    let depth = 0;
    for (let j = i; j < text.length; j++) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) {
        j = skipString(text, j) - 1;
        if (j === -2) return -1;
      } else if (d === OPEN_BRACE || d === 91) {
        depth++;
      } else if (d === 125 || d === 93) {
        if (--depth === 0) return j + 1;
      }
    }
    return -1;
  }
  let j = i;
  for (;;) {
    const d = text.charCodeAt(j);
    if (d === COMMA || d === 125 || d === 93 || d === 32 || d === 10 || d === 13 || d === 9 || Number.isNaN(d)) return j;
    j++;
  }
}
