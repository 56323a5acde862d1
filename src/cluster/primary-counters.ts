import type { Admission, AdmissionResult, CounterStore, RateOp, SlotOp } from '../policy/counter-store.js';
import { isClusterMessage, type LimitsAdmit, type LimitsSettle } from './messages.js';

/** How long a worker waits for the primary's decision; then the limiter fails open or closed as configured. */
const ADMIT_TIMEOUT_MS = 1_000;

interface Pending {
  resolve(result: AdmissionResult): void;
  reject(error: Error): void;
  timer: NodeJS.Timeout;
}

/** The cluster primary did not answer a limits question in time. */
export class PrimaryTimeoutError extends Error {
  readonly code = 'LIMITS_PRIMARY_TIMEOUT';
  constructor() {
    super('the cluster primary did not answer the limits question in time');
    this.name = 'PrimaryTimeoutError';
  }
}

/**
 * A cluster worker's limit counters: the primary's (LimitsHost), so that the
 * workers of one replica share one budget the way one process does. One
 * message each way per request; what requests owe afterwards goes in one
 * message per turn of the event loop.
 */
export class PrimaryCounters implements CounterStore {
  readonly #send: (message: LimitsAdmit | LimitsSettle) => void;
  readonly #pending = new Map<number, Pending>();
  #nextId = 1;
  #charges: RateOp[] = [];
  #releases: { slot: SlotOp; handle: string }[] = [];
  #flushing = false;

  /** `send`: to the primary (process.send); the worker hands the primary's messages to onMessage. */
  constructor(send: (message: LimitsAdmit | LimitsSettle) => void) {
    this.#send = send;
  }

  admit(admission: Admission): Promise<AdmissionResult> {
    return new Promise((resolve, reject) => {
      const id = this.#nextId++;
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new PrimaryTimeoutError());
      }, ADMIT_TIMEOUT_MS);
      this.#pending.set(id, { resolve, reject, timer });
      this.#send({ type: 'api-proxy:limits-admit', id, admission });
    });
  }

  /** The primary's messages: decisions for this worker's admissions. */
  onMessage(message: unknown): void {
    if (!isClusterMessage(message) || message.type !== 'api-proxy:limits-admitted') return;
    const waiting = this.#pending.get(message.id);
    if (waiting === undefined) return;
    this.#pending.delete(message.id);
    clearTimeout(waiting.timer);
    waiting.resolve(message.result);
  }

  charge(charges: readonly RateOp[]): void {
    this.#charges.push(...charges);
    this.#scheduleFlush();
  }

  release(slot: SlotOp, handle: string): void {
    this.#releases.push({ slot, handle });
    this.#scheduleFlush();
  }

  close(): Promise<void> {
    this.#flush();
    return Promise.resolve();
  }

  #scheduleFlush(): void {
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushing = false;
    if (this.#charges.length === 0 && this.#releases.length === 0) return;
    const message: LimitsSettle = { type: 'api-proxy:limits-settle', charges: this.#charges, releases: this.#releases };
    this.#charges = [];
    this.#releases = [];
    this.#send(message);
  }
}
