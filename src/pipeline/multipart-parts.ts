import StreamSearch from 'streamsearch';

/** Where one part of a multipart body lies, as offsets into the body. */
export interface PartSpan {
  /** The first byte of the part's content (after its header block); -1 until the headers end. */
  contentStart: number;
  /** The first byte after the part's content (where the next delimiter starts); -1 while the part is open. */
  contentEnd: number;
}

/** The body's framing is not one that every multipart parser reads the same way. */
export class MultipartFramingError extends Error {
  readonly code = 'MULTIPART_FRAMING';
  constructor(reason: string) {
    super(reason);
    this.name = 'MultipartFramingError';
  }
}

const CR = 13;
const LF = 10;
const DASH = 45;
const CRLF = Buffer.from('\r\n');
/** The header block ends at the first blank line: CR LF CR LF, counting the line end after the delimiter. */
const HEADER_END = [CR, LF, CR, LF];

const enum State {
  /** Nothing yet: the body must open with its first delimiter. */
  Start,
  /** Just past a delimiter: a line end (a part follows) or `--` (the close delimiter). */
  AfterDelimiter,
  /** Inside a part's header block. */
  Headers,
  /** Inside a part's content. */
  Content,
  /** Past the close delimiter: the epilogue, which no parser reads. */
  Epilogue,
}

/**
 * Finds the parts of a multipart body as it streams by, in body offsets, so
 * that one part's bytes can be replaced and every other byte kept. It uses
 * the same search busboy runs (streamsearch, over `CRLF--boundary`, with a
 * CRLF put before the body), so both see the same delimiters; and it refuses
 * what busboy would quietly skip but another parser might read: a preamble,
 * transport padding or any byte but CRLF or `--` after a delimiter, and a
 * delimiter inside a part's headers. Kept beside busboy, which reports
 * values but not where their bytes lie (docs/performance.md, "Hand-written
 * where a library exists").
 */
export class PartLocator {
  readonly parts: PartSpan[] = [];
  readonly #search: StreamSearch;
  readonly #delimiterLength: number;
  /** Body offset of the next byte the search reports (the CRLF put before the body sits at -2). */
  #offset = -CRLF.length;
  #state = State.Start;
  /** Bytes of `--` or CRLF seen after a delimiter, or of HEADER_END matched in a header block. */
  #matched = 0;
  #afterDelimiterFirst = 0;
  #error: MultipartFramingError | null = null;

  constructor(boundary: string) {
    const needle = Buffer.from(`\r\n--${boundary}`, 'latin1');
    this.#delimiterLength = needle.length;
    this.#search = new StreamSearch(needle, this.#onSearch);
    this.#search.push(CRLF);
  }

  /** Whether the close delimiter was seen. */
  get complete(): boolean {
    return this.#state === State.Epilogue;
  }

  /** Reads the next bytes of the body; throws MultipartFramingError at the first framing fault. */
  push(chunk: Buffer): void {
    this.#search.push(chunk);
    this.#throwIfFailed();
  }

  /** The body ended: throws unless it ended after its close delimiter. */
  end(): void {
    this.#search.destroy();
    this.#throwIfFailed();
    if (this.#state !== State.Epilogue) throw new MultipartFramingError('the body ends before its closing boundary');
  }

  #throwIfFailed(): void {
    if (this.#error !== null) throw this.#error;
  }

  readonly #onSearch = (isMatch: boolean, data: Buffer | undefined, start: number, end: number): void => {
    if (this.#error !== null) return;
    if (data !== undefined && end > start) this.#onData(data, start, end);
    if (isMatch) this.#onDelimiter();
  };

  #fail(reason: string): void {
    this.#error ??= new MultipartFramingError(reason);
  }

  #onDelimiter(): void {
    const at = this.#offset;
    this.#offset += this.#delimiterLength;
    switch (this.#state) {
      case State.Start:
        if (at !== -CRLF.length) this.#fail('the body must begin with its boundary');
        break;
      case State.Content:
        this.parts[this.parts.length - 1]!.contentEnd = at;
        break;
      case State.Epilogue:
        return;
      case State.Headers:
        this.#fail("a boundary inside a part's headers");
        return;
      case State.AfterDelimiter:
        this.#fail('a boundary must be followed by a line end or --');
        return;
    }
    this.#state = State.AfterDelimiter;
    this.#matched = 0;
  }

  #onData(data: Buffer, start: number, end: number): void {
    const base = this.#offset - start;
    this.#offset += end - start;
    for (let i = start; i < end && this.#error === null; i++) {
      switch (this.#state) {
        case State.Content:
        case State.Epilogue:
          return; // nothing to look at until the next delimiter
        case State.Start:
          this.#fail('the body must begin with its boundary');
          return;
        case State.AfterDelimiter:
          this.#afterDelimiter(data[i]!);
          break;
        case State.Headers:
          this.#inHeaders(data[i]!, base + i + 1);
          break;
      }
    }
  }

  #afterDelimiter(byte: number): void {
    if (this.#matched === 0) {
      if (byte !== CR && byte !== DASH) return this.#fail('a boundary must be followed by a line end or --');
      this.#afterDelimiterFirst = byte;
      this.#matched = 1;
      return;
    }
    const first = this.#afterDelimiterFirst;
    if (first === DASH && byte === DASH) {
      this.#state = State.Epilogue;
    } else if (first === CR && byte === LF) {
      this.parts.push({ contentStart: -1, contentEnd: -1 });
      this.#state = State.Headers;
      this.#matched = 2; // the CR LF just read starts the blank-line search
    } else {
      this.#fail('a boundary must be followed by a line end or --');
    }
  }

  /** `next` is the body offset after `byte`. */
  #inHeaders(byte: number, next: number): void {
    if (byte === HEADER_END[this.#matched]) {
      if (++this.#matched < HEADER_END.length) return;
      this.parts[this.parts.length - 1]!.contentStart = next;
      this.#state = State.Content;
      return;
    }
    this.#matched = byte === CR ? 1 : 0;
  }
}
