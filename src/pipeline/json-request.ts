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
  const model = Object.hasOwn(parsed, 'model') ? (parsed as { model: unknown }).model : undefined;
  if (typeof model !== 'string' || model === '') {
    throw new GatewayError('missing_model', undefined, { param: 'model' });
  }
  const stream = Object.hasOwn(parsed, 'stream') && (parsed as { stream: unknown }).stream === true;
  return { text, model, stream };
}

/**
 * Replaces the top-level `model` value in already-validated JSON text,
 * leaving every other byte as the client sent it (field order, number
 * spelling, unknown fields). JSON.parse keeps the last duplicate key; so does this.
 */
export function replaceModel(text: string, model: string): string {
  const span = topLevelValueSpan(text, 'model');
  if (span === null) throw new BodyRewriteError();
  return text.slice(0, span[0]) + JSON.stringify(model) + text.slice(span[1]);
}

const QUOTE = 34;
const BACKSLASH = 92;

function topLevelValueSpan(text: string, key: string): [number, number] | null {
  let found: [number, number] | null = null;
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
    if (name === key) found = [valueStart, i];
    i = skipWhitespace(text, i);
    if (text.charCodeAt(i) === 44) i++; // ','
  }
  return found;
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
