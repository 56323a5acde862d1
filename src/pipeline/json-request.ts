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
}

const QUOTE = 34;
const BACKSLASH = 92;
const COMMA = 44;
const MODEL = 'model';

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
  if (mayRepeatModel(text) && topLevelModelSpans(text).length > 1) {
    throw new GatewayError('duplicate_model', "The JSON body has more than one top-level 'model' key; parsers disagree on which one counts.", {
      param: 'model',
    });
  }
  const model = Object.hasOwn(parsed, 'model') ? (parsed as { model: unknown }).model : undefined;
  if (typeof model !== 'string' || model === '') {
    throw new GatewayError('missing_model', undefined, { param: 'model' });
  }
  const stream = Object.hasOwn(parsed, 'stream') && (parsed as { stream: unknown }).stream === true;
  return { text, model, stream };
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

/**
 * Replaces the top-level `model` value in already-validated JSON text,
 * leaving every other byte as the client sent it (field order, number
 * spelling, unknown fields). Validated text has one top-level `model`; were
 * there more, JSON.parse keeps the last, and so does this.
 */
export function replaceModel(text: string, model: string): string {
  const span = topLevelModelSpans(text).at(-1);
  if (span === undefined) throw new BodyRewriteError();
  return text.slice(0, span[0]) + JSON.stringify(model) + text.slice(span[1]);
}

/** Where each top-level `model` value starts and ends, in order, its key spelled in any escapes; `text` is a valid JSON object. */
function topLevelModelSpans(text: string): [number, number][] {
  const spans: [number, number][] = [];
  let i = skipWhitespace(text, 0) + 1; // past '{'
  for (;;) {
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) !== QUOTE) break; // '}'
    const keyStart = i;
    i = skipString(text, i);
    const rawKey = text.slice(keyStart + 1, i - 1);
    const name = rawKey.includes('\\') ? (JSON.parse(text.slice(keyStart, i)) as string) : rawKey;
    i = skipWhitespace(text, i) + 1; // past ':'
    i = skipWhitespace(text, i);
    const valueStart = i;
    i = skipValue(text, i);
    if (name === MODEL) spans.push([valueStart, i]);
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) === COMMA) i++;
  }
  return spans;
}

function skipWhitespace(text: string, i: number): number {
  for (;;) {
    const c = text.charCodeAt(i);
    if (c !== 32 && c !== 10 && c !== 13 && c !== 9) return i;
    i++;
  }
}

/** `i` is at an opening quote; returns the index after the closing one. */
function skipString(text: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const quote = text.indexOf('"', j);
    let backslashes = 0;
    for (let k = quote - 1; text.charCodeAt(k) === BACKSLASH; k--) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    j = quote + 1;
  }
}

function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c === 123 || c === 91) {
    let depth = 0;
    for (let j = i; ; j++) {
      const d = text.charCodeAt(j);
      if (d === QUOTE) {
        j = skipString(text, j) - 1;
      } else if (d === 123 || d === 91) {
        depth++;
      } else if (d === 125 || d === 93) {
        if (--depth === 0) return j + 1;
      }
    }
  }
  let j = i;
  for (;;) {
    const d = text.charCodeAt(j);
    if (d === 44 || d === 125 || d === 93 || d === 32 || d === 10 || d === 13 || d === 9 || Number.isNaN(d)) return j;
    j++;
  }
}
