/** Options a backoff cannot work with (a programming error, thrown at construction). */
export class BackoffOptionsError extends RangeError {
  readonly code = 'BACKOFF_OPTIONS';
}

export interface BackoffOptions {
  /** The ceiling of the first delay. */
  readonly initialMs: number;
  /** The ceiling stops doubling here. */
  readonly maxMs: number;
  /** A number in [0, 1); tests pass their own. */
  readonly random?: () => number;
}

/**
 * Exponential backoff with equal jitter: the ceiling doubles from `initialMs`
 * up to `maxMs`, and each delay is drawn uniformly from [ceiling / 2, ceiling).
 * Jitter spreads out the retries of many processes that failed together (every
 * replica's watches when the API server restarts, every worker of a crashing
 * release); keeping half the ceiling as a floor, rather than full jitter's
 * zero, keeps a failing peer from being retried at once. Why not a package:
 * docs/performance.md, "Hand-written where a library exists".
 */
export class ExponentialBackoff {
  readonly #initialMs: number;
  readonly #maxMs: number;
  readonly #random: () => number;
  #ceilingMs: number;

  constructor(options: BackoffOptions) {
    if (!(options.initialMs > 0) || !(options.maxMs >= options.initialMs)) {
      throw new BackoffOptionsError(`backoff needs 0 < initialMs <= maxMs, got ${options.initialMs} and ${options.maxMs}`);
    }
    this.#initialMs = options.initialMs;
    this.#maxMs = options.maxMs;
    this.#random = options.random ?? Math.random;
    this.#ceilingMs = options.initialMs;
  }

  /** The delay before the next attempt, in whole milliseconds; each call doubles the ceiling for the one after. */
  next(): number {
    const ceiling = this.#ceilingMs;
    this.#ceilingMs = Math.min(ceiling * 2, this.#maxMs);
    return Math.floor(ceiling / 2 + this.#random() * (ceiling / 2));
  }

  /** After a success: the next delay is drawn below `initialMs` again. */
  reset(): void {
    this.#ceilingMs = this.#initialMs;
  }
}
