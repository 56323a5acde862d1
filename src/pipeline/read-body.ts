import type { IncomingMessage } from 'node:http';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { ClientGoneError } from '../errors/client-gone.js';
import { GatewayError } from '../errors/gateway-error.js';
import { addStreamUsage, parseJsonRequest, replaceModel, type JsonRequest } from './json-request.js';
import type { RequestLifecycle } from './lifecycle.js';
import { readMultipartRequest } from './multipart-request.js';

/** Body content types the gateway streams through untouched instead of reading as JSON (multipart/form-data is read). */
const RAW_BODY_TYPES = /^(multipart\/|application\/octet-stream|audio\/|image\/|video\/)/i;
const FORM_DATA_TYPE = /^multipart\/form-data\s*(;|$)/i;

/** Bytes of a form held in memory while looking for its model; past them, a temporary file. */
export const FORM_SPOOL_MEMORY = 256 * 1024;

/** A body as it goes upstream. */
export interface UpstreamBody {
  /** A JSON body's text (valid UTF-8, sent as such), a form's bytes, a stream (uploads), or none. */
  readonly body: string | Buffer | Readable | null;
  /** Its length when known; null sends it chunked. */
  readonly contentLength: number | null;
}

/** The client's request as the rest of the pipeline needs it. */
export interface ClientRequestBody {
  /** The model the body names (a JSON body's `model`, a form's `model` field); null when it names none. */
  readonly model: string | null;
  /** The client asked for an event stream (`"stream": true` in a JSON body). */
  readonly stream: boolean;
  /** The client asked for the stream's usage (`"stream_options": {"include_usage": true}` in a JSON body). */
  readonly includeUsage: boolean;
  /** The body's length as the client sent it, when known; null for a chunked upload. */
  readonly contentLength: number | null;
  /**
   * The body to send upstream naming `model` instead of the client's: only
   * the model's value changes, every other byte is as the client sent it.
   * null (or the client's own model) sends the body as it came. With
   * `streamUsage`, a JSON body also asks for the stream's usage (addStreamUsage).
   */
  upstreamBody(model: string | null, streamUsage?: boolean): UpstreamBody;
}

/**
 * A JSON body, read whole and parsed once. It is kept as the parsed text
 * and goes upstream as text: valid UTF-8 (parseJsonRequest refuses the
 * rest) decodes and encodes back to the same bytes, and a string held for a
 * stream's life pins none of the socket's or the pool's shared buffers.
 */
class JsonBody implements ClientRequestBody {
  readonly model: string;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly contentLength: number;
  readonly #json: JsonRequest;

  constructor(raw: Buffer) {
    this.#json = parseJsonRequest(raw);
    this.model = this.#json.model;
    this.stream = this.#json.stream;
    this.includeUsage = this.#json.includeUsage;
    this.contentLength = raw.length;
  }

  upstreamBody(model: string | null, streamUsage = false): UpstreamBody {
    const renamed = model !== null && model !== this.model;
    if (!renamed && !streamUsage) return { body: this.#json.text, contentLength: this.contentLength };
    let text = renamed ? replaceModel(this.#json.text, model) : this.#json.text;
    if (streamUsage) text = addStreamUsage(text);
    return { body: text, contentLength: Buffer.byteLength(text) };
  }
}

/** A body that names no model: sent as it came (none, or an upload streamed through). */
class OpaqueBody implements ClientRequestBody {
  readonly model = null;
  readonly stream = false;
  readonly includeUsage = false;
  readonly #body: UpstreamBody;

  constructor(body: Buffer | Readable | null, contentLength: number | null) {
    this.#body = { body, contentLength };
  }

  get contentLength(): number | null {
    return this.#body.contentLength;
  }

  upstreamBody(): UpstreamBody {
    return this.#body;
  }
}

const NO_BODY = new OpaqueBody(null, null);
const EMPTY_BODY = new OpaqueBody(null, 0);

/**
 * Reads what routing needs from a request: a JSON body is read whole (413
 * past `limit`) and parsed once; a multipart/form-data body is read up to its
 * `model` field (multipart-request.ts); other uploads (binary, other
 * multipart types) are streamed through with the same limit; GET, HEAD and
 * bodiless requests carry none. What a body holds (a spooled form) is given
 * back when the request completes.
 */
export async function readClientBody(lifecycle: RequestLifecycle, limit: number): Promise<ClientRequestBody> {
  const req = lifecycle.req;
  const method = req.method;
  const declared = req.headers['content-length'];
  const hasBody = declared !== undefined ? declared !== '0' : req.headers['transfer-encoding'] !== undefined;
  if (!hasBody || method === 'GET' || method === 'HEAD') return hasBody ? EMPTY_BODY : NO_BODY;
  const contentType = req.headers['content-type'];
  if (contentType !== undefined && FORM_DATA_TYPE.test(contentType)) {
    return readMultipartRequest(req, { limit, spoolMemory: FORM_SPOOL_MEMORY, onComplete: (release) => lifecycle.onComplete(release) });
  }
  if (contentType !== undefined && RAW_BODY_TYPES.test(contentType)) {
    return new OpaqueBody(limitedBodyStream(req, limit), declared === undefined ? null : Number(declared));
  }
  return new JsonBody(await readBody(req, limit));
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
      // A chunk is a slice of the socket's 64 KiB read buffer: callers keep what they read out of it, not the bytes.
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
