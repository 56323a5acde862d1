import type { RateLimitSettings, RedisSettings } from '../config/model.js';
import type { CounterStore } from './counter-store.js';
import { PolicyLimiter, type LimiterEvents } from './limiter.js';
import { MemoryCounters } from './memory-counters.js';
import { RedisCounters } from './redis-counters.js';
import { StoreHealth } from './store-health.js';

export interface RateLimitingEvents extends LimiterEvents {
  /** The counter store stopped (or started again) answering; once per transition. */
  storeHealth(up: boolean, error: unknown, settings: RateLimitSettings): void;
}

/**
 * The limiter the request path reads, rebuilt when the config's
 * `rate_limits` change (a Redis URL, a rotated password, fail_open). The
 * in-process counters (or, in a cluster, the primary's) are made once and
 * kept across reloads, so a config change never resets a budget; a Redis
 * store is replaced only when its settings change, and the old one is
 * closed after its batched charges went out.
 */
export class RateLimiting {
  readonly #events: RateLimitingEvents;
  readonly #local: CounterStore;
  readonly #localHealth: StoreHealth;
  #limiter: PolicyLimiter;
  /** The health of the limiter's store: the store and the limiter report to it, so a transition is logged once. */
  #health: StoreHealth;
  #settings: RateLimitSettings;
  #redisKey: string | null;

  /** `local`: the counters used without Redis (this process's, or the cluster primary's). */
  constructor(settings: RateLimitSettings, events: RateLimitingEvents, local: CounterStore = new MemoryCounters()) {
    this.#events = events;
    this.#local = local;
    this.#settings = settings;
    this.#localHealth = new StoreHealth((up, error) => this.#events.storeHealth(up, error, this.#settings));
    this.#redisKey = redisKey(settings.redis);
    const { store, health } = this.#storeFor(settings);
    this.#health = health;
    this.#limiter = new PolicyLimiter(store, settings.failOpen, health, events);
  }

  get limiter(): PolicyLimiter {
    return this.#limiter;
  }

  /** Whether the current store answers (always, for in-process counters). */
  get storeUp(): boolean {
    return this.#health.up;
  }

  configure(settings: RateLimitSettings): void {
    const key = redisKey(settings.redis);
    const old = this.#limiter;
    if (key === this.#redisKey && settings.failOpen === this.#settings.failOpen) return;
    this.#settings = settings;
    if (key !== this.#redisKey) {
      this.#redisKey = key;
      const { store, health } = this.#storeFor(settings);
      this.#health = health;
      this.#limiter = new PolicyLimiter(store, settings.failOpen, health, this.#events);
      if (old.store !== this.#local) void old.store.close();
    } else {
      this.#limiter = new PolicyLimiter(old.store, settings.failOpen, this.#health, this.#events);
    }
  }

  async close(): Promise<void> {
    const store = this.#limiter.store;
    if (store !== this.#local) await store.close();
    await this.#local.close();
  }

  #storeFor(settings: RateLimitSettings): { store: CounterStore; health: StoreHealth } {
    if (settings.redis === null) return { store: this.#local, health: this.#localHealth };
    // A new store starts healthy: its first failure is a transition, logged once.
    const health = new StoreHealth((up, error) => this.#events.storeHealth(up, error, this.#settings));
    return { store: new RedisCounters(settings.redis, health), health };
  }
}

function redisKey(redis: RedisSettings | null): string | null {
  return redis === null ? null : JSON.stringify(redis);
}
