import type { OutgoingHttpHeaders } from 'node:http';
import type { BodyTransform, BodyTransformFactory } from './body-transform.js';

/** What a secret is replaced with in a header value. */
export const HEADER_MASK = '[redacted]';

/**
 * What a secret is replaced with in a body: `[redacted]` padded with `*` to
 * the secret's own length, so a body's length (and its Content-Length) stays
 * true and the replacement can be made in place.
 */
export function bodyMask(length: number): Buffer {
  return Buffer.from(length >= HEADER_MASK.length ? HEADER_MASK.padEnd(length, '*') : '*'.repeat(length));
}

/** Replaces every secret in the header values (lists included); returns how many values changed. */
export function redactHeaders(headers: OutgoingHttpHeaders, secrets: readonly string[]): number {
  let changed = 0;
  for (const name in headers) {
    const value = headers[name];
    if (typeof value === 'string') {
      const redacted = redactText(value, secrets);
      if (redacted !== value) {
        headers[name] = redacted;
        changed++;
      }
    } else if (Array.isArray(value)) {
      const redacted = value.map((item) => redactText(item, secrets));
      if (redacted.some((item, index) => item !== value[index])) {
        headers[name] = redacted;
        changed++;
      }
    }
  }
  return changed;
}

function redactText(text: string, secrets: readonly string[]): string {
  for (const secret of secrets) if (text.includes(secret)) text = text.replaceAll(secret, HEADER_MASK);
  return text;
}

/**
 * Finds secrets in a body that arrives in pieces, also when one is split
 * across pieces: each piece is searched whole, and a tail that could be the
 * start of a secret is held back until the next piece says whether it is.
 * Only such a tail waits: an event stream's pieces end with a blank line, so
 * no event is held. Matches are overwritten in place with a mask of the same
 * length (the pieces are the caller's own).
 */
export class StreamRedactor implements BodyTransform {
  readonly #secrets: readonly Buffer[];
  readonly #masks: readonly Buffer[];
  readonly #onRedacted: () => void;
  #carry: Buffer | null = null;
  /** Secrets replaced so far. */
  count = 0;

  /** `onRedacted` is called for each piece in which a secret was replaced. */
  constructor(secrets: readonly string[], onRedacted: () => void = () => undefined) {
    this.#secrets = secrets.map((secret) => Buffer.from(secret));
    this.#masks = this.#secrets.map((secret) => bodyMask(secret.length));
    this.#onRedacted = onRedacted;
  }

  /** The piece to pass on now (possibly empty): `piece` without secrets, less a held tail. */
  push(piece: Buffer): Buffer {
    let data = piece;
    if (this.#carry !== null) {
      data = Buffer.concat([this.#carry, piece]);
      this.#carry = null;
    }
    const secrets = this.#secrets;
    const before = this.count;
    let hold = 0;
    for (let i = 0; i < secrets.length; i++) {
      const secret = secrets[i]!;
      for (let at = data.indexOf(secret); at !== -1; at = data.indexOf(secret, at + secret.length)) {
        this.#masks[i]!.copy(data, at);
        this.count++;
      }
      hold = Math.max(hold, partialSuffix(data, secret));
    }
    if (this.count !== before) this.#onRedacted();
    if (hold === 0) return data;
    this.#carry = Buffer.from(data.subarray(data.length - hold));
    return data.subarray(0, data.length - hold);
  }

  /** At the end of the body: the held tail, which turned out not to be a secret. */
  end(): Buffer | null {
    const carry = this.#carry;
    this.#carry = null;
    return carry;
  }
}

/** The length of the longest tail of `data` that is a proper prefix of `secret` (0 if none). */
export function partialSuffix(data: Buffer, secret: Buffer): number {
  const first = secret[0]!;
  const from = Math.max(0, data.length - secret.length + 1);
  for (let at = data.indexOf(first, from); at !== -1; at = data.indexOf(first, at + 1)) {
    const length = data.length - at;
    if (data.compare(secret, 0, length, at) === 0) return length;
  }
  return 0;
}

/** Secrets out of every answer, at any status: the first transform of every relayed body. */
export function redaction(secrets: readonly string[], onRedacted: () => void): BodyTransformFactory | null {
  if (secrets.length === 0) return null;
  return { forResponse: () => new StreamRedactor(secrets, onRedacted) };
}
