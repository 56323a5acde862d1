import { BadResponseError } from '../../errors/upstream.js';
import type { ResponseHeaders } from '../types.js';

/** Where a parsed response goes. Buffers passed in are views of the parser's input: copy to keep them. */
export interface ResponseSink {
  /** The final (non-1xx) response head. */
  onHead(status: number, headers: ResponseHeaders): void;
  /**
   * Body bytes, decoded (no chunk framing). `last`: no body bytes follow and
   * the response is complete within the same input, so they can leave with
   * the end of the relayed response. False promises nothing.
   */
  onBody(bytes: Buffer, last: boolean): void;
}

const enum State {
  Head,
  Length,
  UntilClose,
  ChunkSize,
  ChunkExtension,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  Trailer,
  TrailerLf,
  Done,
}

const CR = 13;
const LF = 10;
const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD_BYTES = 64 * 1024;
const MAX_TRAILER_BYTES = 64 * 1024;
const MAX_CHUNK_LINE_BYTES = 4 * 1024;
/** 13 hex digits keep a chunk size below 2^52, inside a double's exact integers. */
const MAX_SIZE_DIGITS = 13;
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\0\r\n]*)?$/;
const DIGITS = /^\d{1,15}$/;
const KEEP_ALIVE_TIMEOUT = /(?:^|[,;\s])timeout=(\d+)/i;

const EMPTY = Buffer.alloc(0);

/** tchar (RFC 9110 5.6.2), the bytes of a header name, by byte. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") TOKEN[c.charCodeAt(0)] = 1;

/** Hex digit values by byte, -1 for anything else. */
const HEX = new Int8Array(256).fill(-1);
for (let digit = 0; digit < 16; digit++) {
  HEX['0123456789abcdef'.charCodeAt(digit)] = digit;
  HEX['0123456789ABCDEF'.charCodeAt(digit)] = digit;
}

/**
 * An incremental, strict HTTP/1.1 response parser for one connection: the
 * head, then the body framed by Content-Length, chunked coding or the end of
 * the connection (RFC 9112 6.3). Invalid input throws a BadResponseError.
 */
export class ResponseParser {
  readonly #sink: ResponseSink;
  #state = State.Done;
  #expectBody = true;
  #reusable = true;
  #keepAliveMs: number | null = null;
  /** The start of a head that has not fully arrived: `#headLength` bytes of `#headBuffer`. */
  #headBuffer: Buffer = EMPTY;
  #headLength = 0;
  #remaining = 0;
  #chunkSize = 0;
  #sizeDigits = 0;
  #lineBytes = 0;
  /** Inside a chunk extension, past its ';' (only whitespace may come before it). */
  #extensionStarted = false;
  #trailerBytes = 0;

  constructor(sink: ResponseSink) {
    this.#sink = sink;
  }

  /** Expects a new response; `expectBody` is false for the answer to a HEAD request. */
  reset(expectBody: boolean): void {
    this.#state = State.Head;
    this.#expectBody = expectBody;
    this.#reusable = true;
    this.#keepAliveMs = null;
    this.#headLength = 0;
  }

  /** The response ended, or was discarded: the parser will take no input until `reset`. */
  close(): void {
    this.#state = State.Done;
  }

  get complete(): boolean {
    return this.#state === State.Done;
  }

  get headComplete(): boolean {
    return this.#state !== State.Head;
  }

  /** After completion: whether the connection may carry another request. */
  get reusable(): boolean {
    return this.#reusable;
  }

  /** The upstream's `Keep-Alive: timeout=N`, in ms, if it sent one. */
  get keepAliveMs(): number | null {
    return this.#keepAliveMs;
  }

  /** Parses `data`; returns true when the response is complete. Bytes after the end make the connection unusable. */
  feed(data: Buffer): boolean {
    let at = 0;
    if (this.#state === State.Head) {
      at = this.#readHead(data);
      if (at === -1) return false;
    }
    switch (this.#state) {
      case State.Length: {
        const take = Math.min(this.#remaining, data.length - at);
        if (take > 0) this.#sink.onBody(at === 0 && take === data.length ? data : data.subarray(at, at + take), take === this.#remaining);
        at += take;
        this.#remaining -= take;
        if (this.#remaining === 0) this.#state = State.Done;
        break;
      }
      case State.UntilClose:
        if (at < data.length) this.#sink.onBody(at === 0 ? data : data.subarray(at), false);
        return false;
      case State.Done:
        break;
      default:
        at = this.#readChunked(data, at);
    }
    if (this.#state !== State.Done) return false;
    if (at < data.length) this.#reusable = false;
    return true;
  }

  /** The connection reached its end: true when that completes the response (a body framed by the close). */
  finish(): boolean {
    if (this.#state === State.UntilClose) {
      this.#state = State.Done;
      return true;
    }
    return this.#state === State.Done;
  }

  /**
   * Returns the offset after the final head, or -1 when more input is needed.
   * A head split over several reads is gathered in one growing buffer and
   * searched only where the new bytes could complete its terminator, so a
   * head trickled in byte by byte costs time linear in its length.
   */
  #readHead(data: Buffer): number {
    let offset = 0;
    while (true) {
      let headText: string;
      if (this.#headLength === 0) {
        const end = data.indexOf(HEAD_END, offset);
        if (end === -1) {
          // Up to three bytes of the terminator may already be here.
          if (data.length - offset > MAX_HEAD_BYTES + HEAD_END.length - 1) throw new BadResponseError('response head too large');
          this.#holdHead(data, offset);
          return -1;
        }
        if (end - offset > MAX_HEAD_BYTES) throw new BadResponseError('response head too large');
        headText = data.toString('latin1', offset, end);
        offset = end + HEAD_END.length;
      } else {
        const before = this.#headLength;
        this.#holdHead(data, offset);
        const held = this.#headBuffer.subarray(0, this.#headLength);
        const end = held.indexOf(HEAD_END, Math.max(0, before - (HEAD_END.length - 1)));
        if (end === -1) {
          if (held.length > MAX_HEAD_BYTES + HEAD_END.length - 1) throw new BadResponseError('response head too large');
          return -1;
        }
        if (end > MAX_HEAD_BYTES) throw new BadResponseError('response head too large');
        headText = held.toString('latin1', 0, end);
        offset += end + HEAD_END.length - before;
        this.#headLength = 0;
      }
      const status = this.#parseHead(headText);
      if (status !== 0) return offset;
      // An interim (1xx) response: the final one follows.
      if (offset === data.length) return -1;
    }
  }

  /** Appends `data[offset..]` to the held start of a head, growing its buffer by doubling. */
  #holdHead(data: Buffer, offset: number): void {
    const needed = this.#headLength + data.length - offset;
    if (needed > this.#headBuffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.#headBuffer.length * 2, 1024));
      this.#headBuffer.copy(grown, 0, 0, this.#headLength);
      this.#headBuffer = grown;
    }
    this.#headLength += data.copy(this.#headBuffer, this.#headLength, offset);
  }

  /** Parses one head; returns its status, or 0 for an interim (1xx) response to skip. */
  #parseHead(text: string): number {
    const lines = text.split('\r\n');
    const statusLine = STATUS_LINE.exec(lines[0]!);
    if (statusLine === null) throw new BadResponseError('malformed status line');
    const status = Number(statusLine[2]);
    if (status === 101) throw new BadResponseError('unexpected protocol switch');
    const headers: ResponseHeaders = {};
    for (let index = 1; index < lines.length; index++) {
      const line = lines[index]!;
      const colon = headerNameEnd(line);
      if (colon === -1) throw new BadResponseError('malformed header line');
      const name = line.slice(0, colon).toLowerCase();
      const value = headerValue(line, colon + 1);
      if (value === null) throw new BadResponseError('malformed header line');
      const existing = headers[name];
      if (existing === undefined) headers[name] = value;
      else if (typeof existing === 'string') headers[name] = [existing, value];
      else existing.push(value);
    }
    if (status < 200) return 0;

    const http10 = statusLine[1] === '0';
    const connection = joined(headers['connection']);
    this.#reusable = http10 ? hasToken(connection, 'keep-alive') : !hasToken(connection, 'close');
    // HTTP/1.0 has no chunked coding: such framing is faulty and the connection must close (RFC 9112 6.1).
    if (http10 && headers['transfer-encoding'] !== undefined) this.#reusable = false;
    const keepAlive = joined(headers['keep-alive']);
    const hint = keepAlive === undefined ? null : KEEP_ALIVE_TIMEOUT.exec(keepAlive);
    this.#keepAliveMs = hint === null ? null : Number(hint[1]) * 1000;
    this.#frameBody(status, headers);
    return status;
  }

  #frameBody(status: number, headers: ResponseHeaders): void {
    if (!this.#expectBody || status === 204 || status === 304) {
      this.#state = State.Done;
      this.#sink.onHead(status, headers);
      return;
    }
    const transferEncoding = joined(headers['transfer-encoding']);
    const contentLength = headers['content-length'];
    if (transferEncoding !== undefined) {
      // Chunked must be the final coding; otherwise the body runs to the close (RFC 9112 6.3).
      if (contentLength !== undefined) this.#reusable = false;
      const codings = transferEncoding.toLowerCase().split(',');
      if (codings[codings.length - 1]!.trim() === 'chunked') {
        this.#enterChunkSize();
        this.#sink.onHead(status, headers);
        return;
      }
      this.#reusable = false;
      this.#state = State.UntilClose;
    } else if (contentLength !== undefined) {
      const values = typeof contentLength === 'string' ? [contentLength] : contentLength;
      const first = values[0]!;
      if (!DIGITS.test(first) || values.some((value) => value !== first)) throw new BadResponseError('invalid content-length');
      this.#remaining = Number(first);
      this.#state = this.#remaining === 0 ? State.Done : State.Length;
    } else {
      this.#reusable = false;
      this.#state = State.UntilClose;
    }
    this.#sink.onHead(status, headers);
  }

  #enterChunkSize(): void {
    this.#state = State.ChunkSize;
    this.#chunkSize = 0;
    this.#sizeDigits = 0;
    this.#lineBytes = 0;
  }

  /** Reads chunked framing from `at`; returns the offset after the last byte it consumed. */
  #readChunked(data: Buffer, at: number): number {
    const length = data.length;
    while (at < length) {
      switch (this.#state) {
        case State.ChunkSize: {
          const byte = data[at]!;
          const digit = HEX[byte]!;
          if (digit >= 0) {
            if (++this.#sizeDigits > MAX_SIZE_DIGITS) throw new BadResponseError('chunk size too large');
            this.#chunkSize = this.#chunkSize * 16 + digit;
          } else if (this.#sizeDigits === 0) {
            throw new BadResponseError('invalid chunk size');
          } else if (byte === CR) {
            this.#state = State.ChunkSizeLf;
          } else if (byte === 0x3b || byte === 0x20 || byte === 0x09) {
            this.#state = State.ChunkExtension;
            this.#extensionStarted = byte === 0x3b;
          } else {
            throw new BadResponseError('invalid chunk size');
          }
          at++;
          break;
        }
        case State.ChunkExtension: {
          const byte = data[at]!;
          if (byte === CR) this.#state = State.ChunkSizeLf;
          else if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f) throw new BadResponseError('invalid chunk extension');
          else if (++this.#lineBytes > MAX_CHUNK_LINE_BYTES) throw new BadResponseError('chunk extension too long');
          else if (byte === 0x3b) this.#extensionStarted = true;
          else if (!this.#extensionStarted && byte !== 0x20 && byte !== 0x09) throw new BadResponseError('invalid chunk extension');
          at++;
          break;
        }
        case State.ChunkSizeLf: {
          if (data[at] !== LF) throw new BadResponseError('invalid chunk size line');
          at++;
          if (this.#chunkSize === 0) {
            this.#state = State.Trailer;
            this.#lineBytes = 0;
            this.#trailerBytes = 0;
          } else {
            this.#state = State.ChunkData;
            this.#remaining = this.#chunkSize;
          }
          break;
        }
        case State.ChunkData: {
          const take = Math.min(this.#remaining, length - at);
          this.#remaining -= take;
          // The usual end of an event stream: its last chunk, then the last-chunk line and the blank line, in one read.
          const last = this.#remaining === 0 && endsHere(data, at + take);
          this.#sink.onBody(data.subarray(at, at + take), last);
          at += take;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          break;
        }
        case State.ChunkDataCr:
          if (data[at] !== CR) throw new BadResponseError('chunk data longer than its size');
          at++;
          this.#state = State.ChunkDataLf;
          break;
        case State.ChunkDataLf:
          if (data[at] !== LF) throw new BadResponseError('chunk data longer than its size');
          at++;
          this.#enterChunkSize();
          break;
        case State.Trailer: {
          const byte = data[at]!;
          at++;
          if (++this.#trailerBytes > MAX_TRAILER_BYTES) throw new BadResponseError('trailers too large');
          if (byte === CR) this.#state = State.TrailerLf;
          else if ((byte < 0x20 && byte !== 0x09) || byte === 0x7f) throw new BadResponseError('invalid trailer line');
          else this.#lineBytes++;
          break;
        }
        case State.TrailerLf: {
          if (data[at] !== LF) throw new BadResponseError('invalid trailer line');
          at++;
          if (this.#lineBytes === 0) {
            this.#state = State.Done;
            return at;
          }
          this.#lineBytes = 0;
          this.#state = State.Trailer;
          break;
        }
        default:
          return at;
      }
    }
    return at;
  }
}

const LAST_CHUNK_END = Buffer.from('\r\n0\r\n\r\n');

/** Whether `data` ends at `at` with a chunk's CRLF, a bare last chunk and no trailers. */
function endsHere(data: Buffer, at: number): boolean {
  return data.length - at === LAST_CHUNK_END.length && data.compare(LAST_CHUNK_END, 0, LAST_CHUNK_END.length, at) === 0;
}

/**
 * Where a header line's name ends (its colon), or -1 when the line has no
 * name of token bytes followed by a colon. Scanned by hand: a regular
 * expression over text an upstream controls can backtrack (a lazy value
 * before trailing whitespace took seconds on a 60 KiB line).
 */
function headerNameEnd(line: string): number {
  let at = 0;
  while (at < line.length) {
    const c = line.charCodeAt(at);
    if (c === 58) return at > 0 ? at : -1; // ':'
    if (TOKEN[c] !== 1) return -1;
    at++;
  }
  return -1;
}

/** The value from `start` with optional whitespace trimmed both ends; null if it holds a NUL, CR or LF. */
function headerValue(line: string, start: number): string | null {
  let end = line.length;
  while (start < end && isOws(line.charCodeAt(start))) start++;
  while (end > start && isOws(line.charCodeAt(end - 1))) end--;
  for (let at = start; at < end; at++) {
    const c = line.charCodeAt(at);
    if (c === 0 || c === CR || c === LF) return null;
  }
  return line.slice(start, end);
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

/** Whether a comma-separated header value lists `token` (case-insensitive). */
function hasToken(value: string | undefined, token: string): boolean {
  if (value === undefined) return false;
  for (const item of value.split(',')) if (item.trim().toLowerCase() === token) return true;
  return false;
}

function joined(value: string | string[] | undefined): string | undefined {
  return value === undefined || typeof value === 'string' ? value : value.join(', ');
}
