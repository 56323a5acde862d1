import busboy from 'busboy';
import { finished } from 'node:stream/promises';
import { GatewayError } from '../errors/gateway-error.js';
import { MultipartFramingError, PartLocator, type PartSpan } from './multipart-parts.js';

/** Content transfer encodings under which a part's bytes are its value (any other one is decoded by some parsers). */
const PLAIN_ENCODINGS = new Set(['7bit', '8bit', 'binary']);

/** The form's `model` field: its value as busboy read it, and where its bytes lie in the body. */
export interface ModelField {
  readonly value: string;
  readonly span: PartSpan;
}

/** A 400 `invalid_multipart` saying what is wrong. */
export function invalidMultipart(reason: string, param?: string): GatewayError {
  return new GatewayError('invalid_multipart', `The multipart/form-data body is malformed: ${reason}.`, param === undefined ? undefined : { param });
}

/**
 * Reads a multipart/form-data body as it streams by, for its `model` field:
 * busboy parses the form (part headers, names, values), PartLocator says
 * where each part's bytes are. Each part busboy reports is matched to the
 * part found at the same position, so a part busboy skipped (no
 * form-data disposition, a header it cannot parse) makes the counts differ
 * and the body is refused: the gateway never routes on a different reading
 * of the form than the one the upstream makes.
 */
export class MultipartForm {
  readonly #parser: busboy.Busboy;
  readonly #locator: PartLocator;
  /** Parts busboy reported, in order. */
  #reported = 0;
  #model: ModelField | null = null;
  #error: GatewayError | null = null;

  /** Throws `invalid_multipart` when the content type names no usable boundary. */
  constructor(contentType: string, boundary: string) {
    this.#locator = new PartLocator(boundary);
    try {
      // fileHwm: a file part's stream is drained as it is fed, so it never holds busboy back.
      this.#parser = busboy({ headers: { 'content-type': contentType }, fileHwm: 1024 * 1024 * 1024 });
    } catch (error) {
      throw invalidMultipart((error as Error).message.toLowerCase());
    }
    this.#parser.on('field', (name, value, info) => this.#onPart(name, value, info.valueTruncated, info.encoding));
    this.#parser.on('file', (name, stream, info) => {
      // Drained and never read; busboy fails it when the form breaks off, which the form reports itself.
      stream.on('error', ignore).resume();
      this.#onPart(name, null, false, info.encoding);
    });
    this.#parser.on('error', (error: Error) => this.#fail(invalidMultipart(error.message.toLowerCase())));
  }

  /** The `model` field, once its part has ended; null before (or when there is none). */
  get model(): ModelField | null {
    return this.#model;
  }

  /** Reads the next bytes; throws a GatewayError (400) at the first fault in what was read so far. */
  async push(chunk: Buffer): Promise<void> {
    this.#throwIfFailed();
    try {
      this.#locator.push(chunk);
    } catch (error) {
      this.#fail(framingError(error));
    }
    this.#throwIfFailed();
    await new Promise<void>((resolve) =>
      this.#parser.write(chunk, (error) => {
        if (error) this.#fail(invalidMultipart(error.message.toLowerCase()));
        resolve();
      }),
    );
    this.#throwIfFailed();
  }

  /** The body ended: throws unless it was a complete form whose every part busboy read. */
  async end(): Promise<void> {
    this.#throwIfFailed();
    try {
      this.#locator.end();
    } catch (error) {
      this.#fail(framingError(error));
    }
    this.#throwIfFailed();
    this.#parser.end();
    await finished(this.#parser).catch((error: unknown) => this.#fail(invalidMultipart((error as Error).message.toLowerCase())));
    this.#throwIfFailed();
    if (this.#reported !== this.#locator.parts.length) this.#fail(invalidMultipart('a part without a form-data Content-Disposition'));
    this.#throwIfFailed();
  }

  #throwIfFailed(): void {
    if (this.#error !== null) throw this.#error;
  }

  #fail(error: GatewayError): void {
    this.#error ??= error;
  }

  /** One part busboy read: `value` null for a file part. */
  #onPart(name: string | undefined, value: string | null, truncated: boolean, encoding: string): void {
    const span = this.#locator.parts[this.#reported++];
    // A field is reported when the delimiter after it is read, which the locator read first.
    if (span === undefined || (value !== null && span.contentEnd === -1)) {
      return this.#fail(invalidMultipart('a part without a form-data Content-Disposition'));
    }
    if (name === undefined || name === '') return this.#fail(invalidMultipart('a part without a name'));
    if (name !== 'model') return;
    if (this.#model !== null) return this.#fail(new GatewayError('duplicate_model', "The form has more than one 'model' field.", { param: 'model' }));
    if (value === null) return this.#fail(invalidMultipart("'model' must be a text field, not a file", 'model'));
    if (truncated) return this.#fail(invalidMultipart("the 'model' field is too long", 'model'));
    if (!PLAIN_ENCODINGS.has(encoding)) return this.#fail(invalidMultipart("the 'model' field must not carry a Content-Transfer-Encoding", 'model'));
    this.#model = { value, span };
  }
}

function framingError(error: unknown): GatewayError {
  if (error instanceof MultipartFramingError) return invalidMultipart(error.message);
  throw error;
}

function ignore(): void {}
