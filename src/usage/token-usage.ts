/**
 * Token usage as the OpenAI API reports it, read from the few bytes that
 * hold it: the `usage` object at the end of an answer (or of a stream's
 * last events). Found by scanning bytes for the key, never by parsing the
 * whole answer; only the small `usage` object itself goes to JSON.parse.
 */

/** What an answer cost, in the gateway's terms (prompt = input, completion = output). */
export interface TokenUsage {
  readonly prompt: number;
  readonly completion: number;
  /** Prompt tokens served from the upstream's cache, when it says. */
  readonly cached: number | null;
  /** Completion tokens spent on reasoning, when it says. */
  readonly reasoning: number | null;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const USAGE_KEY = Buffer.from('"usage"');
const MODEL_KEY = Buffer.from('"model"');
/** Occurrences of `"usage"` tried from the end before giving up (an upstream's text cannot make this quadratic). */
const MAX_TRIES = 8;
/** A usage object is a few hundred bytes; anything much larger is not one. */
const MAX_USAGE_BYTES = 4096;
const MAX_MODEL_BYTES = 256;

/**
 * The usage in a chat completion, completion, embedding (`prompt_tokens`,
 * `completion_tokens`, `*_tokens_details`) or Responses API object
 * (`input_tokens`, `output_tokens`, `*_tokens_details`); null when `value`
 * is none of them.
 */
export function usageFrom(value: unknown): TokenUsage | null {
  if (value === null || typeof value !== 'object') return null;
  const usage = value as Record<string, unknown>;
  const chat = typeof usage['prompt_tokens'] === 'number';
  const prompt = chat ? usage['prompt_tokens'] : usage['input_tokens'];
  if (typeof prompt !== 'number' || !Number.isFinite(prompt) || prompt < 0) return null;
  const completion = chat ? usage['completion_tokens'] : usage['output_tokens'];
  const promptDetails = usage[chat ? 'prompt_tokens_details' : 'input_tokens_details'];
  const completionDetails = usage[chat ? 'completion_tokens_details' : 'output_tokens_details'];
  return {
    prompt,
    // Embeddings report no completion.
    completion: count(completion) ?? 0,
    cached: count(detail(promptDetails, 'cached_tokens')),
    reasoning: count(detail(completionDetails, 'reasoning_tokens')),
  };
}

function detail(details: unknown, name: string): unknown {
  return details !== null && typeof details === 'object' ? (details as Record<string, unknown>)[name] : undefined;
}

function count(value: unknown): number | null {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : null;
}

/** Where the value of the key found at `at` starts (after `:` and blanks), or -1 if `at` is not a key of an object. */
export function valueStart(bytes: Buffer, at: number, keyLength: number): number {
  if (escaped(bytes, at)) return -1;
  const i = skipBlanks(bytes, at + keyLength);
  if (bytes[i] !== COLON) return -1;
  return skipBlanks(bytes, i + 1);
}

/** The last `usage` object in `bytes` that reads as token usage, or null. */
export function findUsage(bytes: Buffer, from = bytes.length): TokenUsage | null {
  let at = bytes.lastIndexOf(USAGE_KEY, from);
  for (let tries = 0; at !== -1 && tries < MAX_TRIES; tries++) {
    const usage = usageAt(bytes, at);
    if (usage !== null) return usage;
    at = at === 0 ? -1 : bytes.lastIndexOf(USAGE_KEY, at - 1);
  }
  return null;
}

/** The usage object whose key `"usage"` is at `at`, or null (not a key, not an object, not usage). */
export function usageAt(bytes: Buffer, at: number): TokenUsage | null {
  const start = valueStart(bytes, at, USAGE_KEY.length);
  if (start === -1 || bytes[start] !== OPEN_BRACE) return null;
  const end = objectEnd(bytes, start, MAX_USAGE_BYTES);
  if (end === -1) return null;
  try {
    return usageFrom(JSON.parse(bytes.toString('utf8', start, end)));
  } catch {
    return null;
  }
}

/** The first (or last) `"model": "<name>"` in `bytes`, or null. */
export function findModel(bytes: Buffer, last: boolean): string | null {
  let at = last ? bytes.lastIndexOf(MODEL_KEY) : bytes.indexOf(MODEL_KEY);
  for (let tries = 0; at !== -1 && tries < MAX_TRIES; tries++) {
    const start = valueStart(bytes, at, MODEL_KEY.length);
    if (start !== -1 && bytes[start] === QUOTE) {
      const end = stringEnd(bytes, start, MAX_MODEL_BYTES);
      if (end !== -1) {
        try {
          return JSON.parse(bytes.toString('utf8', start, end)) as string;
        } catch {
          return null;
        }
      }
    }
    at = last ? (at === 0 ? -1 : bytes.lastIndexOf(MODEL_KEY, at - 1)) : bytes.indexOf(MODEL_KEY, at + 1);
  }
  return null;
}

/** Whether the quote at `at` is escaped (inside a string: an odd number of backslashes before it). */
function escaped(bytes: Buffer, at: number): boolean {
  let backslashes = 0;
  for (let i = at - 1; i >= 0 && bytes[i] === BACKSLASH; i--) backslashes++;
  return backslashes % 2 === 1;
}

function skipBlanks(bytes: Buffer, i: number): number {
  for (;;) {
    const c = bytes[i];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return i;
    i++;
  }
}

/** The index after the `}` closing the object at `start`, looking at most `max` bytes; -1 if not there. */
export function objectEnd(bytes: Buffer, start: number, max: number): number {
  const stop = Math.min(bytes.length, start + max);
  let depth = 0;
  for (let i = start; i < stop; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      i = stringEnd(bytes, i, stop - i) - 1;
      if (i < 0) return -1;
    } else if (c === OPEN_BRACE || c === 0x5b) {
      depth++;
    } else if (c === CLOSE_BRACE || c === 0x5d) {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/** The index after the quote closing the string at `start`, looking at most `max` bytes; -1 if not there. */
function stringEnd(bytes: Buffer, start: number, max: number): number {
  const stop = Math.min(bytes.length, start + max);
  for (let i = start + 1; i < stop; i++) {
    const c = bytes[i];
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i + 1;
  }
  return -1;
}
