import { ExponentialBackoff } from '../backoff/exponential-backoff.js';

/** A worker that lived at least this long before dying counts as having worked: its slot starts over. */
export const STABLE_AFTER_MS = 10_000;

/**
 * How long a slot waits before forking a replacement for a worker that died:
 * ceiling 1 s, doubling while its workers keep dying young, up to 30 s;
 * jittered, so workers that crash together (a bad request pattern, a full
 * disk) do not all come back in the same instant.
 */
export class RestartDelay {
  readonly #backoff: ExponentialBackoff;

  constructor(random?: () => number) {
    this.#backoff = new ExponentialBackoff({ initialMs: 1_000, maxMs: 30_000, random });
  }

  /** The wait before the next fork, given how long the worker that just died had run. */
  after(livedMs: number): number {
    if (livedMs >= STABLE_AFTER_MS) this.#backoff.reset();
    return this.#backoff.next();
  }
}
