import fc from 'fast-check';
import { ResponseParser, type ResponseSink } from '../../src/transport/h1/response-parser.js';

/**
 * Parsing what an upstream sends must cost time linear in its length: a
 * backtracking pattern over a header line once took seconds per response on
 * the event loop. These tests time heads of adversarial shapes at growing
 * lengths up to the 64 KiB limit and require the cost per byte to stay flat.
 */

const LIMIT = 64 * 1024;
const sink: ResponseSink = { onHead: () => false, onBody: () => undefined };

/** Shapes that make a backtracking header-line pattern go quadratic, and their neighbours. */
const MOTIFS = [' ', '\t', ' \t', ':', '::', ',', ';', '=', ' :', ': ', '"', '\\', 'a ', '; timeout=', ',\t'];

/** A head whose one header line is `motif` repeated to about `length` bytes, with a non-blank byte after it. */
function head(motif: string, length: number, inName: boolean): Buffer {
  const run = motif.repeat(Math.max(1, Math.floor(length / motif.length)));
  const line = inName ? `x${run.replaceAll(':', '-').replaceAll(' ', '-')}: v` : `x-long: a${run}b`;
  return Buffer.from(`HTTP/1.1 200 OK\r\ncontent-length: 0\r\n${line}\r\n\r\n`, 'latin1');
}

/** Best of a few runs, in ns per byte: the least disturbed by GC and the other jest worker. */
function nsPerByte(parts: readonly Buffer[]): number {
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  let best = Infinity;
  for (let run = 0; run < 5; run++) {
    const parser = new ResponseParser(sink);
    parser.reset(true);
    const started = process.hrtime.bigint();
    for (const part of parts) {
      try {
        parser.feed(part);
      } catch {
        break; // refused as malformed: also must be quick
      }
    }
    best = Math.min(best, Number(process.hrtime.bigint() - started));
  }
  return best / total;
}

function pieces(bytes: Buffer, size: number): Buffer[] {
  const parts: Buffer[] = [];
  for (let at = 0; at < bytes.length; at += size) parts.push(bytes.subarray(at, at + size));
  return parts;
}

/** A cost per byte at the limit within this factor of the cost at 1/16 of it: linear, with room for noise. */
const FLAT = 6;

describe('response head parsing time', () => {
  it('stays linear in the length for any adversarial header line, in one read', () => {
    fc.assert(
      fc.property(fc.constantFrom(...MOTIFS), fc.boolean(), (motif, inName) => {
        const small = nsPerByte([head(motif, LIMIT / 16, inName)]);
        const large = nsPerByte([head(motif, LIMIT - 200, inName)]);
        // A floor of 2 ns per byte: below it both are too quick to compare.
        expect(large).toBeLessThan(FLAT * Math.max(small, 2));
      }),
      { numRuns: 30 },
    );
  });

  it('stays linear when the head arrives a few bytes at a time', () => {
    for (const size of [1, 7, 100]) {
      const small = nsPerByte(pieces(head(' \t', LIMIT / 16, false), size));
      const large = nsPerByte(pieces(head(' \t', LIMIT - 200, false), size));
      expect(large).toBeLessThan(FLAT * Math.max(small, 20));
    }
  });

  it('parses a 60 KiB whitespace-riddled header line in well under a millisecond per KiB', () => {
    const bytes = head(' \t', 60 * 1024, false);
    const started = performance.now();
    const parser = new ResponseParser(sink);
    parser.reset(true);
    expect(parser.feed(bytes)).toBe(true);
    // The backtracking pattern took over 2 s here.
    expect(performance.now() - started).toBeLessThan(60);
  });

  it('still refuses a head over the limit, however it arrives', () => {
    const bytes = head(' ', LIMIT + 100, false);
    for (const size of [1, 1000, bytes.length]) {
      const parser = new ResponseParser(sink);
      parser.reset(true);
      expect(() => {
        for (const part of pieces(bytes, size)) parser.feed(part);
      }).toThrow('response head too large');
    }
  });
});
