/**
 * The JSON grammar fuzzed against the gateway's reading of a request body
 * (parseJsonRequest, replaceModel): whatever the spelling, the model the
 * gateway decides on is the one JSON.parse (and so the upstream) reads, a
 * body that names `model` twice is refused, the rewrite changes only the
 * model value's bytes, and a body that is not JSON is a 400, never another
 * error.
 */
import fc from 'fast-check';
import { GatewayError } from '../../src/errors/gateway-error.js';
import { mayRepeatModel, parseJsonRequest, replaceModel } from '../../src/pipeline/json-request.js';
import { damage, damaged, jsonValue, modelMembers, render, requestObject, topLevelObject, whitespace } from '../support/json-grammar.js';

/** The gateway's reading of `text`: its model and stream flag, or the code of the error it answers with. */
function reading(text: string): { model: string; stream: boolean } | { code: string; status: number } {
  try {
    const { model, stream } = parseJsonRequest(Buffer.from(text));
    return { model, stream };
  } catch (error) {
    if (!(error instanceof GatewayError)) throw error;
    return { code: error.code, status: error.status };
  }
}

const RUNS = { numRuns: 400 };

describe('top-level objects spelled every way', () => {
  test("the model decided on is JSON.parse's; two model keys, however spelled, are refused", () => {
    fc.assert(
      fc.property(topLevelObject, (object) => {
        const text = render(object);
        const parsed = JSON.parse(text) as Record<string, unknown>;
        const models = modelMembers(object).length;
        const model = Object.hasOwn(parsed, 'model') ? parsed['model'] : undefined;
        if (models > 1) {
          expect(reading(text)).toEqual({ code: 'duplicate_model', status: 400 });
        } else if (typeof model === 'string' && model !== '') {
          expect(reading(text)).toEqual({ model, stream: Object.hasOwn(parsed, 'stream') && parsed['stream'] === true });
        } else {
          expect(reading(text)).toEqual({ code: 'missing_model', status: 400 });
        }
      }),
      RUNS,
    );
  });

  test('the rewrite changes only the bytes of the model value, and the upstream reads the new model', () => {
    fc.assert(
      fc.property(requestObject, fc.string({ unit: 'binary', minLength: 1, maxLength: 20 }), (object, target) => {
        const text = render(object);
        expect(reading(text)).toEqual(expect.objectContaining({ model: JSON.parse(text).model as string }));
        const [index] = modelMembers(object);
        const rewritten = replaceModel(text, target);
        expect(rewritten).toBe(render(object, { index: index!, text: JSON.stringify(target) }));
        expect((JSON.parse(rewritten) as { model: unknown }).model).toBe(target);
      }),
      RUNS,
    );
  });

  test('the quick test for a repeated model never says no when the scanner would find two', () => {
    fc.assert(
      fc.property(topLevelObject, (object) => {
        if (modelMembers(object).length > 1) expect(mayRepeatModel(render(object))).toBe(true);
      }),
      RUNS,
    );
  });
});

describe('what is not a request object', () => {
  test('any other JSON value, whitespace around it: 400 invalid_body', () => {
    fc.assert(
      fc.property(whitespace, jsonValue, whitespace, (lead, value, trail) => {
        const text = lead + value + trail;
        const parsed: unknown = JSON.parse(text);
        fc.pre(parsed === null || typeof parsed !== 'object' || Array.isArray(parsed));
        expect(reading(text)).toEqual({ code: 'invalid_body', status: 400 });
      }),
      RUNS,
    );
  });

  test('damaged JSON (a character out of place, or cut short): a 400, invalid_json whenever JSON.parse refuses it', () => {
    fc.assert(
      fc.property(topLevelObject, damage, (object, hurt) => {
        // As the bytes arrive: a cut through a surrogate pair reaches the gateway as U+FFFD.
        const text = Buffer.from(damaged(render(object), hurt)).toString('utf8');
        const answer = reading(text);
        let valid = true;
        try {
          JSON.parse(text);
        } catch {
          valid = false;
        }
        if (!valid) expect(answer).toEqual({ code: 'invalid_json', status: 400 });
        else if ('code' in answer) expect(answer.status).toBe(400);
        else expect(answer.model).toBe((JSON.parse(text) as { model: unknown }).model);
      }),
      {
        ...RUNS,
        // Found by a run: a cut through a surrogate pair (the model value's last character, U+10000).
        examples: [
          [
            { lead: '', members: [{ key: { text: '"model"', value: 'model' }, value: '"m\\ud800\u{10000}"', space: ['', '', '', ''] }], empty: '', trail: '' },
            [17, '', 'replace'],
          ],
        ],
      },
    );
  });
});
