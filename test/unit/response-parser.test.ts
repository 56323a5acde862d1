import fc from 'fast-check';
import { ResponseParser } from '../../src/transport/h1/response-parser.js';
import type { ResponseSink } from '../../src/transport/h1/response-parser.js';
import type { ResponseHeaders } from '../../src/transport/types.js';
import { BadResponseError, UpstreamError } from '../../src/errors/upstream.js';

interface Head {
  status: number;
  headers: ResponseHeaders;
}

/** Records everything the parser reports; `raw` is what onHead answers. */
class Recorder implements ResponseSink {
  readonly heads: Head[] = [];
  readonly chunks: Buffer[] = [];
  readonly payloads: number[] = [];
  /** Each delivery's `last` flag, and the feed it came from. */
  readonly lasts: boolean[] = [];
  readonly feeds: number[] = [];
  feed = 0;

  onHead(status: number, headers: ResponseHeaders): void {
    this.heads.push({ status, headers });
  }

  onBody(bytes: Buffer, last: boolean): void {
    // The parser hands out views of its input: keep a copy.
    this.chunks.push(Buffer.from(bytes));
    this.payloads.push(bytes.length);
    this.lasts.push(last);
    this.feeds.push(this.feed);
  }

  get body(): Buffer {
    return Buffer.concat(this.chunks);
  }

  get payload(): number {
    return this.payloads.reduce((sum, value) => sum + value, 0);
  }
}

interface Run {
  parser: ResponseParser;
  sink: Recorder;
  /** What each feed returned. */
  results: boolean[];
  parts: readonly Buffer[];
}

interface RunOptions {
  expectBody?: boolean;
}

function bytes(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Feeds `parts` in order to a fresh, reset parser. */
function run(parts: readonly Buffer[], options: RunOptions = {}): Run {
  const sink = new Recorder();
  const parser = new ResponseParser(sink);
  parser.reset(options.expectBody ?? true);
  const results = parts.map((part, index) => {
    sink.feed = index;
    return parser.feed(part);
  });
  return { parser, sink, results, parts };
}

function splitAt(data: Buffer, ...points: number[]): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    parts.push(data.subarray(start, point));
    start = point;
  }
  parts.push(data.subarray(start));
  return parts;
}

function byteByByte(data: Buffer): Buffer[] {
  return Array.from({ length: data.length }, (_, index) => data.subarray(index, index + 1));
}

/** Every way to feed `data` in two pieces (or every `step`th), then byte by byte. */
function everySplit(data: Buffer, step = 1): Buffer[][] {
  const splits: Buffer[][] = [];
  for (let index = 0; index <= data.length; index += step) splits.push(splitAt(data, index));
  splits.push(byteByByte(data));
  return splits;
}

function describeParts(parts: readonly Buffer[]): string {
  return parts.length > 4 ? `${parts.length} pieces` : JSON.stringify(parts.map((part) => part.toString('latin1')));
}

/**
 * When the run reported completion: 'at end' when only the last non-empty
 * piece did (feeding nothing after that reports it again), else what happened.
 */
function completionOf(result: Run): string {
  const { results, parts } = result;
  let end = results.length - 1;
  while (end > 0 && parts[end]!.length === 0) end--;
  const first = results.indexOf(true);
  if (first === -1) return 'never';
  if (first !== end || results.slice(end).some((done) => !done)) return `reported by feeds ${JSON.stringify(results)}`;
  return 'at end';
}

/** A complete run: only the last feed reports completion. */
function expectCompletesAtEnd(result: Run): void {
  expect(completionOf(result)).toBe('at end');
  expect(result.parser.complete).toBe(true);
  expect(result.parser.headComplete).toBe(true);
}

/** Everything observable about a run, to compare runs of the same input cut differently. */
interface Outcome {
  heads: Head[];
  body: string;
  payload: number;
  completion: string;
  complete: boolean;
  reusable: boolean;
  keepAliveMs: number | null;
  /** onBody calls with no bytes. */
  badDeliveries: number;
}

function outcomeOf(result: Run): Outcome {
  const { sink, parser } = result;
  const badDeliveries = sink.chunks.filter((chunk) => chunk.length === 0).length;
  return {
    heads: sink.heads,
    body: sink.body.toString('latin1'),
    payload: sink.payload,
    completion: completionOf(result),
    complete: parser.complete,
    reusable: parser.reusable,
    keepAliveMs: parser.keepAliveMs,
    badDeliveries,
  };
}

/**
 * Runs every way of cutting the input in `splits` and checks each outcome
 * equals `expected` (checked once, with toEqual), reporting the first cuts that differ.
 */
function expectSameOutcome(splits: readonly (readonly Buffer[])[], expected: Outcome, options: RunOptions = {}): void {
  const reference = outcomeOf(run(splits[0]!, options));
  expect(reference).toEqual(expected);
  const want = JSON.stringify(reference);
  const mismatches: string[] = [];
  for (const parts of splits) {
    let got: string;
    try {
      got = JSON.stringify(outcomeOf(run(parts, options)));
    } catch (error) {
      got = String(error);
    }
    if (got !== want && mismatches.length < 3) mismatches.push(`${describeParts(parts)} => ${got}`);
  }
  expect(mismatches).toEqual([]);
}

function completeOutcome(heads: Head[], body: string, payload = body.length, reusable = true): Outcome {
  return { heads, body, payload, completion: 'at end', complete: true, reusable, keepAliveMs: null, badDeliveries: 0 };
}

/** Runs `fn` and returns the BadResponseError it throws, failing otherwise. */
function badResponse(fn: () => unknown): BadResponseError {
  let caught: unknown = undefined;
  try {
    fn();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(BadResponseError);
  expect(caught).toBeInstanceOf(UpstreamError);
  const error = caught as BadResponseError;
  expect(error.code).toBe('UPSTREAM_BAD_RESPONSE');
  expect(error.name).toBe('BadResponseError');
  return error;
}

/** Whether feeding `parts` throws a BadResponseError; describes what happened otherwise. */
function rejection(parts: readonly Buffer[], options: RunOptions): string {
  const parser = new ResponseParser(new Recorder());
  parser.reset(options.expectBody ?? true);
  try {
    for (const part of parts) parser.feed(part);
  } catch (error) {
    if (error instanceof BadResponseError && error.code === 'UPSTREAM_BAD_RESPONSE') return 'rejected';
    return `threw ${String(error)}`;
  }
  return `accepted, complete: ${parser.complete}`;
}

/** Every split of the input (sampled for long ones) and byte by byte: all are rejected. */
function expectRejectedEverySplit(data: Buffer, options: RunOptions = {}): void {
  badResponse(() => run([data], options));
  const failures: string[] = [];
  for (const parts of everySplit(data, Math.max(1, Math.floor(data.length / 200)))) {
    const what = rejection(parts, options);
    if (what !== 'rejected' && failures.length < 3) failures.push(`${describeParts(parts)}: ${what}`);
  }
  expect(failures).toEqual([]);
}

const CHUNKED_HEAD = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n';

/** Non-final chunks with extensions, uppercase and lowercase hex, a leading zero, and CRLF inside the data. */
const CHUNKS =
  '5;name=value\r\nhello\r\n' +
  'A\r\n0123456789\r\n' +
  '1a; a="b c"\t;x\r\nabcdefghijklmnopqrstuvwxyz\r\n' +
  'F\r\nABCDEFGHIJKLMNO\r\n' +
  '01\r\n!\r\n' +
  '2\r\n\r\n\r\n' +
  '10 \r\n0\r\n0\r\n0\r\n0\r\n0\r\nX\r\n';
const DECODED = 'hello' + '0123456789' + 'abcdefghijklmnopqrstuvwxyz' + 'ABCDEFGHIJKLMNO' + '!' + '\r\n' + '0\r\n0\r\n0\r\n0\r\n0\r\nX';
const LAST_CHUNK = '0;last=yes\r\n';
const TRAILERS = 'X-Trailer: t\r\nX-Other: u\r\n';

const CHUNKED_RESPONSE = bytes(CHUNKED_HEAD + CHUNKS + LAST_CHUNK + TRAILERS + '\r\n');
const CHUNKED_HEAD_EVENT: Head = {
  status: 200,
  headers: { 'transfer-encoding': 'chunked', 'content-type': 'text/plain' },
};

/** Every way to cut `data` in three pieces with both cuts at or after `from`. */
function pairSplits(data: Buffer, from: number): Buffer[][] {
  const splits: Buffer[][] = [];
  for (let first = from; first <= data.length; first++) {
    for (let second = first; second <= data.length; second++) splits.push(splitAt(data, first, second));
  }
  return splits;
}

describe('ResponseParser: state', () => {
  test('a new parser takes nothing until reset', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    expect(parser.complete).toBe(true);
    parser.reset(true);
    expect(parser.complete).toBe(false);
    expect(parser.headComplete).toBe(false);
    expect(parser.reusable).toBe(true);
    expect(parser.keepAliveMs).toBeNull();
  });

  test('close() ends the response', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    parser.feed(bytes('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc'));
    expect(parser.complete).toBe(false);
    parser.close();
    expect(parser.complete).toBe(true);
  });

  test('one parser serves consecutive responses on a connection', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    expect(parser.feed(bytes('HTTP/1.1 200 OK\r\nKeep-Alive: timeout=7\r\nContent-Length: 3\r\n\r\none'))).toBe(true);
    expect(parser.keepAliveMs).toBe(7000);
    parser.reset(false);
    expect(parser.complete).toBe(false);
    expect(parser.keepAliveMs).toBeNull();
    expect(parser.feed(bytes('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'))).toBe(true);
    parser.reset(true);
    expect(parser.feed(bytes('HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\ntwo\r\n0\r\n\r\n'))).toBe(true);
    expect(parser.reusable).toBe(true);
    parser.reset(true);
    expect(parser.feed(bytes('HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nthree'))).toBe(true);
    expect(parser.reusable).toBe(false);
    parser.reset(true);
    expect(parser.reusable).toBe(true);
    expect(parser.feed(bytes('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfour'))).toBe(true);
    expect(parser.reusable).toBe(true);
    expect(sink.heads.map((head) => head.status)).toEqual([200, 200, 201, 200, 200]);
    expect(sink.body.toString()).toBe('onetwothreefour');
  });

  test('an empty feed changes nothing', () => {
    const data = bytes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc');
    const empty = Buffer.alloc(0);
    const result = run([empty, data.subarray(0, 10), empty, data.subarray(10, 40), empty, data.subarray(40)]);
    expect(result.results).toEqual([false, false, false, false, false, true]);
    expect(result.sink.body.toString()).toBe('abc');
  });
});

describe('ResponseParser: Content-Length', () => {
  test('a body in the same input as the head', () => {
    const { parser, sink, results } = run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world')]);
    expect(results).toEqual([true]);
    expect(sink.heads).toEqual([{ status: 200, headers: { 'content-length': '11' } }]);
    expect(sink.body.toString()).toBe('hello world');
    expect(sink.payload).toBe(11);
    expect(parser.reusable).toBe(true);
    expect(parser.keepAliveMs).toBeNull();
  });

  test('zero length completes with the head', () => {
    const { parser, sink, results } = run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')]);
    expect(results).toEqual([true]);
    expect(sink.chunks).toEqual([]);
    expect(parser.reusable).toBe(true);
    expect(parser.finish()).toBe(true);
  });

  test('a body split across many feeds', () => {
    const body = Buffer.from(Array.from({ length: 1000 }, (_, index) => index % 251));
    const head = bytes('HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n');
    const parts = [head];
    for (let start = 0; start < body.length; start += 7) parts.push(body.subarray(start, start + 7));
    const result = run(parts);
    expectCompletesAtEnd(result);
    expect(result.sink.body.equals(body)).toBe(true);
    expect(result.sink.payload).toBe(1000);
    result.sink.chunks.forEach((chunk, index) => expect(result.sink.payloads[index]).toBe(chunk.length));
    expect(result.parser.reusable).toBe(true);
  });

  test('the whole response at every split point, and byte by byte', () => {
    const data = bytes('HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\n\r\nhello');
    const head = { status: 200, headers: { 'content-length': '5', x: 'y' } };
    expectSameOutcome(everySplit(data), completeOutcome([head], 'hello'));
  });

  test('finish() before the end does not complete', () => {
    const { parser, results } = run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel')]);
    expect(results).toEqual([false]);
    expect(parser.finish()).toBe(false);
    expect(parser.complete).toBe(false);
  });

  test.each([
    ['in the same input', [bytes('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1')]],
    ['in a later input', [bytes('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no'), bytes('kX')]],
    ['after a zero length body', [bytes('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nX')]],
    ['fed after completion', [bytes('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'), bytes('X')]],
  ])('bytes after the end make the connection unusable (%s)', (_, parts) => {
    const result = run(parts);
    expect(result.results[result.results.length - 1]).toBe(true);
    expect(result.sink.body.toString()).toBe('ok'.slice(0, result.sink.body.length));
    expect(result.sink.payload).toBe(result.sink.body.length);
    expect(result.parser.reusable).toBe(false);
  });

  test('identical duplicate content-length values are accepted', () => {
    const { sink, results } = run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 3\r\ncontent-length: 3\r\n\r\nabc')]);
    expect(results).toEqual([true]);
    expect(sink.heads[0]!.headers['content-length']).toEqual(['3', '3']);
    expect(sink.body.toString()).toBe('abc');
  });
});

describe('ResponseParser: chunked, decoded', () => {
  test('the body is the concatenation of the chunks, trailers are dropped', () => {
    const result = run([CHUNKED_RESPONSE]);
    expectCompletesAtEnd(result);
    expect(result.sink.heads).toEqual([{ status: 200, headers: { 'transfer-encoding': 'chunked', 'content-type': 'text/plain' } }]);
    expect(result.sink.body.toString('latin1')).toBe(DECODED);
    expect(result.sink.payload).toBe(DECODED.length);
    result.sink.chunks.forEach((chunk, index) => expect(result.sink.payloads[index]).toBe(chunk.length));
    expect(result.parser.reusable).toBe(true);
  });

  test('every split point and byte by byte give the same result', () => {
    expectSameOutcome(everySplit(CHUNKED_RESPONSE), completeOutcome([CHUNKED_HEAD_EVENT], DECODED));
  });

  test('every pair of split points of the body', () => {
    expectSameOutcome(pairSplits(CHUNKED_RESPONSE, CHUNKED_HEAD.length), completeOutcome([CHUNKED_HEAD_EVENT], DECODED));
  });

  test('an empty body: only the last chunk', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')]);
    expectCompletesAtEnd(result);
    expect(result.sink.chunks).toEqual([]);
    expect(result.parser.reusable).toBe(true);
  });

  test.each(['00', '0000000000000', '0;ext', '0 ', '0\t;a=b'])('last chunk %j', (last) => {
    const result = run([bytes(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n${last}\r\n\r\n`)]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('abc');
  });

  test('13 hex digits are accepted', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0000000000001\r\nx\r\n0\r\n\r\n')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('x');
  });

  test('a large chunk across feeds', () => {
    const data = Buffer.alloc(70000, 0x61);
    const head = bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11170\r\n');
    const parts = [head];
    for (let start = 0; start < data.length; start += 4096) parts.push(data.subarray(start, start + 4096));
    parts.push(bytes('\r\n0\r\n\r\n'));
    const result = run(parts);
    expectCompletesAtEnd(result);
    expect(result.sink.body.equals(data)).toBe(true);
  });

  test('bytes after the last chunk make the connection unusable', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nHTTP')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('a');
    expect(result.parser.reusable).toBe(false);
  });

  test('the transfer coding names are case-insensitive and chunked may follow other codings', () => {
    for (const coding of ['Chunked', 'CHUNKED', 'gzip, chunked', 'gzip,chunked', ' gzip , chunked ']) {
      const result = run([bytes(`HTTP/1.1 200 OK\r\nTransfer-Encoding: ${coding}\r\n\r\n2\r\nab\r\n0\r\n\r\n`)]);
      expect(result.results).toEqual([true]);
      expect(result.sink.body.toString()).toBe('ab');
    }
  });

  test('split transfer-encoding headers: chunked last', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('ab');
  });

  test('trailers of nearly 64 KiB are accepted', () => {
    const line = `X-T: ${'t'.repeat(1000)}\r\n`;
    const trailers = line.repeat(60);
    const result = run([bytes(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n${trailers}\r\n`)]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('a');
  });
});

describe('ResponseParser: chunked, random chunkings', () => {
  const chunk = fc.record({
    data: fc.uint8Array({ minLength: 1, maxLength: 40 }),
    extension: fc.constantFrom('', ';a', ';a=b', ' ;x="y z"', '\t'),
    zeros: fc.nat({ max: 2 }),
    upper: fc.boolean(),
  });
  const response = fc.record({
    chunks: fc.array(chunk, { maxLength: 8 }),
    last: fc.constantFrom('0', '00', '0;end'),
    trailers: fc.constantFrom('', 'X-T: 1\r\n', 'A: b\r\nC: d\r\n'),
    cuts: fc.array(fc.nat(), { maxLength: 6 }),
  });

  test('decoded results do not depend on how the input is cut', () => {
    fc.assert(
      fc.property(response, ({ chunks, last, trailers, cuts }) => {
        let framed = '';
        let decoded = Buffer.alloc(0);
        for (const { data, extension, zeros, upper } of chunks) {
          const size = data.length.toString(16);
          framed += '0'.repeat(zeros) + (upper ? size.toUpperCase() : size) + extension + '\r\n' + Buffer.from(data).toString('latin1') + '\r\n';
          decoded = Buffer.concat([decoded, data]);
        }
        const head = bytes(CHUNKED_HEAD);
        const full = bytes(CHUNKED_HEAD + framed + last + '\r\n' + trailers + '\r\n');
        const points = [...new Set(cuts.map((cut) => head.length + (cut % (full.length - head.length + 1))))].sort((a, b) => a - b);
        const parts = splitAt(full, ...points);

        const plain = outcomeOf(run(parts));
        return JSON.stringify(plain) === JSON.stringify(completeOutcome([CHUNKED_HEAD_EVENT], decoded.toString('latin1')));
      }),
      { seed: 20240607, numRuns: 300 },
    );
  });
});

describe('ResponseParser: interim responses', () => {
  const interim = 'HTTP/1.1 100 Continue\r\n\r\n' + 'HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n' + 'HTTP/1.1 102\r\n\r\n';
  const final = 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';

  test('1xx responses are skipped, at every split point and byte by byte', () => {
    const data = bytes(interim + final);
    expectSameOutcome(everySplit(data), completeOutcome([{ status: 200, headers: { 'content-length': '2' } }], 'ok'));
    expectSameOutcome(pairSplits(data, 0), completeOutcome([{ status: 200, headers: { 'content-length': '2' } }], 'ok'));
  });

  test('the head is not complete after only interim responses', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    expect(parser.feed(bytes('HTTP/1.1 100 Continue\r\n\r\n'))).toBe(false);
    expect(parser.headComplete).toBe(false);
    expect(parser.feed(bytes('HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 2'))).toBe(false);
    expect(parser.headComplete).toBe(false);
    expect(sink.heads).toEqual([]);
    expect(parser.finish()).toBe(false);
    expect(parser.feed(bytes('04 No Content\r\n\r\n'))).toBe(true);
    expect(sink.heads.map((head) => head.status)).toEqual([204]);
  });

  test('interim headers do not leak into the final response', () => {
    const { parser, sink } = run([
      bytes('HTTP/1.1 103 Early Hints\r\nConnection: close\r\nKeep-Alive: timeout=1\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n'),
    ]);
    expect(sink.heads[0]!.headers).toEqual({ 'content-length': '0' });
    expect(parser.reusable).toBe(true);
    expect(parser.keepAliveMs).toBeNull();
  });

  test.each([
    ['101 Switching Protocols', 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n'],
    ['101 after a 100', 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n'],
  ])('%s is rejected', (_, text) => {
    expectRejectedEverySplit(bytes(text));
  });
});

describe('ResponseParser: responses without a body', () => {
  test.each([
    ['HEAD', true, 'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n'],
    ['HEAD, chunked', true, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['HEAD, no framing', true, 'HTTP/1.1 200 OK\r\n\r\n'],
    ['204', false, 'HTTP/1.1 204 No Content\r\nContent-Length: 100\r\n\r\n'],
    ['204, chunked', false, 'HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n'],
    ['304', false, 'HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n'],
    ['304, no framing', false, 'HTTP/1.1 304 Not Modified\r\nETag: "x"\r\n\r\n'],
  ])('%s', (_, head, text) => {
    {
      const result = run([bytes(text)], { expectBody: !head });
      expectCompletesAtEnd(result);
      expect(result.sink.heads).toHaveLength(1);
      expect(result.sink.chunks).toEqual([]);
      expect(result.parser.reusable).toBe(true);
      expect(result.parser.finish()).toBe(true);
      expectSameOutcome(everySplit(bytes(text)), outcomeOf(result), { expectBody: !head });
    }
  });

  test('bytes after a bodiless response make the connection unusable', () => {
    const result = run([bytes('HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\nabc')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.chunks).toEqual([]);
    expect(result.parser.reusable).toBe(false);
  });

  test('HEAD: content-length is not validated', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n')], { expectBody: false });
    expect(result.sink.heads[0]!.headers['content-length']).toBe('100');
  });
});

describe('ResponseParser: close-delimited bodies', () => {
  test.each([
    ['no content-length or transfer-encoding', 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n'],
    ['transfer-encoding gzip', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n'],
    ['chunked not last', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n'],
    ['gzip and content-length', 'HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 2\r\n\r\n'],
    ['HTTP/1.0', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n'],
  ])('%s: the body runs to the close', (_, head) => {
    const body = '5\r\nhello\r\n0\r\n\r\nmore';
    const data = bytes(head + body);
    {
      const result = run([data]);
      expect(result.results).toEqual([false]);
      expect(result.parser.complete).toBe(false);
      expect(result.parser.headComplete).toBe(true);
      expect(result.sink.heads).toHaveLength(1);
      expect(result.sink.body.toString()).toBe(body);
      expect(result.sink.payload).toBe(body.length);
      expect(result.parser.reusable).toBe(false);
      expectSameOutcome(everySplit(data), outcomeOf(result));
      expect(result.parser.finish()).toBe(true);
      expect(result.parser.complete).toBe(true);
      expect(result.parser.reusable).toBe(false);
      expect(result.parser.finish()).toBe(true);
    }
  });

  test('an empty close-delimited body', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\n\r\n')]);
    expect(result.results).toEqual([false]);
    expect(result.parser.finish()).toBe(true);
    expect(result.sink.chunks).toEqual([]);
    expect(result.parser.reusable).toBe(false);
  });

  test('finish() does not complete a head or a chunked body', () => {
    expect(run([bytes('HTTP/1.1 200 OK\r\nContent-Le')]).parser.finish()).toBe(false);
    expect(run([bytes(start())]).parser.finish()).toBe(false);
    expect(run([bytes(start() + '3\r\nab')]).parser.finish()).toBe(false);
    expect(run([bytes(start() + '3\r\nabc\r\n0\r\n')]).parser.finish()).toBe(false);
    function start(): string {
      return 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n';
    }
  });
});

describe('ResponseParser: transfer-encoding with content-length', () => {
  test('chunked wins, and the connection is not reused', () => {
    const data = bytes('HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n');
    const head: Head = { status: 200, headers: { 'content-length': '100', 'transfer-encoding': 'chunked' } };
    expectSameOutcome(everySplit(data), completeOutcome([head], 'hello', 5, false));
  });

  // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing: close the connection after it.
  test.each([
    ['chunked', 'Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n', true],
    ['chunked and content-length', 'Transfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n1\r\na\r\n0\r\n\r\n', true],
  ])('HTTP/1.0 with transfer-encoding (%s) is not reused, even with keep-alive', (_, rest, complete) => {
    const result = run([bytes('HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n' + rest)]);
    expect(result.results).toEqual([complete]);
    expect(result.sink.body.toString()).toBe('a');
    expect(result.parser.reusable).toBe(false);
  });

  test('an invalid content-length next to chunked is ignored', () => {
    const result = run([bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: nope\r\n\r\n1\r\na\r\n0\r\n\r\n')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('a');
    expect(result.parser.reusable).toBe(false);
  });
});

describe('ResponseParser: connection reuse', () => {
  test.each([
    ['HTTP/1.1', 'HTTP/1.1 200 OK\r\n', true],
    ['HTTP/1.1, Connection: keep-alive', 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n', true],
    ['HTTP/1.1, Connection: close', 'HTTP/1.1 200 OK\r\nConnection: close\r\n', false],
    ['HTTP/1.1, Connection: Close', 'HTTP/1.1 200 OK\r\nConnection: Close\r\n', false],
    ['HTTP/1.1, Connection: upgrade, close', 'HTTP/1.1 200 OK\r\nConnection: upgrade, close\r\n', false],
    ['HTTP/1.1, two Connection headers', 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nConnection: close\r\n', false],
    ['HTTP/1.1, Connection: closed', 'HTTP/1.1 200 OK\r\nConnection: closed\r\n', true],
    ['HTTP/1.1, Connection: x-close-not', 'HTTP/1.1 200 OK\r\nConnection: x-close-not\r\n', true],
    ['HTTP/1.0, Connection: x-keep-alive-foo', 'HTTP/1.0 200 OK\r\nConnection: x-keep-alive-foo\r\n', false],
    ['HTTP/1.0', 'HTTP/1.0 200 OK\r\n', false],
    ['HTTP/1.0, Connection: keep-alive', 'HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n', true],
    ['HTTP/1.0, Connection: Keep-Alive', 'HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n', true],
    ['HTTP/1.0, Connection: close', 'HTTP/1.0 200 OK\r\nConnection: close\r\n', false],
  ])('%s', (_, head, reusable) => {
    const result = run([bytes(head + 'Content-Length: 2\r\n\r\nok')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.body.toString()).toBe('ok');
    expect(result.parser.reusable).toBe(reusable);
  });

  test.each([
    ['timeout=5', 5000],
    ['timeout=5, max=100', 5000],
    ['max=100, timeout=30', 30000],
    ['Timeout=2', 2000],
    ['timeout=0', 0],
    ['max=100', null],
    ['', null],
  ])('Keep-Alive: %s', (value, ms) => {
    const result = run([bytes(`HTTP/1.1 200 OK\r\nKeep-Alive: ${value}\r\nContent-Length: 0\r\n\r\n`)]);
    expect(result.parser.keepAliveMs).toBe(ms);
  });

  test('no Keep-Alive header', () => {
    expect(run([bytes('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n')]).parser.keepAliveMs).toBeNull();
  });
});

describe('ResponseParser: headers', () => {
  test('duplicates become arrays, names are lower-cased, values trimmed', () => {
    const data = bytes(
      'HTTP/1.1 200 OK\r\n' +
        'Set-Cookie: a=1\r\n' +
        'Content-TYPE:text/html\r\n' +
        'set-cookie:  b=2; Path=/ \r\n' +
        'SET-COOKIE: c=3\r\n' +
        'X-Pair: one\r\n' +
        'x-pair: two\r\n' +
        'X-Spaced: \t  inner  space \t \r\n' +
        'X-Empty:\r\n' +
        'X-Blank:   \r\n' +
        "X-Token!#$%&'*+-.^_`|~09: ok\r\n" +
        'Content-Length: 0\r\n\r\n',
    );
    expectSameOutcome(
      everySplit(data),
      completeOutcome(
        [
          {
            status: 200,
            headers: {
              'set-cookie': ['a=1', 'b=2; Path=/', 'c=3'],
              'content-type': 'text/html',
              'x-pair': ['one', 'two'],
              'x-spaced': 'inner  space',
              'x-empty': '',
              'x-blank': '',
              "x-token!#$%&'*+-.^_`|~09": 'ok',
              'content-length': '0',
            },
          },
        ],
        '',
      ),
    );
  });

  test('latin1 bytes are preserved', () => {
    const value = Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x20, 0x80, 0xff, 0x7f, 0x22]);
    const data = Buffer.concat([bytes('HTTP/1.1 200 OK\r\nX-Name: '), value, bytes('\r\nContent-Length: 0\r\n\r\n')]);
    const { sink } = run([data]);
    const header = sink.heads[0]!.headers['x-name'];
    expect(header).toBe('caf\u00e9 \u0080\u00ff\u007f"');
    expect(Buffer.from(header as string, 'latin1').equals(value)).toBe(true);
  });

  test('the status line: reason phrases', () => {
    for (const [line, status] of [
      ['HTTP/1.1 200 OK', 200],
      ['HTTP/1.1 404', 404],
      ['HTTP/1.1 500 ', 500],
      ['HTTP/1.1 599 Some Reason: with\tstuff \u00e9', 599],
      ['HTTP/1.0 201 Created', 201],
    ] as const) {
      const result = run([bytes(`${line}\r\nContent-Length: 0\r\n\r\n`)]);
      expect(result.results).toEqual([true]);
      expect(result.sink.heads[0]!.status).toBe(status);
    }
  });

  test('a head with no header fields', () => {
    const result = run([bytes('HTTP/1.1 204 No Content\r\n\r\n')]);
    expect(result.results).toEqual([true]);
    expect(result.sink.heads).toEqual([{ status: 204, headers: {} }]);
  });

  test('a head of nearly 64 KiB is accepted, fed in one piece or in pieces', () => {
    const data = bytes(`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(65000)}\r\nContent-Length: 1\r\n\r\nz`);
    const pieces: Buffer[] = [];
    for (let start = 0; start < data.length; start += 1000) pieces.push(data.subarray(start, start + 1000));
    for (const parts of [[data], pieces]) {
      const result = run(parts);
      expectCompletesAtEnd(result);
      expect((result.sink.heads[0]!.headers['x-big'] as string).length).toBe(65000);
      expect(result.sink.body.toString()).toBe('z');
    }
  });
});

describe('ResponseParser: rejections', () => {
  const ok = 'HTTP/1.1 200 OK\r\n';
  const chunked = ok + 'Transfer-Encoding: chunked\r\n\r\n';
  test.each([
    // Status line.
    ['not HTTP', 'HELLO\r\n\r\n'],
    ['HTTP/2', 'HTTP/2 200 OK\r\n\r\n'],
    ['HTTP/1.2', 'HTTP/1.2 200 OK\r\n\r\n'],
    ['lower-case protocol', 'http/1.1 200 OK\r\n\r\n'],
    ['two-digit status', 'HTTP/1.1 20 OK\r\n\r\n'],
    ['four-digit status', 'HTTP/1.1 2000 OK\r\n\r\n'],
    ['status 099', 'HTTP/1.1 099 OK\r\n\r\n'],
    ['no space before the status', 'HTTP/1.1200 OK\r\n\r\n'],
    ['two spaces before the status', 'HTTP/1.1  200 OK\r\n\r\n'],
    ['no space before the reason', 'HTTP/1.1 200OK\r\n\r\n'],
    ['NUL in the reason', 'HTTP/1.1 200 O\0K\r\n\r\n'],
    ['bare CR in the reason', 'HTTP/1.1 200 O\rK\r\n\r\n'],
    ['bare LF ending the status line', 'HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n'],
    ['leading empty line', '\r\nHTTP/1.1 200 OK\r\n\r\n'],
    ['malformed interim status line', 'HTTP/1.1 100\tContinue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'],
    // Header lines.
    ['space before the colon', ok + 'Content-Length : 0\r\n\r\n'],
    ['tab before the colon', ok + 'Content-Length\t: 0\r\n\r\n'],
    ['obs-fold with a space', ok + 'X-A: one\r\n two\r\nContent-Length: 0\r\n\r\n'],
    ['obs-fold with a tab', ok + 'X-A: one\r\n\ttwo\r\nContent-Length: 0\r\n\r\n'],
    ['no colon', ok + 'X-A one\r\n\r\n'],
    ['empty name', ok + ': value\r\n\r\n'],
    ['non-token name', ok + 'X(A): value\r\n\r\n'],
    ['latin1 in the name', ok + 'X-\u00e9: value\r\n\r\n'],
    ['NUL in a value', ok + 'X-A: a\0b\r\nContent-Length: 0\r\n\r\n'],
    ['bare CR in a value', ok + 'X-A: a\rb\r\nContent-Length: 0\r\n\r\n'],
    ['CR ending a value', ok + 'X-A: a\r\r\nContent-Length: 0\r\n\r\n'],
    ['bare LF in a value', ok + 'X-A: a\nb\r\nContent-Length: 0\r\n\r\n'],
    ['bare LF ending a header line', ok + 'X-A: a\nContent-Length: 0\r\n\r\n'],
    ['malformed header in an interim response', 'HTTP/1.1 103 Early Hints\r\nLink : x\r\n\r\nHTTP/1.1 200 OK\r\n\r\n'],
    // Content-Length.
    ['conflicting duplicate content-length', ok + 'Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello'],
    ['a third conflicting content-length', ok + 'Content-Length: 5\r\nContent-Length: 5\r\nContent-Length: 50\r\n\r\nhello'],
    ['non-numeric content-length', ok + 'Content-Length: abc\r\n\r\n'],
    ['negative content-length', ok + 'Content-Length: -1\r\n\r\n'],
    ['signed content-length', ok + 'Content-Length: +5\r\n\r\nhello'],
    ['hex content-length', ok + 'Content-Length: 0x5\r\n\r\nhello'],
    ['fractional content-length', ok + 'Content-Length: 5.0\r\n\r\nhello'],
    ['exponent content-length', ok + 'Content-Length: 5e0\r\n\r\nhello'],
    ['empty content-length', ok + 'Content-Length:\r\n\r\n'],
    ['inner space in content-length', ok + 'Content-Length: 1 0\r\n\r\n0123456789'],
    ['content-length of 16 digits', ok + 'Content-Length: 1000000000000000\r\n\r\n'],
    // Chunk size lines.
    ['non-hex chunk size', chunked + 'g\r\nxxxxxxxxxxxxxxxx\r\n0\r\n\r\n'],
    ['empty chunk size', chunked + '\r\n'],
    ['chunk size with only an extension', chunked + ';a=b\r\n'],
    ['negative chunk size', chunked + '-1\r\n'],
    ['chunk size with a leading space', chunked + ' 5\r\nhello\r\n0\r\n\r\n'],
    ['chunk size with a 0x prefix', chunked + '0x5\r\nhello\r\n0\r\n\r\n'],
    ['chunk size of 14 digits', chunked + '10000000000000\r\n'],
    ['chunk size of 14 digits with leading zeros', chunked + '00000000000001\r\nx\r\n0\r\n\r\n'],
    ['bare LF after a chunk size', chunked + '5\nhello\r\n0\r\n\r\n'],
    ['bare LF after a chunk extension', chunked + '5;a=b\nhello\r\n0\r\n\r\n'],
    ['CR without LF after a chunk size', chunked + '5\rhello\r\n0\r\n\r\n'],
    ['bare LF after the last chunk size', chunked + '5\r\nhello\r\n0\n\r\n'],
    ['control character in a chunk extension', chunked + '5;a\u0001\r\nhello\r\n0\r\n\r\n'],
    ['text after the size that is not an extension', chunked + '5 garbage\r\nhello\r\n0\r\n\r\n'],
    ['DEL in a chunk extension', chunked + '5;a\u007f\r\nhello\r\n0\r\n\r\n'],
    ['chunk extension over 4 KiB', chunked + `5;${'e'.repeat(5000)}\r\nhello\r\n0\r\n\r\n`],
    // Chunk data.
    ['data longer than its size', chunked + '3\r\nhello\r\n0\r\n\r\n'],
    ['data one byte longer than its size', chunked + '4\r\nhello\r\n0\r\n\r\n'],
    ['data followed by a bare LF', chunked + '5\r\nhello\n0\r\n\r\n'],
    ['data followed by CR and no LF', chunked + '5\r\nhello\r0\r\n\r\n'],
    ['data shorter than its size', chunked + '6\r\nhello\r\n0\r\n\r\n'],
    // Trailers.
    ['NUL in a trailer', chunked + '0\r\nX\0Y: 1\r\n\r\n'],
    ['bare LF in a trailer', chunked + '0\r\nX: 1\nY: 2\r\n\r\n'],
    ['trailer line ending in a bare CR', chunked + '0\r\nX-T: 1\rX\r\n\r\n'],
    ['final CRLF missing its LF', chunked + '0\r\n\rX'],
  ])('%s', (_, text) => {
    expectRejectedEverySplit(bytes(text));
  });

  test('the head limit does not depend on how the input is cut', () => {
    for (const size of [65533, 65534, 65535, 65536, 65537]) {
      const base = 'HTTP/1.1 204 No Content\r\nX: ';
      const head = bytes(base + 'a'.repeat(size - base.length) + '\r\n\r\n');
      const whole = rejection([head], {});
      expect(whole).toBe(size <= 64 * 1024 ? 'accepted, complete: true' : 'rejected');
      const outcomes = [1, 2, 3, 4].map((cut) => rejection(splitAt(head, head.length - cut), {}));
      expect({ size, outcomes }).toEqual({ size, outcomes: [whole, whole, whole, whole] });
    }
  });

  test('a head over 64 KiB, with its end', () => {
    const data = bytes(`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(66000)}\r\nContent-Length: 0\r\n\r\n`);
    expect(badResponse(() => run([data])).message).toMatch(/head too large/);
  });

  test('a head over 64 KiB, without its end, fed in pieces', () => {
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    const piece = bytes('X-Filler: ' + 'f'.repeat(1014) + '\r\n');
    expect(parser.feed(bytes('HTTP/1.1 200 OK\r\n'))).toBe(false);
    let fed = 0;
    const error = badResponse(() => {
      while (fed < 1000) {
        parser.feed(piece);
        fed++;
      }
    });
    expect(error.message).toMatch(/head too large/);
    // Rejected soon after the limit, not only when a head end arrives.
    expect(fed * piece.length).toBeLessThanOrEqual(64 * 1024 + piece.length);
    expect(sink.heads).toEqual([]);
  });

  test('a head over 64 KiB in a single input without its end', () => {
    const data = bytes(`HTTP/1.1 200 OK\r\nX-Big: ${'b'.repeat(70000)}`);
    badResponse(() => run([data]));
  });

  test('trailers over 64 KiB', () => {
    const line = `X-T: ${'t'.repeat(1000)}\r\n`;
    const text = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n${line.repeat(70)}\r\n`;
    expect(badResponse(() => run([bytes(text)])).message).toMatch(/trailers too large/);
    // Fed in pieces: rejected before the trailers end.
    const sink = new Recorder();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    parser.feed(bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n'));
    let fed = 0;
    badResponse(() => {
      while (fed < 1000) {
        parser.feed(bytes(line));
        fed++;
      }
    });
    expect(fed).toBeLessThanOrEqual(66);
  });

  test('a trailer line of 64 KiB without its end', () => {
    const text = `HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: ${'t'.repeat(70000)}`;
    badResponse(() => run([bytes(text)]));
  });

  test('the error message names the reason', () => {
    expect(badResponse(() => run([bytes('nope\r\n\r\n')])).message).toBe('invalid response from the upstream: malformed status line');
    expect(badResponse(() => run([bytes('HTTP/1.1 200 OK\r\nA : b\r\n\r\n')])).message).toMatch(/malformed header line/);
    expect(badResponse(() => run([bytes('HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n')])).message).toMatch(/invalid content-length/);
    expect(badResponse(() => run([bytes('HTTP/1.1 101 Switching Protocols\r\n\r\n')])).message).toMatch(/protocol switch/);
  });
});

describe('ResponseParser: last bytes (sent with the end of the relayed response)', () => {
  /** Which deliveries were marked `last`, by index. */
  function marked(result: Run): number[] {
    return result.sink.lasts.flatMap((last, index) => (last ? [index] : []));
  }

  /** `last` marks at most one delivery: the final one, in the feed that completes the response. */
  function expectLastRule(result: Run): void {
    const { sink, results } = result;
    const lasts = marked(result);
    if (lasts.length === 0) return;
    expect(lasts).toEqual([sink.lasts.length - 1]);
    expect(results[sink.feeds[lasts[0]!]!]).toBe(true);
  }

  const lengthResponse = bytes('HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world');
  const eventStream = bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\ndata: a\r\n7\r\ndata: b\r\n0\r\n\r\n');

  test('a Content-Length body: its final bytes', () => {
    const whole = run([lengthResponse]);
    expect(whole.sink.lasts).toEqual([true]);
    const split = run(splitAt(lengthResponse, lengthResponse.length - 4));
    expect(split.sink.lasts).toEqual([false, true]);
    expect(split.sink.chunks.at(-1)!.toString()).toBe('orld');
  });

  test('a chunked body that ends in the same input: its last chunk', () => {
    const result = run([eventStream]);
    expect(result.sink.lasts).toEqual([false, true]);
    expect(result.sink.chunks.map((chunk) => chunk.toString())).toEqual(['data: a', 'data: b']);
  });

  test.each([
    ['the blank line after the last chunk comes in the next input', ['7\r\ndata: a\r\n0\r\n', '\r\n']],
    ['the blank line is cut in two', ['7\r\ndata: a\r\n0\r\n\r', '\n']],
    ['the last chunk line comes in the next input', ['7\r\ndata: a\r\n', '0\r\n\r\n']],
    ['trailers follow the last chunk', ['7\r\ndata: a\r\n0\r\nx-t: 1\r\n\r\n']],
    ['the last chunk has an extension', ['7\r\ndata: a\r\n0;x=y\r\n\r\n']],
  ])('not when the end is not yet certain: %s', (_, body) => {
    const parts = [bytes('HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n' + body[0]!), ...body.slice(1).map(bytes)];
    const result = run(parts);
    expect(result.parser.complete).toBe(true);
    expect(result.sink.body.toString()).toBe('data: a');
    expect(marked(result)).toEqual([]);
  });

  test('never for a body framed by the close', () => {
    expect(marked(run([bytes('HTTP/1.1 200 OK\r\n\r\nhello')]))).toEqual([]);
  });

  test('every split point: at most one, the final delivery, in the completing feed', () => {
    for (const parts of everySplit(lengthResponse)) expectLastRule(run(parts));
    for (const parts of everySplit(eventStream)) expectLastRule(run(parts));
    for (const parts of everySplit(CHUNKED_RESPONSE)) expectLastRule(run(parts));
  });
});
