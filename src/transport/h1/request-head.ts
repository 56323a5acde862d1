import { InvalidHeaderError } from '../../errors/upstream.js';

/** A byte that would end a header line early: values with one would smuggle headers into the request. */
const LINE_BREAKING = /[\r\n\0]/;

/**
 * The request line and headers, as a latin1 string (header values keep their
 * bytes, as Node's server decoded them). `chunked` adds the framing header for
 * a body of unknown length.
 */
export function requestHead(method: string, path: string, host: string, headers: Readonly<Record<string, string | string[]>>, chunked: boolean): string {
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${host}\r\n`;
  for (const name in headers) {
    const value = headers[name]!;
    if (typeof value === 'string') {
      if (LINE_BREAKING.test(value)) throw new InvalidHeaderError(name);
      head += `${name}: ${value}\r\n`;
    } else {
      for (const item of value) {
        if (LINE_BREAKING.test(item)) throw new InvalidHeaderError(name);
        head += `${name}: ${item}\r\n`;
      }
    }
  }
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  return head + '\r\n';
}
