import fc from 'fast-check';
import { durationMs, MAX_WAIT_MS, requestedWaitMs } from '../../src/pipeline/retry-after.js';

/** How long an upstream's 429 or 503 asks the gateway to wait, as a table. */

const NOW = Date.parse('2026-12-01T12:00:00Z');

const table: [name: string, headers: Record<string, string | string[]>, wait: number | null][] = [
  ['nothing said', {}, null],
  ['Retry-After in seconds', { 'retry-after': '7' }, 7000],
  ['Retry-After with a fraction', { 'retry-after': '1.5' }, 1500],
  ['Retry-After as an HTTP date', { 'retry-after': 'Tue, 01 Dec 2026 12:00:30 GMT' }, 30_000],
  ['Retry-After as a date in the past', { 'retry-after': 'Tue, 01 Dec 2026 11:00:00 GMT' }, 0],
  ['Retry-After that is neither', { 'retry-after': 'soon' }, null],
  ['retry-after-ms (OpenAI) wins over Retry-After', { 'retry-after-ms': '250', 'retry-after': '7' }, 250],
  ['a repeated header: the first', { 'retry-after': ['2', '9'] }, 2000],
  ['far too long: capped', { 'retry-after': '99999999' }, MAX_WAIT_MS],
  ['negative is not a number here', { 'retry-after': '-5' }, null],
  ['x-ratelimit-reset-requests when no request is left', { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '6m0s' }, 360_000],
  [
    'x-ratelimit resets: only the limits that are used up',
    {
      'x-ratelimit-remaining-requests': '10',
      'x-ratelimit-reset-requests': '1s',
      'x-ratelimit-remaining-tokens': '0',
      'x-ratelimit-reset-tokens': '20ms',
    },
    20,
  ],
  ['x-ratelimit resets without remaining counts: the longer', { 'x-ratelimit-reset-requests': '1m30.5s', 'x-ratelimit-reset-tokens': '2s' }, 90_500],
  ['Retry-After wins over x-ratelimit', { 'retry-after': '3', 'x-ratelimit-reset-tokens': '1h' }, 3000],
];

test.each(table)('%s', (_name, headers, wait) => {
  expect(requestedWaitMs(headers, NOW)).toBe(wait);
});

test.each([
  ['20ms', 20],
  ['6m0s', 360_000],
  ['1h2m3.5s', 3_723_500],
  ['0s', 0],
  ['2', 2000],
  ['500us', 0.5],
  ['1.5µs', 0.0015],
  ['7ns', 0.000007],
  ['', null],
  ['s', null],
  ['1x', null],
  ['1m 2s', null],
  ['1.2.3s', null],
  ['9'.repeat(65), null],
  // Spelled like properties every object inherits (found by the property below as NaN).
  ['0valueOf', null],
  ['1toString', null],
  ['2__proto__', null],
  ['3constructor', null],
])('duration %j is %p ms', (text, ms) => {
  if (ms === null) expect(durationMs(text)).toBeNull();
  else expect(durationMs(text)).toBeCloseTo(ms, 9);
});

test('whatever an upstream sends, the wait is null or within 0 and the cap, and reading it takes no time to speak of', () => {
  fc.assert(
    fc.property(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), (retryAfter, ms, reset) => {
      const started = performance.now();
      const wait = requestedWaitMs({ 'retry-after': retryAfter, 'retry-after-ms': ms, 'x-ratelimit-reset-tokens': reset }, NOW);
      expect(performance.now() - started).toBeLessThan(50);
      if (wait !== null) {
        expect(wait).toBeGreaterThanOrEqual(0);
        expect(wait).toBeLessThanOrEqual(MAX_WAIT_MS);
      }
    }),
  );
});
