import type { IncomingMessage } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { ClientGoneError } from '../errors/client-gone.js';
import { GatewayError } from '../errors/gateway-error.js';
import { parseJsonRequest, type JsonRequest } from './json-request.js';

/** Body content types the gateway streams through untouched instead of reading as JSON. */
const RAW_BODY_TYPES = /^(multipart\/|application\/octet-stream|audio\/|image\/|video\/)/i;

/** The client's request as the rest of the pipeline needs it. */
export interface ClientRequestBody {
  /** The JSON body's model and text; null for a request without a JSON body (GET, uploads). */
  readonly json: JsonRequest | null;
  /** What goes upstream as the body: the bytes as read, a stream (uploads), or none. */
  readonly body: Buffer | Readable | null;
  /** The body's length when known; null for a chunked upload. */
  readonly contentLength: number | null;
}

const NO_BODY: ClientRequestBody = { json: null, body: null, contentLength: null };
const EMPTY_BODY: ClientRequestBody = { json: null, body: null, contentLength: 0 };

/**
 * Reads what routing needs from a request: a JSON body is read whole (413
 * past `limit`) and parsed once; uploads (multipart, binary) are streamed
 * through with the same limit; GET, HEAD and bodiless requests carry none.
 */
export async function readClientBody(req: IncomingMessage, limit: number): Promise<ClientRequestBody> {
  const method = req.method;
  const declared = req.headers['content-length'];
  const hasBody = declared !== undefined ? declared !== '0' : req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || method === 'GET' || method === 'HEAD') return hasBody ? EMPTY_BODY : NO_BODY;
  const contentType = req.headers['content-type'];
  if (contentType !== undefined && RAW_BODY_TYPES.test(contentType)) {
    return { json: null, body: limitedBodyStream(req, limit), contentLength: declared === undefined ? null : Number(declared) };
  }
  const raw = await readBody(req, limit);
  return { json: parseJsonRequest(raw), body: raw, contentLength: raw.length };
}

function tooLarge(limit: number): GatewayError {
  return new GatewayError('body_too_large', `The request body is larger than ${limit} bytes.`);
}

/** Reads the whole request body, refusing it (413) as soon as it passes `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    // A body that stops (disconnect, a parser error after the headers, requestTimeout) is the client's doing.
    const onError = (error?: Error): void => {
      cleanup();
      reject(new ClientGoneError(error));
    };
    const onAborted = (): void => onError();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

/** The request body as a stream for bodies the gateway does not read (uploads), failing with 413 past `limit`. */
export function limitedBodyStream(req: IncomingMessage, limit: number): Readable {
  const declared = req.headers['content-length'];
  if (declared !== undefined) {
    if (Number(declared) > limit) throw tooLarge(limit);
    return req; // Node's parser stops at the declared length.
  }
  let size = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback) {
      size += chunk.length;
      if (size > limit) callback(tooLarge(limit));
      else callback(null, chunk);
    },
  });
  req.on('error', (error) => counter.destroy(error));
  return req.pipe(counter);
}
