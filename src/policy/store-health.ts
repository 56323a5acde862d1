/**
 * Whether the counter store answers, as a state with transitions: the
 * limiter and the store report every success and failure, and only a change
 * reaches `onChange` (one log line per transition, never one per request).
 */
export class StoreHealth {
  readonly #onChange: (up: boolean, error: unknown) => void;
  #up = true;

  constructor(onChange: (up: boolean, error: unknown) => void) {
    this.#onChange = onChange;
  }

  get up(): boolean {
    return this.#up;
  }

  worked(): void {
    if (this.#up) return;
    this.#up = true;
    this.#onChange(true, null);
  }

  failed(error: unknown): void {
    if (!this.#up) return;
    this.#up = false;
    this.#onChange(false, error);
  }
}
