/**
 * The bench's and the soak's command lines, read with node:util parseArgs:
 * the same flags as before, the same messages for an unknown flag, and the
 * long-stream profile's shape from its flags.
 */
import { readFlags } from '../../bench/args.js';
import { parseBenchArgs } from '../../bench/options.js';
import { parseSoakArgs } from '../../bench/soak/options.js';

const messages = { unknown: (arg: string) => `unknown ${arg}` };

describe('readFlags', () => {
  const spec = { quick: 'boolean', rounds: 'string' } as const;

  test('string flags as --name=value or --name value; boolean flags as given', () => {
    expect(readFlags(['--rounds=3', '--quick'], spec, messages)).toEqual({ rounds: '3', quick: true });
    expect(readFlags(['--rounds', '4'], spec, messages)).toEqual({ rounds: '4' });
    expect(readFlags(['--quick=yes'], spec, messages)).toEqual({ quick: true });
    expect(readFlags([], spec, messages)).toEqual({});
  });

  test.each([['--fast'], ['--fast=1'], ['-q'], ['stray'], ['--']])('%s is unknown, named as written', (arg) => {
    expect(() => readFlags(['--quick', arg], spec, messages)).toThrow(new Error(`unknown ${arg}`));
  });

  test('a string flag without a value: the missing message, or the empty string when there is none', () => {
    expect(() => readFlags(['--rounds'], spec, { ...messages, missing: (arg) => `${arg} wants a value` })).toThrow(new Error('--rounds wants a value'));
    expect(readFlags(['--rounds'], spec, messages)).toEqual({ rounds: '' });
  });
});

describe('bench flags', () => {
  test('defaults, and the long-stream profile from its flags', () => {
    const options = parseBenchArgs([], '/checkout');
    expect(options).toMatchObject({
      quick: false,
      rounds: 3,
      seconds: 5,
      only: null,
      profile: false,
      out: '/checkout/bench-results/latest.json',
      workers: 2,
      peerFiles: [],
    });
    expect(options.long).toEqual({ streams: 2000, tokens: 200, intervalMs: 50, rampMs: 5000, perConnection: 2 });
    expect(parseBenchArgs(['--long-streams=3000', '--long-seconds=20', '--long-rate=40'], '/c').long).toEqual({
      streams: 3000,
      tokens: 800,
      intervalMs: 25,
      rampMs: 5000,
      perConnection: 2,
    });
    expect(parseBenchArgs(['--quick'], '/c')).toMatchObject({ quick: true, rounds: 1, seconds: 2, long: { streams: 200, tokens: 60, rampMs: 1000 } });
  });

  test('sections are checked', () => {
    expect(parseBenchArgs(['--only=longstreams,config'], '/c').only).toEqual(new Set(['longstreams', 'config']));
    expect(() => parseBenchArgs(['--only=longstream'], '/c')).toThrow("unknown section 'longstream' in --only");
  });

  test('the message for an unknown flag is the one it always was', () => {
    expect(() => parseBenchArgs(['--quick', '--round=2'], '/c')).toThrow(new Error("unknown argument '--round=2' (see bench/main.ts)"));
  });

  test.each([['--long-streams=0'], ['--long-seconds=1.5'], ['--long-rate=many'], ['--workers=1']])('%s is refused', (arg) => {
    expect(() => parseBenchArgs([arg], '/c')).toThrow(/must be a whole number/);
  });
});

describe('soak flags', () => {
  test('values after their flags, and the warm sample half way by default', () => {
    expect(parseSoakArgs(['--minutes', '4', '--concurrency', '8', '--json', 'out.json'])).toEqual({
      minutes: 4,
      warmMinutes: 2,
      concurrency: 8,
      json: 'out.json',
    });
    expect(parseSoakArgs(['--minutes', '4', '--warm-minutes', '1'])).toMatchObject({ minutes: 4, warmMinutes: 1 });
    expect(parseSoakArgs([])).toEqual({ minutes: 10, warmMinutes: 5, concurrency: 16, json: null });
  });

  test('the messages for an unknown flag and a missing value are the ones they always were', () => {
    expect(() => parseSoakArgs(['--minute', '4'])).toThrow(
      new Error('unknown argument --minute (use --minutes N, --warm-minutes N, --concurrency C, --json path)'),
    );
    expect(() => parseSoakArgs(['--json'])).toThrow(new Error('--json needs a value'));
  });

  test('runs too short to judge are refused', () => {
    expect(() => parseSoakArgs(['--minutes', '1', '--warm-minutes', '0.9'])).toThrow(/must exceed --warm-minutes/);
    expect(() => parseSoakArgs(['--concurrency', '0'])).toThrow('--concurrency must be 1..512');
  });
});
