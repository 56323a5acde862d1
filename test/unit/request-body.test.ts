import fc from 'fast-check';
import { addStreamUsage, BodyRewriteError, mayRepeatModel, objectValueSpan, parseJsonRequest, replaceModel } from '../../src/pipeline/json-request.js';
import { GatewayError } from '../../src/errors/gateway-error.js';

describe('replaceModel', () => {
  test.each([
    ['{"model":"a"}', '{"model":"b"}'],
    ['{ "x": {"model":"inner"}, "model" : "a" , "y":[1,"model"]}', '{ "x": {"model":"inner"}, "model" : "b" , "y":[1,"model"]}'],
    ['{"model":"a","model":"c"}', '{"model":"a","model":"b"}'],
    ['{"mod\\u0065l":"a"}', '{"mod\\u0065l":"b"}'],
    ['{"s":"quote \\" and \\\\","model":"a"}', '{"s":"quote \\" and \\\\","model":"b"}'],
    ['\n{\n"model"\n:\n"a"\n}\n', '\n{\n"model"\n:\n"b"\n}\n'],
  ])('%s', (input, expected) => {
    expect(replaceModel(input, 'b')).toBe(expected);
  });

  test('a body without a top-level model (a bug: only validated bodies are rewritten) fails loudly, with a code', () => {
    for (const text of ['{"x":{"model":"a"}}', '[{"model":"a"}]']) {
      expect(() => replaceModel(text, 'b')).toThrow(BodyRewriteError);
      expect(() => replaceModel(text, 'b')).toThrow(
        expect.objectContaining({ code: 'BODY_REWRITE_FAILED', name: 'BodyRewriteError', message: 'replaceModel: no top-level model in validated JSON' }),
      );
    }
  });

  test('any JSON object: only model changes, everything else is identical', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.string(), fc.string({ minLength: 1 }), (object, model, target) => {
        const text = JSON.stringify({ ...object, model }, null, Math.random() < 0.5 ? 2 : undefined);
        const replaced = JSON.parse(replaceModel(text, target)) as Record<string, unknown>;
        expect(replaced['model']).toBe(target);
        expect({ ...replaced, model }).toEqual(JSON.parse(text));
      }),
    );
  });
});

describe('addStreamUsage', () => {
  test.each([
    ['{"model":"a","stream":true}', '{"model":"a","stream":true,"stream_options":{"include_usage":true}}'],
    ['{ "model": "a", "stream": true }\n', '{ "model": "a", "stream": true ,"stream_options":{"include_usage":true}}\n'],
    ['{"model":"a","stream_options":{}}', '{"model":"a","stream_options":{"include_usage":true}}'],
    ['{"model":"a","stream_options":{ "x":1 }}', '{"model":"a","stream_options":{"include_usage":true, "x":1 }}'],
    ['{"model":"a","stream_options":{"include_usage":false,"x":1}}', '{"model":"a","stream_options":{"include_usage":true,"x":1}}'],
    ['{"model":"a","stream_options":null}', '{"model":"a","stream_options":{"include_usage":true}}'],
    [
      '{"model":"a","stream_options":{"include_usage":false},"stream_options":{"y":2}}',
      '{"model":"a","stream_options":{"include_usage":false},"stream_options":{"include_usage":true,"y":2}}',
    ],
    ['{"s":"}\\"","model":"a"}', '{"s":"}\\"","model":"a","stream_options":{"include_usage":true}}'],
    // An empty object, whitespace in it of every kind: no comma before the new member.
    ['{\t\r\n }', '{\t\r\n "stream_options":{"include_usage":true}}'],
    ['{"model":"a","stream_options":{\r\n\t }}', '{"model":"a","stream_options":{"include_usage":true\r\n\t }}'],
    // Only the value's bytes change: the whitespace after it stays, whichever it is.
    ['{"stream_options":{"include_usage":false ,"x":1}}', '{"stream_options":{"include_usage":true ,"x":1}}'],
    ['{"stream_options":{"include_usage":false\t}}', '{"stream_options":{"include_usage":true\t}}'],
    ['{"stream_options":{"include_usage":0\r\n}}', '{"stream_options":{"include_usage":true\r\n}}'],
    ['{"stream_options":{"include_usage":null\n,"x":1}}', '{"stream_options":{"include_usage":true\n,"x":1}}'],
    // Not an object: left for the upstream to refuse, as it would without the gateway.
    ['{"model":"a","stream_options":"x"}', '{"model":"a","stream_options":"x"}'],
  ])('%s', (input, expected) => {
    expect(addStreamUsage(input)).toBe(expected);
  });

  test('any JSON object: stream_options.include_usage becomes true, everything else is identical', () => {
    const options = fc.option(fc.dictionary(fc.string(), fc.jsonValue()), { nil: undefined });
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), options, (object, streamOptions) => {
        const { stream_options: _, ...rest } = object;
        const sent = streamOptions === undefined ? { ...rest, model: 'm' } : { ...rest, model: 'm', stream_options: streamOptions };
        const text = JSON.stringify(sent, null, Math.random() < 0.5 ? 2 : undefined);
        const added = JSON.parse(addStreamUsage(text)) as Record<string, unknown>;
        // Compared with what the text says (JSON has no -0: fast-check's -0 comes back as 0).
        const said = JSON.parse(text) as Record<string, unknown>;
        expect(added['stream_options']).toEqual({ ...(said['stream_options'] as object | undefined), include_usage: true });
        expect({ ...added, stream_options: null }).toEqual({ ...said, stream_options: null });
      }),
    );
  });
});

describe('objectValueSpan', () => {
  test('any JSON object: the span of a key is the text of the value JSON.parse gives it', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), fc.jsonValue()), fc.boolean(), (object, pretty) => {
        const text = JSON.stringify(object, null, pretty ? 2 : undefined);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        for (const key of Object.keys(parsed)) {
          const span = objectValueSpan(text, key)!;
          expect(JSON.parse(text.slice(span[0], span[1]))).toEqual(parsed[key]);
        }
        expect(objectValueSpan(text, '\u0000absent')).toBeNull();
      }),
    );
  });

  test('from: the object that starts there (a nested one)', () => {
    const text = '{"model":"top","response":{"tools":[{"model":"tool"}],"model":"inner"}}';
    const response = objectValueSpan(text, 'response')!;
    expect(text.slice(...objectValueSpan(text, 'model', response[0])!)).toBe('"inner"');
    expect(objectValueSpan(text, 'model', objectValueSpan(text, 'model')![0])).toBeNull(); // a string, not an object
  });

  test.each([
    ['an unterminated string', '{"model":"a'],
    ['an unterminated object', '{"x":{"y":[1,2'],
    ['a missing colon', '{"model" "a"}'],
    ['a bad escape in a key', '{"mod\\x65l":"a"}'],
    ['no object', '"model"'],
    ['nothing', ''],
  ])('text that is not JSON (%s): null, at once', (_name, text) => {
    expect(objectValueSpan(text, 'model')).toBeNull();
  });

  test('a body cut anywhere: null until the model value is whole, then its span', () => {
    const text = '{"a":{"b":"c\\"}{[","d":[1,{"e":"]"}],"f":"\\\\"},"g" : 12 ,"model":"m"}';
    const end = text.indexOf('"m"') + 3;
    const spans = Array.from({ length: text.length + 1 }, (_, cut) => objectValueSpan(text.slice(0, cut), 'model'));
    expect(spans.slice(0, end).every((span) => span === null)).toBe(true);
    expect(spans.slice(end)).toEqual(spans.slice(end).map(() => [end - 3, end]));
    expect(objectValueSpan(text, 'g')).toEqual([text.indexOf('12'), text.indexOf('12') + 2]);
  });

  test('text that is not an object where the scan starts: null, whatever follows', () => {
    expect(objectValueSpan('x"model":"a"}', 'model')).toBeNull();
    expect(objectValueSpan(' ["model","a"]', 'model')).toBeNull();
  });

  test('any text ends, in linear time (the scan reads what upstreams send)', () => {
    const alphabet = ['{', '}', '[', ']', '"', '\\', ':', ',', ' ', 'x', '"model":'];
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...alphabet), { minLength: 1, maxLength: 30 }), (unit) => {
        const text = unit.join('').repeat(Math.ceil(300_000 / unit.join('').length));
        const started = performance.now();
        objectValueSpan(text, 'model');
        objectValueSpan('{"a":' + text, 'model');
        expect(performance.now() - started).toBeLessThan(2000);
      }),
      { numRuns: 50 },
    );
  });
});

describe('parseJsonRequest', () => {
  test.each([
    [Buffer.from([0x7b, 0xff, 0x7d]), 'invalid_utf8'],
    [Buffer.from('{'), 'invalid_json'],
    [Buffer.from('"str"'), 'invalid_body'],
    [Buffer.from('null'), 'invalid_body'],
    [Buffer.from('{"model":null}'), 'missing_model'],
    [Buffer.from('{"model":""}'), 'missing_model'],
    [Buffer.from('{"__proto__":{"model":"x"}}'), 'missing_model'],
    [Buffer.from('['.repeat(100_000)), 'invalid_json'],
  ])('%#: %s', (body, code) => {
    try {
      parseJsonRequest(body);
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(GatewayError);
      expect((error as GatewayError).code).toBe(code);
    }
  });

  test.each([
    ['{"model":"m","stream":true}', true],
    ['{"model":"m","stream":false}', false],
    ['{"model":"m","stream":"true"}', false],
    ['{"model":"m","stream":1}', false],
    ['{"model":"m"}', false],
    ['{"model":"m","__proto__":{"stream":true}}', false],
  ])('stream: %s -> %s', (body, stream) => {
    expect(parseJsonRequest(Buffer.from(body)).stream).toBe(stream);
  });

  test.each([
    ['{"model":"m","stream":true,"stream_options":{"include_usage":true}}', true],
    ['{"model":"m","stream":true,"stream_options":{"include_usage":false}}', false],
    ['{"model":"m","stream":true,"stream_options":{"include_usage":"true"}}', false],
    ['{"model":"m","stream":true,"stream_options":null}', false],
    ['{"model":"m","stream":true}', false],
    ['{"model":"m","stream_options":{"include_usage":true}}', false],
  ])('includeUsage: %s -> %s', (body, includeUsage) => {
    expect(parseJsonRequest(Buffer.from(body)).includeUsage).toBe(includeUsage);
  });

  test.each([
    '{"model":"a","model":"b"}',
    '{"model":"a","model":"a"}',
    '{"model":"a","mod\\u0065l":"b"}',
    '{"\\u006Dodel":1,"model":"b"}',
    '{ "x":[{"model":1}], "model" :"a",\t"model"\r:\n"b" }',
    '{"model":"a","m\\u006f\\u0064el":"b","model":"c"}',
  ])('two top-level model keys, however spelled: 400 duplicate_model (%s)', (body) => {
    expect(() => parseJsonRequest(Buffer.from(body))).toThrow(
      expect.objectContaining({
        code: 'duplicate_model',
        status: 400,
        param: 'model',
        message: "The JSON body has more than one top-level 'model' key; parsers disagree on which one counts.",
      }),
    );
  });

  test.each([
    ['{"model":"a","x":{"model":"b"},"y":[{"model":"c"}]}', 'a'],
    ['{"model":"model","role":"model","content":"\\"model\\""}', 'model'],
    ['{"models":"b","Model":"c","model ":"d","model":"a"}', 'a'],
    ['{"mod\\u0065l":"a","text":"\\u00e9"}', 'a'],
  ])('one top-level model key, other "model"s elsewhere: %s -> %s', (body, model) => {
    expect(parseJsonRequest(Buffer.from(body)).model).toBe(model);
  });

  test('the quick test lets through only bodies that cannot repeat model', () => {
    expect(mayRepeatModel('{"model":"a"}')).toBe(false);
    expect(mayRepeatModel('{"messages":[],"model":"a","n":1}')).toBe(false);
    expect(mayRepeatModel('{"x":1}')).toBe(false);
    expect(mayRepeatModel('{"model":"a","model":"b"}')).toBe(true);
    expect(mayRepeatModel('{"model":"a","x":"\\u00e9"}')).toBe(false); // an escape that cannot spell a letter of model
    expect(mayRepeatModel('{"model":"a","x":"\\u006D"}')).toBe(true);
    expect(mayRepeatModel('{"m":"a model","model":"a"}')).toBe(false);
    expect(mayRepeatModel('{"role":"model","model":"a"}')).toBe(true);
    expect(mayRepeatModel('{"m":"\\"model","model":"a"}')).toBe(true); // a quoted word ending a value
    expect(mayRepeatModel('{"m":"\\"model\\"","model":"a"}')).toBe(false);
  });

  test.each(['{"model":null}', '{"model":""}', '{"x":1}'])('no model (%s): the error names the param model', (body) => {
    expect(() => parseJsonRequest(Buffer.from(body))).toThrow(expect.objectContaining({ code: 'missing_model', param: 'model' }));
  });

  test('prototype pollution keys stay inert', () => {
    parseJsonRequest(Buffer.from('{"model":"m","__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}}}'));
    expect(({} as Record<string, unknown>)['polluted']).toBeUndefined();
  });
});
