import type { OutgoingHttpHeaders } from 'node:http';
import type { ResponseHeaders } from '../transport/types.js';

/**
 * A stage the relayed answer's body passes through, in order: the upstream's
 * secrets taken out first, then whatever else a response needs (the model a
 * client asked for, usage read from a stream). Transforms see decoded bytes as
 * they come and pass bytes on at once; one may hold a tail back until it knows
 * what it is. None parses JSON per chunk.
 */
export interface BodyTransform {
  /** The next bytes of the body; returns the bytes to pass on now (empty when all are held back). */
  push(bytes: Buffer): Buffer;
  /** The body ended: what was held back, or null. */
  end(): Buffer | null;
  /**
   * The body was cut short (the upstream failed): what of the held bytes
   * may still go out as they are, or null. Bytes held because they may be
   * part of a secret never do.
   */
  abandon?(): Buffer | null;
}

/** Decides, once the upstream's head is known, whether its transform applies to this response. */
export interface BodyTransformFactory {
  /**
   * The transform for a response with this status and head, or null. It may
   * change the relayed headers (e.g. drop a Content-Length it makes untrue);
   * a transform of an answer that is not an event stream may change them
   * until it first lets bytes out, or ends: the relay writes the head then.
   */
  forResponse(status: number, upstreamHeaders: ResponseHeaders, relayed: OutgoingHttpHeaders): BodyTransform | null;
}

/** Runs `bytes` through `transforms` from index `from`; returns what comes out (possibly empty). */
export function pushThrough(transforms: readonly BodyTransform[], bytes: Buffer, from = 0): Buffer {
  for (let i = from; i < transforms.length && bytes.length > 0; i++) bytes = transforms[i]!.push(bytes);
  return bytes;
}

/** Ends every transform in order, what the ones before it let out passing through it first; returns the rest. */
export function endThrough(transforms: readonly BodyTransform[]): Buffer | null {
  let out: Buffer | null = null;
  for (const transform of transforms) {
    if (out !== null && out.length > 0) out = transform.push(out);
    const held = transform.end();
    if (held !== null && held.length > 0) out = out === null || out.length === 0 ? held : Buffer.concat([out, held]);
  }
  return out === null || out.length === 0 ? null : out;
}

/** The body was cut: what the transforms may still let out, in order (see BodyTransform.abandon). */
export function abandonThrough(transforms: readonly BodyTransform[]): Buffer | null {
  let out: Buffer | null = null;
  for (const transform of transforms) {
    if (out !== null && out.length > 0) out = transform.push(out);
    const held = transform.abandon?.() ?? null;
    if (held !== null && held.length > 0) out = out === null || out.length === 0 ? held : Buffer.concat([out, held]);
  }
  return out === null || out.length === 0 ? null : out;
}
