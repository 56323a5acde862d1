/** What a stop request says: why (for the log), and whether to exit at once rather than drain. */
export type StopFunction = (reason: Record<string, unknown>, now: boolean) => void;

/**
 * Stop requests (signals, the cluster primary's message) taken from a process's start. The server answers
 * (a readiness probe passes, the primary sees a worker listen) before the gateway's start has returned, so
 * a request can come before there is anything to stop: it is kept and carried out once there is, and a
 * second one that says `now` meanwhile exits at once.
 */
export class StopRequests {
  #stop: StopFunction | null = null;
  #early: { reason: Record<string, unknown>; now: boolean } | null = null;
  readonly #exitNow: () => void;

  constructor(exitNow: () => void = () => process.exit(1)) {
    this.#exitNow = exitNow;
  }

  readonly request: StopFunction = (reason, now) => {
    if (this.#stop !== null) this.#stop(reason, now);
    else if (this.#early !== null && now) this.#exitNow();
    else this.#early = { reason, now };
  };

  /** The gateway is up: requests go to `stop` from now on, starting with one that came before. */
  started(stop: StopFunction): void {
    this.#stop = stop;
    const early = this.#early;
    this.#early = null;
    if (early !== null) stop(early.reason, early.now);
  }
}
