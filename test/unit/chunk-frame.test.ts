import { frameChunk } from '../../src/io/chunk-frame.js';

describe('frameChunk', () => {
  test.each([1, 9, 10, 15, 16, 255, 256, 4095, 65_536, 1_048_577])('%i bytes: size in lower-case hex, CRLF, the bytes, CRLF', (length) => {
    const bytes = Buffer.alloc(length, 'x');
    bytes[0] = 0x0d; // data bytes are copied as they are, whatever they are
    const framed = frameChunk(bytes);
    const size = length.toString(16);
    expect(framed.subarray(0, size.length + 2).toString('latin1')).toBe(`${size}\r\n`);
    expect(framed.subarray(size.length + 2, size.length + 2 + length).equals(bytes)).toBe(true);
    expect(framed.subarray(size.length + 2 + length).toString('latin1')).toBe('\r\n');
    expect(framed.length).toBe(size.length + length + 4);
  });

  test('the framed copy does not share memory with the bytes (they may be a reused read buffer)', () => {
    const bytes = Buffer.from('data: {}\n\n');
    const framed = frameChunk(bytes);
    bytes.fill(0);
    expect(framed.toString('latin1')).toBe('a\r\ndata: {}\n\n\r\n');
  });
});
