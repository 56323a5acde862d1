/**
 * What refusing a repeated top-level `model` costs a request body: in this
 * process, per body, parseJsonRequest (which includes the check) against
 * the quick check alone (mayRepeatModel, all a body that says "model" once
 * pays) and the top-level scan a body that may repeat it pays on top. Runs
 * interleave; medians are quoted.
 */
import { mayRepeatModel, parseJsonRequest, replaceModel } from '../src/pipeline/json-request.js';
import { median, round } from './stats.js';

const WORDS = 'the gateway routes each request by its model and every other field passes through as the client wrote it'.split(' ');

/** English-like text of about `length` characters, with line breaks (escaped as \n in JSON, as chat content is). */
function prose(length: number, seed: number): string {
  let text = '';
  for (let i = seed; text.length < length; i++) text += WORDS[(i * 7) % WORDS.length] + (i % 13 === 0 ? '.\n' : ' ');
  return text;
}

function chat(messages: number, each: number, modelLast = false): string {
  const body: Record<string, unknown> = modelLast ? {} : { model: 'gpt-4o' };
  body['messages'] = Array.from({ length: messages }, (_, i) => ({ role: i % 2 === 0 ? 'user' : 'assistant', content: prose(each, i) }));
  body['temperature'] = 0.7;
  if (modelLast) body['model'] = 'gpt-4o';
  return JSON.stringify(body);
}

export const BODIES: readonly (readonly [string, string])[] = [
  [
    'bench body (184 B)',
    JSON.stringify({
      model: 'gpt-4',
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'Say hello in one short sentence.' },
      ],
      temperature: 0.2,
      max_tokens: 64,
    }),
  ],
  ['chat, 12 messages (~6 KiB)', chat(12, 500)],
  ['chat, model last as Python SDKs send it (~6 KiB)', chat(12, 500, true)],
  ['chat, 100 messages (~100 KiB)', chat(100, 1000)],
  ['embeddings, 1,000 token ids', JSON.stringify({ model: 'text-embedding-3-small', input: Array.from({ length: 1000 }, (_, i) => (i * 7919) % 100_000) })],
  ['1 MiB of content', JSON.stringify({ model: 'gpt-4', messages: [{ role: 'user', content: 'x'.repeat(1024 * 1024 - 60) }] })],
  ['chat ~6 KiB with \\u escapes (scanned)', chat(12, 500).replaceAll('model', 'mod\\u0065l').replace('"mod\\u0065l"', '"model"')],
];

export interface DuplicateModelRow {
  readonly body: string;
  readonly bytes: number;
  /** parseJsonRequest per body, ns. */
  readonly parseNs: number;
  /** mayRepeatModel alone, ns. */
  readonly checkNs: number;
  /** The top-level scan, ns (paid only when the quick check says the key may repeat). */
  readonly scanNs: number;
  readonly scanned: boolean;
}

function nsPer(fn: () => void, iterations: number): number {
  const started = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn();
  return Number(process.hrtime.bigint() - started) / iterations;
}

export function duplicateModelCost(quick: boolean): DuplicateModelRow[] {
  return BODIES.map(([name, text]) => {
    const bytes = Buffer.from(text);
    const iterations = Math.max(20, Math.round((quick ? 2e7 : 1e8) / bytes.length / 10));
    const parse: number[] = [];
    const check: number[] = [];
    const scan: number[] = [];
    // replaceModel's span search is the same top-level scan the check falls back to.
    for (let r = 0; r < (quick ? 5 : 11); r++) {
      parse.push(nsPer(() => parseJsonRequest(bytes), iterations));
      check.push(nsPer(() => mayRepeatModel(text), iterations));
      scan.push(nsPer(() => replaceModel(text, 'm'), iterations));
    }
    return { body: name, bytes: bytes.length, parseNs: median(parse), checkNs: median(check), scanNs: median(scan), scanned: mayRepeatModel(text) };
  });
}

export function summarizeDuplicateModel(rows: readonly DuplicateModelRow[]): Record<string, unknown>[] {
  return rows.map((row) => ({
    body: row.body,
    bytes: row.bytes,
    parse_ns: Math.round(row.parseNs),
    check_ns: Math.round(row.checkNs),
    check_share_of_parse: round(row.checkNs / row.parseNs, 3),
    scanned: row.scanned,
    scan_ns: Math.round(row.scanNs),
  }));
}
