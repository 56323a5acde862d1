import { randomBytes } from 'node:crypto';
import type { RedisSettings } from '../config/model.js';
import type { Admission, AdmissionResult, CounterStore, RateOp, SlotOp } from './counter-store.js';
import type { RateOutcome } from './gcra.js';
import type { connectRedis } from './redis-client.js';
import type { Settlement } from './redis-scripts.js';
import type { StoreHealth } from './store-health.js';

/** How long a stream's slot is held without renewal: the longest a dead replica's streams keep their slots. */
export const SLOT_LEASE_MS = 60_000;
/** Charges and releases wait this long to go out together, one call for everything of this process. */
const FLUSH_DELAY_MS = 100;

/** Until the client library has loaded (the first milliseconds of a store): Redis is not there yet. */
export class RedisLoadingError extends Error {
  readonly code = 'REDIS_LOADING';
  constructor() {
    super('the Redis client is still loading');
    this.name = 'RedisLoadingError';
  }
}

/**
 * Counters in Redis, shared by every replica. A request costs one call on
 * its path (the admission script); what comes after it (tokens charged,
 * stream slots released) is batched into one call per FLUSH_DELAY_MS for the
 * whole process, and the slots of open streams are renewed in the same way.
 * While Redis is away every call fails at once (no offline queue): the
 * limiter then fails open or closed as configured. Charges that could not
 * be sent are dropped, not queued without bound.
 */
export class RedisCounters implements CounterStore {
  /** Null until the client library has loaded: calls then fail at once, as they do while Redis is away. */
  #connection: ReturnType<typeof connectRedis> | null = null;
  readonly #health: StoreHealth;
  readonly #holderPrefix = randomBytes(6).toString('hex') + ':';
  #holderCount = 0;
  /** Slots this process holds: holder -> slot set, renewed every third of the lease. */
  readonly #held = new Map<string, string>();
  #charges = new Map<string, RateOp>();
  #releases: [string, string][] = [];
  #flushTimer: NodeJS.Timeout | null = null;
  readonly #renewTimer: NodeJS.Timeout;
  #closed = false;

  constructor(settings: RedisSettings, health: StoreHealth) {
    this.#health = health;
    import('./redis-client.js').then(
      ({ connectRedis }) => {
        if (!this.#closed) this.#connection = connectRedis(settings, health);
      },
      (error: unknown) => health.failed(error),
    );
    this.#renewTimer = setInterval(() => this.#renew(), SLOT_LEASE_MS / 3);
    this.#renewTimer.unref();
  }

  admit(admission: Admission): Promise<AdmissionResult> {
    const connection = this.#connection;
    if (connection === null) return Promise.reject(new RedisLoadingError());
    const holder = admission.slot === null ? '' : this.#holderPrefix + ++this.#holderCount;
    return connection.timed.admit(admission, holder, SLOT_LEASE_MS).then((reply) => {
      const rates: RateOutcome[] = [];
      for (let i = 0; i < admission.rates.length; i++) {
        const at = 2 + i * 4;
        rates.push({ allowed: reply[at] === 1, remaining: reply[at + 1]!, resetMs: reply[at + 2]!, retryAfterMs: reply[at + 3]! });
      }
      const allowed = reply[0] === 1;
      const slotFree = reply[1] === -1 ? null : reply[1] === 1;
      if (allowed && admission.slot !== null) this.#held.set(holder, admission.slot.id);
      return { allowed, rates, slotFree, slotHandle: allowed && admission.slot !== null ? holder : null };
    });
  }

  charge(charges: readonly RateOp[]): void {
    for (const op of charges) {
      const pending = this.#charges.get(op.id);
      this.#charges.set(op.id, pending === undefined ? op : { id: op.id, spec: op.spec, cost: pending.cost + op.cost });
    }
    this.#scheduleFlush();
  }

  release(slot: SlotOp, handle: string): void {
    if (!this.#held.delete(handle)) return;
    this.#releases.push([slot.id, handle]);
    this.#scheduleFlush();
  }

  /** Sends what is batched now. */
  flush(): Promise<void> {
    if (this.#flushTimer !== null) clearTimeout(this.#flushTimer);
    this.#flushTimer = null;
    return this.#settle([]);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#renewTimer);
    await this.flush();
    this.#connection?.client.destroy();
  }

  #scheduleFlush(): void {
    if (this.#flushTimer !== null || this.#closed) return;
    this.#flushTimer = setTimeout(() => void this.flush(), FLUSH_DELAY_MS);
    this.#flushTimer.unref();
  }

  #renew(): void {
    if (this.#held.size === 0) return;
    void this.#settle([...this.#held].map(([holder, set]) => [set, holder] as const));
  }

  async #settle(renewals: readonly (readonly [string, string])[]): Promise<void> {
    if (this.#charges.size === 0 && this.#releases.length === 0 && renewals.length === 0) return;
    const settlement: Settlement = { charges: [...this.#charges.values()], releases: this.#releases, renewals, leaseMs: SLOT_LEASE_MS };
    this.#charges = new Map();
    this.#releases = [];
    const connection = this.#connection;
    if (connection === null || !connection.client.isReady) return; // dropped: Redis is away (the health already says so)
    try {
      await connection.timed.settle(settlement);
      this.#health.worked();
    } catch (error) {
      this.#health.failed(error);
    }
  }
}
