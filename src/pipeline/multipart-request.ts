import { isUtf8 } from 'node:buffer';
import type { IncomingHttpHeaders } from 'node:http';
import { Readable } from 'node:stream';
import { parse as parseContentType } from 'content-type';
import { ClientGoneError } from '../errors/client-gone.js';
import { GatewayError } from '../errors/gateway-error.js';
import { invalidMultipart, MultipartForm } from './multipart-form.js';
import type { ClientRequestBody, UpstreamBody } from './read-body.js';
import { UploadSpool } from './upload-spool.js';

/** What a multipart request is read from: the client's request (its headers, path and body). */
export interface UploadSource extends AsyncIterable<Buffer> {
  readonly headers: IncomingHttpHeaders;
  readonly url?: string | undefined;
}

export interface MultipartOptions {
  /** 413 past this many bytes. */
  readonly limit: number;
  /** Bytes held in memory while looking for the model; past them the spool moves to a temporary file. */
  readonly spoolMemory: number;
  /** Where the spool file goes (the OS's temporary directory by default). */
  readonly spoolDir?: string;
  /** Registers what to release when the request completes (the spool, the upload stream). */
  readonly onComplete: (release: () => void) => void;
}

/** Paths whose form must name a model: the OpenAI API refuses theirs without one. */
const MODEL_REQUIRED = new Set(['/v1/audio/transcriptions', '/v1/audio/translations']);
/** RFC 2046 5.1.1: a boundary is 1 to 70 characters. */
const MAX_BOUNDARY = 70;

function tooLarge(limit: number): GatewayError {
  return new GatewayError('body_too_large', `The request body is larger than ${limit} bytes.`);
}

/**
 * Reads a multipart/form-data request up to its `model` field: what comes
 * before it is held (memory, then a temporary file, within the body limit);
 * once the field has ended, the rest is streamed and checked as it goes
 * through (a second `model`, a malformed form, the limit: the upload fails
 * before the upstream has the whole body). A form without `model` is read to
 * its end first. Only the model's value is ever replaced.
 */
export async function readMultipartRequest(source: UploadSource, options: MultipartOptions): Promise<ClientRequestBody> {
  const contentType = source.headers['content-type'] ?? '';
  const form = new MultipartForm(contentType, boundaryOf(contentType));
  const declared = source.headers['content-length'];
  const contentLength = declared === undefined ? null : Number(declared);
  if (contentLength !== null && contentLength > options.limit) throw tooLarge(options.limit);

  const spool = new UploadSpool(options.spoolMemory, options.spoolDir);
  const reader = new UploadReader(source[Symbol.asyncIterator](), form, options.limit);
  const body = new MultipartBody(spool, reader, contentLength);
  options.onComplete(() => body.release());

  let ended = false;
  while (form.model === null) {
    const chunk = await reader.next();
    if (chunk === null) {
      ended = true;
      break;
    }
    await appendTo(spool, chunk);
    await form.push(chunk);
  }
  if (ended) await form.end();

  const model = form.model;
  if (model === null) {
    const path = pathOf(source.url);
    if (MODEL_REQUIRED.has(path)) throw new GatewayError('missing_model', "The form must contain a 'model' field.", { param: 'model' });
    return body.decided(null, ended);
  }
  const raw = await spool.slice(model.span.contentStart, model.span.contentEnd).catch(spoolFailed);
  // busboy decodes by the part's charset; routing on a value other than the bytes the upstream reads is refused.
  if (!isUtf8(raw) || raw.toString('utf8') !== model.value) throw invalidMultipart("the 'model' field must be UTF-8 text", 'model');
  if (model.value === '') throw new GatewayError('missing_model', "The form's 'model' field is empty.", { param: 'model' });
  return body.decided({ value: model.value, start: model.span.contentStart, end: model.span.contentEnd }, ended);
}

function boundaryOf(contentType: string): string {
  let boundary: string | undefined;
  try {
    boundary = parseContentType(contentType).parameters['boundary'];
  } catch {
    boundary = undefined;
  }
  if (boundary === undefined || boundary.length === 0 || boundary.length > MAX_BOUNDARY) {
    throw invalidMultipart('the Content-Type names no valid boundary');
  }
  return boundary;
}

function pathOf(url: string | undefined): string {
  const path = url ?? '/';
  const queryAt = path.indexOf('?');
  return queryAt === -1 ? path : path.slice(0, queryAt);
}

function spoolFailed(error: unknown): never {
  throw new GatewayError('upload_spool_failed', undefined, { cause: error });
}

async function appendTo(spool: UploadSpool, chunk: Buffer): Promise<void> {
  await spool.append(chunk).catch(spoolFailed);
}

/** The client's body, chunk by chunk, counted against the limit and checked by the form as it goes. */
class UploadReader {
  readonly #chunks: AsyncIterator<Buffer>;
  readonly #form: MultipartForm;
  readonly #limit: number;
  #size = 0;

  constructor(chunks: AsyncIterator<Buffer>, form: MultipartForm, limit: number) {
    this.#chunks = chunks;
    this.#form = form;
    this.#limit = limit;
  }

  get form(): MultipartForm {
    return this.#form;
  }

  /** The next chunk, or null at the end; a body that breaks off is the client's doing. */
  async next(): Promise<Buffer | null> {
    let result: IteratorResult<Buffer>;
    try {
      result = await this.#chunks.next();
    } catch (error) {
      throw new ClientGoneError(error);
    }
    if (result.done === true) return null;
    this.#size += result.value.length;
    if (this.#size > this.#limit) throw tooLarge(this.#limit);
    return result.value;
  }
}

interface ModelSpan {
  readonly value: string;
  readonly start: number;
  readonly end: number;
}

/** A multipart body whose model is known: what was held, then (unless the body ended) the rest as it comes. */
class MultipartBody implements ClientRequestBody {
  model: string | null = null;
  readonly stream = false;
  readonly includeUsage = false;
  readonly contentLength: number | null;
  readonly #spool: UploadSpool;
  readonly #reader: UploadReader;
  #span: ModelSpan | null = null;
  #ended = false;
  #upload: Readable | null = null;

  constructor(spool: UploadSpool, reader: UploadReader, contentLength: number | null) {
    this.#spool = spool;
    this.#reader = reader;
    this.contentLength = contentLength;
  }

  decided(span: ModelSpan | null, ended: boolean): this {
    this.#span = span;
    this.model = span?.value ?? null;
    this.#ended = ended;
    return this;
  }

  upstreamBody(model: string | null): UpstreamBody {
    const span = this.#span;
    const replacement = span !== null && model !== null && model !== span.value ? Buffer.from(model, 'utf8') : null;
    const upload = Readable.from(this.#bytes(replacement), { objectMode: false });
    // The transport stops listening once the exchange is over; a late failure (the spool released) must not crash.
    upload.on('error', ignore);
    this.#upload = upload;
    const contentLength = this.contentLength;
    if (replacement === null || contentLength === null) return { body: upload, contentLength };
    return { body: upload, contentLength: contentLength - (span!.end - span!.start) + replacement.length };
  }

  /** Stops the upload (if it is still going) and frees the spool. */
  release(): void {
    this.#upload?.destroy();
    this.#spool.release().catch(ignore);
  }

  async *#bytes(replacement: Buffer | null): AsyncGenerator<Buffer> {
    const spool = this.#spool;
    try {
      // Unless the whole body was read and checked, the last chunk is held back until the rest is checked:
      // an upstream never has a whole body the form refused.
      let held: Buffer | null = null;
      for await (const chunk of this.#held(replacement)) {
        if (held !== null) yield held;
        held = chunk;
      }
      if (!this.#ended) {
        const reader = this.#reader;
        for (let chunk = await reader.next(); chunk !== null; chunk = await reader.next()) {
          await reader.form.push(chunk);
          if (held !== null) yield held;
          held = chunk;
        }
        await reader.form.end();
      }
      if (held !== null) yield held;
    } finally {
      await spool.release();
    }
  }

  /** What was held while looking for the model, with the model's value replaced when `replacement` is set. */
  async *#held(replacement: Buffer | null): AsyncGenerator<Buffer> {
    const spool = this.#spool;
    const span = this.#span;
    if (replacement === null || span === null) {
      yield* readSpool(spool, 0, spool.length);
      return;
    }
    yield* readSpool(spool, 0, span.start);
    yield replacement;
    yield* readSpool(spool, span.end, spool.length);
  }
}

async function* readSpool(spool: UploadSpool, start: number, end: number): AsyncGenerator<Buffer> {
  try {
    yield* spool.read(start, end);
  } catch (error) {
    spoolFailed(error);
  }
}

function ignore(): void {}
