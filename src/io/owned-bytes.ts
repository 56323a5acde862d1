/**
 * Copies of bytes kept across reads, in memory of their own. Buffer.from and
 * Buffer.concat carve small buffers out of Node's shared 8 KiB pool, and one
 * small buffer that lives as long as a stream keeps its whole slab alive,
 * with every short-lived buffer carved beside it: at thousands of open
 * streams, a few such buffers each pinned most of the pool's slabs
 * (docs/performance.md, "Bytes a stream keeps"). Bytes that only live until
 * the next read, or as long as a plain request, stay in the pool, where they
 * are cheapest: a copy of its own costs about a microsecond more.
 */

/** `bytes[start, end)` copied into memory of its own. */
export function ownedCopy(bytes: Uint8Array, start = 0, end = bytes.length): Buffer {
  const copy = Buffer.allocUnsafeSlow(end - start);
  copy.set(bytes.subarray(start, end));
  return copy;
}

/** `text` as UTF-8, in memory of its own. */
export function ownedText(text: string): Buffer {
  const bytes = Buffer.allocUnsafeSlow(Buffer.byteLength(text));
  bytes.write(text);
  return bytes;
}

/** The pieces joined, in memory of their own. */
export function ownedConcat(pieces: readonly Uint8Array[]): Buffer {
  let size = 0;
  for (const piece of pieces) size += piece.length;
  const joined = Buffer.allocUnsafeSlow(size);
  let at = 0;
  for (const piece of pieces) {
    joined.set(piece, at);
    at += piece.length;
  }
  return joined;
}
