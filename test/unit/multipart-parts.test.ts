import { MultipartFramingError, PartLocator, type PartSpan } from '../../src/pipeline/multipart-parts.js';

const body = Buffer.from(
  '--b0\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n' +
    '--b0\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n\r\n--b\r\n-- b0\r\n' +
    '--b0\r\nContent-Disposition: form-data; name="n"\r\n\r\n\r\n' +
    '--b0--\r\nepilogue --b0\r\nX: y\r\n\r\n',
  'latin1',
);

/** The spans as the locator finds them when the body arrives in these pieces. */
function locate(chunks: readonly Buffer[], boundary = 'b0'): PartSpan[] {
  const locator = new PartLocator(boundary);
  for (const chunk of chunks) locator.push(chunk);
  locator.end();
  return locator.parts;
}

function expectedSpans(): PartSpan[] {
  const text = body.toString('latin1');
  const spans: PartSpan[] = [];
  let at = text.indexOf('--b0\r\n');
  while (at !== -1 && at < text.indexOf('--b0--')) {
    const contentStart = text.indexOf('\r\n\r\n', at) + 4;
    const next = text.indexOf('\r\n--b0', contentStart - 2);
    spans.push({ contentStart, contentEnd: next });
    at = next + 2;
  }
  return spans;
}

describe('PartLocator', () => {
  test("finds each part's content: after its blank line, up to the CRLF before the next delimiter", () => {
    const spans = locate([body]);
    expect(spans).toEqual(expectedSpans());
    expect(body.subarray(spans[0]!.contentStart, spans[0]!.contentEnd).toString()).toBe('whisper-1');
    expect(body.subarray(spans[1]!.contentStart, spans[1]!.contentEnd).toString()).toBe('\r\n--b\r\n-- b0');
    expect(spans[2]!.contentStart).toBe(spans[2]!.contentEnd);
  });

  test('the same spans wherever the body is cut, once or twice', () => {
    const expected = expectedSpans();
    for (let i = 0; i <= body.length; i++) {
      expect(locate([body.subarray(0, i), body.subarray(i)])).toEqual(expected);
      for (let j = i; j <= body.length; j += 7) expect(locate([body.subarray(0, i), body.subarray(i, j), body.subarray(j)])).toEqual(expected);
    }
  });

  test('one byte at a time', () => {
    expect(locate([...body].map((byte) => Buffer.from([byte])))).toEqual(expectedSpans());
  });

  const part = 'Content-Disposition: form-data; name="a"\r\n\r\nv\r\n';
  test.each([
    ['a preamble', `x\r\n--b0\r\n${part}--b0--`, 'the body must begin with its boundary'],
    ['a line end before the first boundary', `\r\n--b0\r\n${part}--b0--`, 'the body must begin with its boundary'],
    ['transport padding after a boundary', `--b0 \r\n${part}--b0--`, 'a boundary must be followed by a line end or --'],
    ['a longer boundary sharing the prefix', `--b0\r\n${part}--b0x\r\n${part}--b0--`, 'a boundary must be followed by a line end or --'],
    ['a lone dash after a boundary', `--b0\r\n${part}--b0-x`, 'a boundary must be followed by a line end or --'],
    ['a CR without LF after a boundary', `--b0\r\n${part}--b0\rx`, 'a boundary must be followed by a line end or --'],
    ['a boundary inside part headers', `--b0\r\nContent-Disposition: form-data; name="a"\r\n--b0\r\n\r\nv\r\n--b0--`, "a boundary inside a part's headers"],
    ['no closing boundary', `--b0\r\n${part}`, 'the body ends before its closing boundary'],
    ['a body cut inside headers', `--b0\r\nContent-Disp`, 'the body ends before its closing boundary'],
    ['an empty body', '', 'the body must begin with its boundary'],
  ])('refuses %s', (_name, text, reason) => {
    expect(() => locate([Buffer.from(text, 'latin1')])).toThrow(new MultipartFramingError(reason));
  });

  test('a framing fault is reported by the push that reads it, and stays', () => {
    const locator = new PartLocator('b0');
    locator.push(Buffer.from(`--b0\r\n${part}`));
    expect(() => locator.push(Buffer.from('--b0 \r\n'))).toThrow(MultipartFramingError);
    expect(() => locator.push(Buffer.from('--b0--'))).toThrow(MultipartFramingError);
    expect(() => locator.end()).toThrow(MultipartFramingError);
  });

  test('complete once the closing boundary is read; what follows is ignored', () => {
    const locator = new PartLocator('b0');
    locator.push(Buffer.from(`--b0\r\n${part}--b0`));
    expect(locator.complete).toBe(false);
    locator.push(Buffer.from('--\r\n--b0 junk'));
    expect(locator.complete).toBe(true);
    expect(locator.parts).toHaveLength(1);
  });
});
