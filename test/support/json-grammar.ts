/**
 * fast-check arbitraries for JSON texts spelled every way the grammar
 * allows (RFC 8259): whitespace (space, tab, LF, CR) wherever it may stand,
 * strings with any character raw or escaped (short escapes, `\u` in either
 * case, surrogate pairs and lone surrogates), numbers in every spelling,
 * nesting thousands deep, and top-level objects whose keys may spell `model`
 * with escapes and may repeat it. Each text comes with what a correct parser
 * reads from it, so a property can compare the gateway's reading with it.
 */
import fc from 'fast-check';

/** JSON whitespace, and only that: a parser that skips less (or more) shows on these. */
export const whitespace = fc.oneof(
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.array(fc.constantFrom(' ', '\t', '\n', '\r'), { minLength: 1, maxLength: 3 }).map((pieces) => pieces.join('')) },
);

const SHORT_ESCAPES: Readonly<Record<string, string>> = {
  '"': '\\"',
  '\\': '\\\\',
  '/': '\\/',
  '\b': '\\b',
  '\f': '\\f',
  '\n': '\\n',
  '\r': '\\r',
  '\t': '\\t',
};

/** How one character is written: raw where allowed, a short escape where there is one, or `\u` in lower or upper case. */
type Spelling = 0 | 1 | 2 | 3;
const spelling = fc.constantFrom<Spelling>(0, 1, 2, 3);

function unicodeEscape(char: string, upper: boolean): string {
  let out = '';
  for (let i = 0; i < char.length; i++) {
    const hex = char.charCodeAt(i).toString(16).padStart(4, '0');
    out += `\\u${upper ? hex.toUpperCase() : hex}`;
  }
  return out;
}

function isLoneSurrogate(char: string): boolean {
  const code = char.charCodeAt(0);
  return char.length === 1 && code >= 0xd800 && code <= 0xdfff;
}

/** One character (a code point, or a lone surrogate) as it may appear inside a JSON string. */
export function spell(char: string, how: Spelling): string {
  const mustEscape = char === '"' || char === '\\' || char.charCodeAt(0) < 0x20 || isLoneSurrogate(char);
  const short = SHORT_ESCAPES[char];
  if (how === 0 && !mustEscape) return char;
  if (how <= 1 && short !== undefined) return short;
  if (how === 1 && !mustEscape) return char;
  return unicodeEscape(char, how === 3);
}

/** A character worth trying: the letters of `model`, the escapable ones, any code point, a lone surrogate. */
const character = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...'model"\\/\b\f\n\r\t', '\u2028', '\u00e9', '\u{1f600}') },
  { weight: 4, arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }) },
  { weight: 1, arbitrary: fc.constantFrom('\ud800', '\udbff', '\udc00', '\udfff') },
);

/** A JSON string: its text as written and the value a parser reads. */
export interface JsonString {
  readonly text: string;
  readonly value: string;
}

export function jsonStringOf(chars: readonly string[], spellings: readonly Spelling[]): JsonString {
  const text = '"' + chars.map((char, i) => spell(char, spellings[i % Math.max(1, spellings.length)] ?? 0)).join('') + '"';
  return { text, value: chars.join('') };
}

/** Every character raw where the grammar allows (as most clients write), or each spelled its own way. */
const spellings = fc.oneof(fc.constant<Spelling[]>([0]), fc.array(spelling, { minLength: 1, maxLength: 12 }));

export const jsonString: fc.Arbitrary<JsonString> = fc
  .tuple(fc.array(character, { maxLength: 12 }), spellings)
  .map(([chars, spellings]) => jsonStringOf(chars, spellings));

/** `model` spelled any way: raw, or with escapes for some of its letters. */
export const modelKey: fc.Arbitrary<JsonString> = fc.oneof(
  fc.constant(jsonStringOf([...'model'], [0])),
  fc.array(fc.constantFrom<Spelling>(0, 2, 3), { minLength: 5, maxLength: 5 }).map((spellings) => jsonStringOf([...'model'], spellings)),
);

/** Keys that look like `model` but are not. */
const nearMiss = fc
  .constantFrom('Model', 'MODEL', 'models', 'mode', ' model', 'model ', 'mod\u0000el', 'model\u0000')
  .chain((name) => fc.array(spelling, { minLength: 1, maxLength: 8 }).map((spellings) => jsonStringOf([...name], spellings)));

const key = fc.oneof({ weight: 3, arbitrary: jsonString }, { weight: 1, arbitrary: nearMiss }, { weight: 1, arbitrary: modelKey });

/** Numbers in every spelling the grammar has: sign, zero, fraction, exponent with e/E and an optional sign. */
export const jsonNumber: fc.Arbitrary<string> = fc
  .tuple(
    fc.constantFrom('', '-'),
    fc.oneof(fc.constant('0'), fc.stringMatching(/^[1-9][0-9]{0,25}$/)),
    fc.option(fc.stringMatching(/^[0-9]{1,20}$/), { nil: null }),
    fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.stringMatching(/^[0-9]{1,4}$/)), { nil: null }),
  )
  .map(([sign, int, fraction, exponent]) => sign + int + (fraction === null ? '' : `.${fraction}`) + (exponent === null ? '' : exponent.join('')));

const scalar = fc.oneof(
  jsonString.map((s) => s.text),
  jsonNumber,
  fc.constantFrom('true', 'false', 'null'),
);

/** Arrays or objects nested up to thousands deep around a scalar, some under nested `model` keys. */
const deep = fc
  .tuple(fc.integer({ min: 1, max: 3000 }), fc.constantFrom('[', '{"model":', '{"a":'), scalar)
  .map(([depth, open, inner]) => open.repeat(depth) + inner + (open === '[' ? ']' : '}').repeat(depth));

/** Any JSON value as text, whitespace inside included. */
export const jsonValue: fc.Arbitrary<string> = fc.letrec<{ value: string; array: string; object: string }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: scalar },
    { weight: 1, arbitrary: deep },
    { weight: 2, arbitrary: tie('array') },
    { weight: 2, arbitrary: tie('object') },
  ),
  array: fc
    .tuple(whitespace, fc.array(fc.tuple(whitespace, tie('value'), whitespace), { maxLength: 4 }))
    .map(([empty, items]) => (items.length === 0 ? `[${empty}]` : `[${items.map((item) => item.join('')).join(',')}]`)),
  object: fc
    .tuple(whitespace, fc.array(fc.tuple(whitespace, key, whitespace, whitespace, tie('value'), whitespace), { maxLength: 4 }))
    .map(([empty, members]) => (members.length === 0 ? `{${empty}}` : `{${members.map(([a, k, b, c, v, d]) => `${a}${k.text}${b}:${c}${v}${d}`).join(',')}}`)),
})).value;

/** A member of the top-level object: its key, the whitespace around it, its value's text. */
export interface Member {
  readonly key: JsonString;
  readonly value: string;
  /** Whitespace: before the key, between key and colon, after the colon, after the value. */
  readonly space: readonly [string, string, string, string];
}

/** A top-level object as pieces, so a test can build the text with one value written anew. */
export interface TopLevelObject {
  readonly lead: string;
  readonly members: readonly Member[];
  /** Whitespace inside `{}` when there are no members. */
  readonly empty: string;
  readonly trail: string;
}

/** The object's text, with the value of member `replace.index` written as `replace.text`. */
export function render(object: TopLevelObject, replace?: { index: number; text: string }): string {
  const body =
    object.members.length === 0
      ? object.empty
      : object.members
          .map((m, i) => `${m.space[0]}${m.key.text}${m.space[1]}:${m.space[2]}${replace?.index === i ? replace.text : m.value}${m.space[3]}`)
          .join(',');
  return `${object.lead}{${body}}${object.trail}`;
}

/** The indexes of the members whose key reads `model`. */
export function modelMembers(object: TopLevelObject): number[] {
  return object.members.flatMap((m, i) => (m.key.value === 'model' ? [i] : []));
}

const modelValue = fc.oneof(
  { weight: 6, arbitrary: jsonString.map((s) => s.text) },
  { weight: 2, arbitrary: fc.constantFrom('"gpt-4"', '"gpt-\\u0034"', '"split"', '""') },
  { weight: 1, arbitrary: jsonValue },
);

/** How the members of an object are written. */
interface Style {
  readonly key: fc.Arbitrary<JsonString>;
  readonly value: fc.Arbitrary<string>;
  readonly modelKey: fc.Arbitrary<JsonString>;
  readonly modelValue: fc.Arbitrary<string>;
  readonly space: fc.Arbitrary<string>;
}

/** Every spelling the grammar allows: escapes anywhere, whitespace everywhere, thousands deep. */
const everyWay: Style = { key, value: jsonValue, modelKey, modelValue, space: whitespace };

/** As clients write bodies: printable text, no escapes but the needed ones, compact or indented (the gateway's quick path). */
const plainKey = fc.string({ maxLength: 12 }).map((value) => ({ text: JSON.stringify(value), value }));
const asClientsDo: Style = {
  key: plainKey,
  value: fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
  modelKey: fc.constant({ text: '"model"', value: 'model' }),
  modelValue: fc.oneof(
    fc.constantFrom('"gpt-4"', '"split"', '""'),
    fc.string({ maxLength: 12 }).map((value) => JSON.stringify(value)),
  ),
  space: fc.constantFrom('', ' ', '\n  '),
};

function member(style: Style, model: boolean): fc.Arbitrary<Member> {
  return fc
    .tuple(model ? style.modelKey : style.key, model ? style.modelValue : style.value, style.space, style.space, style.space, style.space)
    .map(([k, value, a, b, c, d]) => ({ key: k, value, space: [a, b, c, d] as const }));
}

/** An object in `style` with `models` (an arbitrary count) `model` members among the others, anywhere in the order. */
function objectOf(style: Style, models: fc.Arbitrary<number>): fc.Arbitrary<TopLevelObject> {
  return fc
    .tuple(
      style.space,
      fc.array(member(style, false), { maxLength: 5 }),
      models.chain((count) => fc.array(fc.tuple(member(style, true), fc.nat()), { minLength: count, maxLength: count })),
      style.space,
      style.space,
    )
    .map(([lead, others, models, empty, trail]) => {
      const members = others.filter((m) => m.key.value !== 'model');
      for (const [m, at] of models) members.splice(at % (members.length + 1), 0, m);
      return { lead, members, empty, trail };
    });
}

const modelCount = fc.oneof(
  { weight: 1, arbitrary: fc.constant(0) },
  { weight: 3, arbitrary: fc.constant(1) },
  { weight: 2, arbitrary: fc.integer({ min: 2, max: 3 }) },
);

/** Top-level objects, spelled every way or as clients do, with `model` as a key zero, one or more times. */
export const topLevelObject: fc.Arbitrary<TopLevelObject> = fc.oneof(objectOf(everyWay, modelCount), objectOf(asClientsDo, modelCount));

/** Top-level objects with exactly one `model` key (spelled any way), whose value is a non-empty string. */
export const requestObject: fc.Arbitrary<TopLevelObject> = fc
  .oneof(objectOf(everyWay, fc.constant(1)), objectOf(asClientsDo, fc.constant(1)))
  .filter((object) => {
    const model: unknown = (JSON.parse(render(object)) as { model: unknown }).model;
    return typeof model === 'string' && model !== '';
  });

/** What may break a valid text: a character the grammar has no place for there, or a cut. */
export const damage = fc.tuple(
  fc.nat(),
  fc.oneof(
    fc.constant(''),
    fc.constantFrom(',', ':', '"', '\\', '{', '}', '[', ']', 'x', '0', '-', '.', 'e', '\u00a0', '\v', '\f', '\u2028', '\ufeff', '\u0000', '\u0085'),
  ),
  fc.constantFrom('insert', 'replace', 'cut'),
);

/** `text` with `damage` applied: one character inserted, one replaced, or the text cut short. */
export function damaged(text: string, [at, char, how]: [number, string, 'insert' | 'replace' | 'cut']): string {
  const i = at % (text.length + 1);
  if (how === 'cut') return text.slice(0, i);
  if (how === 'insert') return text.slice(0, i) + char + text.slice(i);
  return text.slice(0, i) + char + text.slice(i + 1);
}
