import type { Admission, AdmissionResult, CounterStore, RateOp, SlotOp } from './counter-store.js';
import { charge, judge, type RateOutcome } from './gcra.js';

/** How often counters whose window has passed are dropped. */
const SWEEP_INTERVAL_MS = 30_000;

/**
 * Counters in this process's memory: one replica needs nothing else. A rate
 * counter is one number (GCRA's tat), dropped once its window has passed;
 * a slot counter is dropped when its last slot is released. Only requests
 * that got past authentication reach a limiter, so counters exist only for
 * known keys and consumers: a flood of unknown keys adds none.
 */
export class MemoryCounters implements CounterStore {
  readonly #tats = new Map<string, number>();
  readonly #slots = new Map<string, number>();
  readonly #now: () => number;
  readonly #sweeper: NodeJS.Timeout;

  constructor(now: () => number = Date.now) {
    this.#now = now;
    this.#sweeper = setInterval(() => this.sweep(), SWEEP_INTERVAL_MS);
    this.#sweeper.unref();
  }

  /** Counters held now (rates and slots). */
  get size(): number {
    return this.#tats.size + this.#slots.size;
  }

  admit(admission: Admission): AdmissionResult {
    const now = this.#now();
    const rates = admission.rates;
    const outcomes: RateOutcome[] = [];
    const next: number[] = [];
    let allowed = true;
    for (const op of rates) {
      const judged = judge(this.#tats.get(op.id) ?? 0, now, op.spec, op.cost);
      outcomes.push(judged.outcome);
      next.push(judged.tat);
      if (!judged.outcome.allowed) allowed = false;
    }
    const slot = admission.slot;
    let slotFree: boolean | null = null;
    if (slot !== null) {
      slotFree = (this.#slots.get(slot.id) ?? 0) < slot.limit;
      if (!slotFree) allowed = false;
    }
    if (!allowed) return { allowed, rates: outcomes, slotFree, slotHandle: null };
    for (let i = 0; i < rates.length; i++) if (rates[i]!.cost > 0) this.#tats.set(rates[i]!.id, next[i]!);
    if (slot !== null) this.#slots.set(slot.id, (this.#slots.get(slot.id) ?? 0) + 1);
    return { allowed, rates: outcomes, slotFree, slotHandle: slot === null ? null : '' };
  }

  charge(charges: readonly RateOp[]): void {
    const now = this.#now();
    for (const op of charges) if (op.cost > 0) this.#tats.set(op.id, charge(this.#tats.get(op.id) ?? 0, now, op.spec, op.cost));
  }

  release(slot: SlotOp): void {
    const held = this.#slots.get(slot.id) ?? 0;
    if (held <= 1) this.#slots.delete(slot.id);
    else this.#slots.set(slot.id, held - 1);
  }

  /** Drops every rate counter whose bucket is full again (the same as having none). */
  sweep(): void {
    const now = this.#now();
    for (const [id, tat] of this.#tats) if (tat <= now) this.#tats.delete(id);
  }

  close(): Promise<void> {
    clearInterval(this.#sweeper);
    return Promise.resolve();
  }
}
