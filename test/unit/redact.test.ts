import fc from 'fast-check';
import { bodyMask, HEADER_MASK, partialSuffix, redactHeaders, redaction, StreamRedactor } from '../../src/pipeline/redact.js';

const KEY = 'sk-upstream-secret-9876543210';

/** Feeds `body` in the given pieces and returns what comes out, joined. */
function through(redactor: StreamRedactor, pieces: readonly Buffer[]): Buffer {
  const out: Buffer[] = pieces.map((piece) => Buffer.from(redactor.push(Buffer.from(piece))));
  const rest = redactor.end();
  if (rest !== null) out.push(rest);
  return Buffer.concat(out);
}

function cut(body: Buffer, points: readonly number[]): Buffer[] {
  const sorted = [...new Set(points.map((p) => p % (body.length + 1)))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let from = 0;
  for (const point of sorted) {
    pieces.push(body.subarray(from, point));
    from = point;
  }
  pieces.push(body.subarray(from));
  return pieces;
}

/** What a body should become: every occurrence masked, every other byte as it was. */
function expected(body: Buffer, secret: string): Buffer {
  const mask = bodyMask(Buffer.byteLength(secret));
  const out = Buffer.from(body);
  const needle = Buffer.from(secret);
  for (let at = out.indexOf(needle); at !== -1; at = out.indexOf(needle, at + needle.length)) mask.copy(out, at);
  return out;
}

describe('bodyMask', () => {
  test('[redacted] padded with * to the length, or only * when the length is shorter than [redacted]', () => {
    expect([8, 9, 10, 11, 14].map((length) => bodyMask(length).toString())).toEqual(['********', '*********', '[redacted]', '[redacted]*', '[redacted]****']);
  });
});

describe('StreamRedactor', () => {
  test('a key inside one piece is masked with a mask of its own length', () => {
    const redactor = new StreamRedactor([KEY]);
    const out = through(redactor, [Buffer.from(`data: {"echo":"Bearer ${KEY}"}\n\n`)]);
    expect(out.toString()).toBe(`data: {"echo":"Bearer [redacted]*******************"}\n\n`);
    expect(out.length).toBe(Buffer.byteLength(`data: {"echo":"Bearer ${KEY}"}\n\n`));
    expect(redactor.count).toBe(1);
  });

  test('a key split across two pieces is found; only the possible start of a key is held back', () => {
    const redactor = new StreamRedactor([KEY]);
    const first = redactor.push(Buffer.from(`data: a ${KEY.slice(0, 10)}`));
    expect(first.toString()).toBe('data: a '); // the tail that could start the key waits
    const second = redactor.push(Buffer.from(`${KEY.slice(10)} b\n\n`));
    expect(second.toString()).toBe(`${bodyMask(KEY.length).toString()} b\n\n`);
    expect(redactor.end()).toBeNull();
  });

  test('a piece that ends with a whole key is passed on at once, masked: only a proper start of a key waits', () => {
    const redactor = new StreamRedactor([KEY]);
    expect(redactor.push(Buffer.from(`a ${KEY}`)).toString()).toBe(`a ${bodyMask(KEY.length).toString()}`);
    expect(redactor.end()).toBeNull();
  });

  test('partialSuffix: the longest tail that is a proper prefix of the secret', () => {
    const secret = Buffer.from('abcab-secret');
    const tails = ['', 'x', 'xa', 'xab', 'xabcab', 'xabcab-secre', 'abcab-secret', 'xabcabc', 'abx'].map((data) => partialSuffix(Buffer.from(data), secret));
    expect(tails).toEqual([0, 0, 1, 2, 5, 11, 0, 3, 0]);
  });

  test('onRedacted is called once for each piece in which a secret was masked, and only then', () => {
    let calls = 0;
    const redactor = new StreamRedactor([KEY], () => calls++);
    redactor.push(Buffer.from(`${KEY} and ${KEY}`));
    expect([calls, redactor.count]).toEqual([1, 2]);
    redactor.push(Buffer.from('clean'));
    redactor.push(Buffer.from(`x ${KEY.slice(0, 6)}`));
    expect([calls, redactor.count]).toEqual([1, 2]);
    redactor.push(Buffer.from(KEY.slice(6)));
    expect([calls, redactor.count]).toEqual([2, 3]);
    expect(redactor.end()).toBeNull();
    expect(calls).toBe(2);
  });

  test('an event ending in a blank line is never held back', () => {
    const redactor = new StreamRedactor([KEY]);
    const event = Buffer.from('data: {"choices":[{"delta":{"content":"s"}}]}\n\n');
    expect(redactor.push(Buffer.from(event)).toString()).toBe(event.toString());
  });

  test('a held tail that turns out not to be a key is passed on unchanged', () => {
    const redactor = new StreamRedactor([KEY]);
    expect(redactor.push(Buffer.from('text sk-up')).toString()).toBe('text ');
    expect(redactor.push(Buffer.from('per')).toString()).toBe('sk-upper');
    expect(redactor.push(Buffer.from('x sk')).toString()).toBe('x ');
    expect(redactor.end()!.toString()).toBe('sk');
  });

  test('any cut of any body: the output is the body with every key masked, byte for byte', () => {
    const piece = fc.oneof(
      fc.constant(KEY),
      fc.constant(KEY.slice(0, 5)),
      fc.constant(KEY.slice(3)),
      fc.constant('sk-'),
      fc.string({ maxLength: 20 }),
      fc.uint8Array({ maxLength: 20 }).map((bytes) => Buffer.from(bytes).toString('latin1')),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 8 }), (parts, points) => {
        const body = Buffer.from(parts.join(''), 'latin1');
        const out = through(new StreamRedactor([KEY]), cut(body, points));
        expect(out.equals(expected(body, KEY))).toBe(true);
        expect(out.indexOf(KEY)).toBe(-1);
      }),
      { numRuns: 2000 },
    );
  });

  test('several secrets, each masked, byte by byte', () => {
    const other = 'pw-proxy-0123456789';
    const body = Buffer.from(`x ${KEY} y ${other} z ${KEY}`);
    const out = through(
      new StreamRedactor([KEY, other]),
      cut(
        body,
        Array.from({ length: body.length }, (_, i) => i),
      ),
    );
    expect(out.toString()).toBe(`x ${bodyMask(KEY.length).toString()} y ${bodyMask(other.length).toString()} z ${bodyMask(KEY.length).toString()}`);
  });
});

describe('StreamRedactor with secrets inside one another', () => {
  const LONG = 'sk-proj-abcdef-0123456789';
  const secrets = [LONG, 'pw-proxy-0123456789', LONG.slice(8), LONG.slice(0, 14)]; // longest first, as the snapshot gives them

  const MASK_BYTES = new Set(Buffer.from('[redacted]*'));

  /** Which bytes of `body` belong to an occurrence of any secret. */
  function covered(body: Buffer): boolean[] {
    const marks = Array.from({ length: body.length }, () => false);
    for (const secret of secrets) {
      const needle = Buffer.from(secret);
      for (let at = body.indexOf(needle); at !== -1; at = body.indexOf(needle, at + 1)) marks.fill(true, at, at + needle.length);
    }
    return marks;
  }

  test('any cut of any body: every byte of every secret masked, every other byte kept, nothing held at the end', () => {
    const piece = fc.oneof(
      ...secrets.map((secret) => fc.constant(secret)),
      fc.constant(LONG.slice(0, 9)),
      fc.constant(LONG.slice(12)),
      fc.string({ maxLength: 12 }),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 10 }), fc.array(fc.nat(), { maxLength: 8 }), (parts, points) => {
        const body = Buffer.from(parts.join(''), 'latin1');
        const out = through(new StreamRedactor(secrets), cut(body, points));
        const marks = covered(body);
        expect(out.length).toBe(body.length);
        for (const secret of secrets) expect(out.indexOf(secret)).toBe(-1);
        const wrong = marks.flatMap((secret, i) => ((secret ? !MASK_BYTES.has(out[i]!) : out[i] !== body[i]) ? [i] : []));
        expect(wrong).toEqual([]);
      }),
      { numRuns: 2000 },
    );
  });

  test('a secret that starts a longer one, ending the body: masked, not handed back raw by end()', () => {
    const redactor = new StreamRedactor(secrets);
    expect(redactor.push(Buffer.from(`x ${LONG.slice(0, 14)}`)).toString()).toBe('x ');
    expect(redactor.end()!.toString()).toBe(bodyMask(14).toString());
    expect(redactor.count).toBe(1);
  });

  test('a secret found but held back (it may start a longer one) is reported with the piece that masks it, not before', () => {
    let reported = 0;
    const redactor = new StreamRedactor(secrets, () => reported++);
    expect(redactor.push(Buffer.from(`x ${LONG.slice(0, 14)}`)).toString()).toBe('x ');
    expect(reported).toBe(0);
    redactor.push(Buffer.from(' y'));
    expect([reported, redactor.count]).toEqual([1, 1]);
  });

  test('the longer secret twice in a piece: each masked whole with its own mask, each counted once', () => {
    const redactor = new StreamRedactor(secrets);
    const out = through(redactor, [Buffer.from(`a ${LONG} b ${LONG}`)]);
    expect(out.toString()).toBe(`a ${bodyMask(LONG.length).toString()} b ${bodyMask(LONG.length).toString()}`);
    expect(redactor.count).toBe(2);
  });

  test('the longer secret split across pieces is masked whole, with its own mask', () => {
    const redactor = new StreamRedactor(secrets);
    const out = through(redactor, [Buffer.from(`a ${LONG.slice(0, 14)}`), Buffer.from(`${LONG.slice(14)} b`)]);
    expect(out.toString()).toBe(`a ${bodyMask(LONG.length).toString()} b`);
    expect(redactor.count).toBe(1);
  });
});

describe('StreamRedactor with secrets that overlap (the end of one starts another)', () => {
  const FIRST = 'sk-upstream-abcdef-0123456789';
  const SECOND = '0123456789-proxy-password';
  const body = Buffer.from(`x ${FIRST.slice(0, -10)}${SECOND} y`); // both secrets, sharing 0123456789
  /** The bytes of both, masked: mask bytes only, as many as the two cover. */
  const MASKED = `[[\\]redact*]{${FIRST.length - 10 + SECOND.length}}`;

  test('cut anywhere, every byte of both is masked and every other byte kept, as in one piece', () => {
    const whole = through(new StreamRedactor([SECOND, FIRST]), [body]);
    expect(whole.toString()).toMatch(new RegExp(`^x ${MASKED} y$`));
    for (let at = 0; at <= body.length; at++) {
      for (const secrets of [
        [SECOND, FIRST],
        [FIRST, SECOND],
      ]) {
        const redactor = new StreamRedactor(secrets);
        const out = through(redactor, [body.subarray(0, at), body.subarray(at)]);
        expect([at, out.toString().replace(new RegExp(MASKED), 'MASK')]).toEqual([at, 'x MASK y']);
        expect(redactor.count).toBe(2);
      }
    }
  });

  test('the piece that ends with the first and the start of the second holds both back, as they came', () => {
    const redactor = new StreamRedactor([SECOND, FIRST]);
    expect(redactor.push(Buffer.from(`x ${FIRST}-pr`)).toString()).toBe('x ');
    expect(redactor.push(Buffer.from('oxy-password y')).toString()).toMatch(new RegExp(`^${MASKED} y$`));
  });
});

describe('StreamRedactor with three secrets chained by overlaps', () => {
  const A = 'key-alpha-XY12';
  const B = 'XY12-beta-ZW34';
  const C = 'ZW34-gamma-secret';
  const body = Buffer.from(`p key-alpha-XY12-beta-ZW34-gamma-secret q`);
  const MASKED = `[[\\]redact*]{${body.length - 4}}`;

  test('cut anywhere, whatever the order of the secrets, every byte of the three is masked', () => {
    for (const secrets of [
      [C, A, B],
      [C, B, A],
      [A, B, C],
    ]) {
      for (let at = 0; at <= body.length; at++) {
        const out = through(new StreamRedactor(secrets), [body.subarray(0, at), body.subarray(at)]);
        expect([secrets, at, out.toString().replace(new RegExp(MASKED), 'MASK')]).toEqual([secrets, at, 'p MASK q']);
      }
    }
  });
});

describe('redaction: the first transform of every relayed body', () => {
  test('no secrets configured: no transform', () => {
    expect(redaction([], () => undefined)).toBeNull();
  });

  test('each response gets its own redactor, which masks the secrets and reports each piece it masked in', () => {
    let reported = 0;
    const factory = redaction([KEY], () => reported++)!;
    const first = factory.forResponse(200, {}, {})!;
    const second = factory.forResponse(200, {}, {})!;
    expect(first).not.toBe(second);
    expect(first.push(Buffer.from(`a ${KEY.slice(0, 5)}`)).toString()).toBe('a ');
    expect(second.push(Buffer.from(`b ${KEY}`)).toString()).toBe(`b ${bodyMask(KEY.length).toString()}`);
    expect(first.push(Buffer.from(`${KEY.slice(5)} c`)).toString()).toBe(`${bodyMask(KEY.length).toString()} c`);
    expect(reported).toBe(2);
  });
});

describe('redactHeaders', () => {
  test('every value holding a secret, lists included, and only those', () => {
    const clean = ['ok', 'fine'];
    const headers = { a: `Bearer ${KEY}`, b: ['ok', `x${KEY}x${KEY}`], c: 'clean', d: 7, e: clean };
    expect(redactHeaders(headers, [KEY])).toBe(2);
    expect(headers).toEqual({ a: `Bearer ${HEADER_MASK}`, b: ['ok', `x${HEADER_MASK}x${HEADER_MASK}`], c: 'clean', d: 7, e: ['ok', 'fine'] });
    expect(headers.e).toBe(clean); // a list without a secret is left as it was
  });

  test('a secret inside a longer one: the longer is masked whole', () => {
    const headers = { a: `Bearer ${KEY}-2`, b: `Bearer ${KEY}` };
    expect(redactHeaders(headers, [`${KEY}-2`, KEY])).toBe(2);
    expect(headers).toEqual({ a: `Bearer ${HEADER_MASK}`, b: `Bearer ${HEADER_MASK}` });
  });
});
