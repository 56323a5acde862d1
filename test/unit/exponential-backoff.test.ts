/** The one backoff of the Kubernetes watches and the cluster's worker restarts: doubling ceiling, equal jitter, reset. */
import { BackoffOptionsError, ExponentialBackoff } from '../../src/backoff/exponential-backoff.js';

const draws = (backoff: ExponentialBackoff, count: number): number[] => Array.from({ length: count }, () => backoff.next());

test('the ceiling doubles from initialMs and stops at maxMs; the lowest draw is half the ceiling', () => {
  expect(draws(new ExponentialBackoff({ initialMs: 200, maxMs: 10_000, random: () => 0 }), 9)).toEqual([100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
});

test('the highest draw stays below the ceiling', () => {
  expect(draws(new ExponentialBackoff({ initialMs: 1000, maxMs: 30_000, random: () => 0.999_999 }), 7)).toEqual([
    999, 1999, 3999, 7999, 15_999, 29_999, 29_999,
  ]);
});

test('with Math.random every delay falls in [ceiling / 2, ceiling), spread over that range', () => {
  const seen: number[][] = [[], [], [], []];
  for (let run = 0; run < 500; run++) {
    const backoff = new ExponentialBackoff({ initialMs: 100, maxMs: 800 });
    for (const [attempt, delay] of draws(backoff, 4).entries()) seen[attempt]!.push(delay);
  }
  for (const [attempt, delays] of seen.entries()) {
    const ceiling = 100 * 2 ** attempt;
    expect(Math.min(...delays)).toBeGreaterThanOrEqual(ceiling / 2);
    expect(Math.max(...delays)).toBeLessThan(ceiling);
    // jitter: draws from both halves of the range, not one fixed value
    expect(delays.some((d) => d < ceiling * 0.6)).toBe(true);
    expect(delays.some((d) => d > ceiling * 0.9)).toBe(true);
  }
});

test('reset() starts over from initialMs', () => {
  const backoff = new ExponentialBackoff({ initialMs: 50, maxMs: 1000, random: () => 0 });
  expect(draws(backoff, 3)).toEqual([25, 50, 100]);
  backoff.reset();
  expect(draws(backoff, 2)).toEqual([25, 50]);
});

test.each([
  [0, 100],
  [-1, 100],
  [200, 100],
  [Number.NaN, 100],
])('initialMs %p with maxMs %p is refused with a code', (initialMs, maxMs) => {
  expect(() => new ExponentialBackoff({ initialMs, maxMs })).toThrow(BackoffOptionsError);
  expect(() => new ExponentialBackoff({ initialMs, maxMs })).toThrow(expect.objectContaining({ code: 'BACKOFF_OPTIONS' }));
});
