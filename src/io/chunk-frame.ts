/**
 * `bytes` as one HTTP/1.1 chunk (RFC 9112 7.1: size in hex, CRLF, data,
 * CRLF) in one buffer. `ServerResponse.write` frames a chunk as four pieces
 * (size, CRLF, data, CRLF), so every event of a relayed stream became a
 * four-buffer `writev` with a string among them; one buffer goes out on
 * the socket's single-buffer path (docs/performance.md, "One buffer per
 * event").
 */
export function frameChunk(bytes: Buffer): Buffer {
  const size = bytes.length.toString(16);
  const framed = Buffer.allocUnsafe(size.length + bytes.length + 4);
  let at = framed.write(size, 0, 'latin1');
  framed[at++] = 0x0d;
  framed[at++] = 0x0a;
  at += bytes.copy(framed, at);
  framed[at++] = 0x0d;
  framed[at] = 0x0a;
  return framed;
}
