import type { OutgoingHttpHeaders } from 'node:http';
import { ownedCopy } from '../io/owned-bytes.js';
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

/** Replaces every secret (longest first) in the header values, lists included; returns how many values changed. */
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
  for (const secret of secrets) text = text.replaceAll(secret, HEADER_MASK);
  return text;
}

/**
 * Finds secrets in a body that arrives in pieces, also when one is split
 * across pieces: each piece is searched whole, and a tail that could be the
 * start of a secret is held back until the next piece says whether it is.
 * Only such a tail waits: an event stream's pieces end with a blank line, so
 * no event is held. Matches are overwritten in place with a mask of the same
 * length (the pieces are the caller's own). Secrets come longest first: one
 * inside a longer one is then masked as part of it, never before it.
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
    const bytes = secretBytes(secrets);
    this.#secrets = bytes.secrets;
    this.#masks = bytes.masks;
    this.#onRedacted = onRedacted;
  }

  /** The piece to pass on now (possibly empty): `piece` without secrets, less a held tail. */
  push(piece: Buffer): Buffer {
    let data = piece;
    if (this.#carry !== null) {
      data = Buffer.concat([this.#carry, piece]);
      this.#carry = null;
    }
    // What may start a secret is found on the bytes as they came, before any mask is written over them.
    let keep = data.length;
    for (const secret of this.#secrets) keep = Math.min(keep, data.length - partialSuffix(data, secret));
    keep = this.#mask(data, keep);
    if (keep === data.length) return data;
    this.#carry = ownedCopy(data, keep);
    return data.subarray(0, keep);
  }

  /** At the end of the body: the held tail, which may still hold a whole secret (one that starts a longer one). */
  end(): Buffer | null {
    const carry = this.#carry;
    this.#carry = null;
    if (carry !== null) this.#mask(carry, carry.length);
    return carry;
  }

  /**
   * Masks every secret in `data` that ends by `keep` (the ones after it are
   * held and found again with the next piece); returns `keep`, moved back to
   * the start of a secret that starts before it and ends after it. Such a
   * secret ends in the held tail that may start another: the tail is held as
   * it came, so the next piece can still find the other secret whole, and
   * the first is masked with it then.
   */
  #mask(data: Buffer, keep: number): number {
    const secrets = this.#secrets;
    let found: { at: number; end: number; secret: number }[] | null = null;
    for (let i = 0; i < secrets.length; i++) {
      const length = secrets[i]!.length;
      for (let at = data.indexOf(secrets[i]!); at !== -1; at = data.indexOf(secrets[i]!, at + length)) {
        if (found !== null && found.some((match) => match.at <= at && at + length <= match.end)) continue; // inside a longer one
        (found ??= []).push({ at, end: at + length, secret: i });
      }
    }
    if (found === null) return keep;
    for (let moved = true; moved;) {
      moved = false;
      for (const match of found) {
        if (match.at < keep && match.end > keep) {
          keep = match.at;
          moved = true;
        }
      }
    }
    const before = this.count;
    for (const match of found) {
      if (match.at >= keep) continue;
      this.#masks[match.secret]!.copy(data, match.at);
      this.count++;
    }
    if (this.count !== before) this.#onRedacted();
    return keep;
  }
}

/** A list of secrets as bytes, with their masks; never written to, so shared by every response. */
interface SecretBytes {
  readonly secrets: readonly Buffer[];
  readonly masks: readonly Buffer[];
}

/** Per list: a snapshot's list is the same array for every request on it, so its bytes are made once. */
const bytesOfList = new WeakMap<readonly string[], SecretBytes>();

function secretBytes(list: readonly string[]): SecretBytes {
  let bytes = bytesOfList.get(list);
  if (bytes === undefined) {
    const secrets = list.map((secret) => Buffer.from(secret));
    bytes = { secrets, masks: secrets.map((secret) => bodyMask(secret.length)) };
    bytesOfList.set(list, bytes);
  }
  return bytes;
}

/**
 * The length of the longest tail of `data` that is a proper prefix of
 * `secret` (0 if none). A loop over at most a secret's length of bytes: a
 * native search per piece and secret would cost more in calls than it saves.
 */
export function partialSuffix(data: Buffer, secret: Buffer): number {
  const first = secret[0]!;
  for (let at = Math.max(0, data.length - secret.length + 1); at < data.length; at++) {
    if (data[at] !== first) continue;
    let matched = 1;
    while (at + matched < data.length && data[at + matched] === secret[matched]) matched++;
    if (at + matched === data.length) return matched;
  }
  return 0;
}

/** Secrets out of every answer, at any status: the first transform of every relayed body. */
export function redaction(secrets: readonly string[], onRedacted: () => void): BodyTransformFactory | null {
  if (secrets.length === 0) return null;
  return { forResponse: () => new StreamRedactor(secrets, onRedacted) };
}
