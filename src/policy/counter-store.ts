import type { RateOutcome, RateSpec } from './gcra.js';

/** One limit of one request: the counter it lives in, its rate, and what the request takes from it. */
export interface RateOp {
  /** The counter: which limit and whose (`rpm:<consumer>:<key id>`, `tpd:<consumer>`...). */
  readonly id: string;
  readonly spec: RateSpec;
  /** Units taken now (1 for a request); 0 asks only whether one is left (a token budget, charged after). */
  readonly cost: number;
}

/** A place among `limit` concurrent ones (streams per key), held until released. */
export interface SlotOp {
  readonly id: string;
  readonly limit: number;
}

/** Everything one request is judged on, at once: all of it is taken, or none. */
export interface Admission {
  readonly rates: readonly RateOp[];
  readonly slot: SlotOp | null;
}

export interface AdmissionResult {
  /** Every rate allows it and the slot (if any) was free; only then was anything taken. */
  readonly allowed: boolean;
  /** One outcome per rate, in the admission's order. */
  readonly rates: readonly RateOutcome[];
  /** Whether the slot was free; null without a slot. */
  readonly slotFree: boolean | null;
  /** What releases the slot taken (the store's own handle); null when none was taken. */
  readonly slotHandle: string | null;
}

/**
 * Where the counters live: in this process, in the cluster's primary, or in
 * Redis. `admit` is the one call on a request's path; `charge` and `release`
 * come after it and may be batched by the store as it likes.
 */
export interface CounterStore {
  /** Judges and takes atomically. May reject (Redis away, a timeout): the limiter decides what that means. */
  admit(admission: Admission): AdmissionResult | Promise<AdmissionResult>;
  /** Adds what requests used after the fact (tokens); never refused. */
  charge(charges: readonly RateOp[]): void;
  /** Gives back a slot `admit` took. */
  release(slot: SlotOp, handle: string): void;
  /** Stops timers and connections, sending what is still batched where it can. */
  close(): Promise<void>;
}
