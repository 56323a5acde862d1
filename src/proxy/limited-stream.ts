import type { IncomingMessage } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { GatewayError } from '../errors/gateway-error.js';

/** The request body as a stream for bodies the gateway does not read (uploads), failing with 413 past `limit`. */
export function limitedBodyStream(req: IncomingMessage, limit: number): Readable {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    if (Number(declared) > limit) throw new GatewayError('body_too_large', `The request body is larger than ${limit} bytes.`);
    return req; // Node's parser stops at the declared length.
  }
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > limit) callback(new GatewayError('body_too_large', `The request body is larger than ${limit} bytes.`));
      else callback(null, chunk);
    },
  });
  req.on('error', (error) => counter.destroy(error));
  return req.pipe(counter);
}
