/**
 * The Redis counter store against a real redis-server (test/support/real):
 * the Lua scripts do what the in-process counters do (GCRA, all or nothing,
 * slots with leases), one call per request and one batched call for what
 * follows it, atomically across two stores (two replicas), with password and
 * TLS; and a Redis that dies and comes back, as the limiter is configured.
 */
import { createClient } from '@redis/client';
import type { RedisSettings } from '../../src/config/model.js';
import type { Admission, RateOp } from '../../src/policy/counter-store.js';
import { PolicyLimiter, type LimitDecision } from '../../src/policy/limiter.js';
import { MemoryCounters } from '../../src/policy/memory-counters.js';
import { RedisCounters, SLOT_LEASE_MS } from '../../src/policy/redis-counters.js';
import { StoreHealth } from '../../src/policy/store-health.js';
import type { PolicyLimits, Principal } from '../../src/policy/types.js';
import { startRedis, type RedisHandle } from '../support/real/index.js';
import { waitFor } from '../support/wait.js';

const HOUR = 3_600_000;
const NO_LIMITS: PolicyLimits = { requestsPerMinute: null, tokensPerMinute: null, tokensPerDay: null, concurrentStreams: null };

function settings(redis: RedisHandle, overrides: Partial<RedisSettings> = {}): RedisSettings {
  return {
    url: `${redis.ca === undefined ? 'redis' : 'rediss'}://127.0.0.1:${redis.port}`,
    username: null,
    password: redis.password ?? null,
    tlsCa: redis.ca ?? null,
    tlsInsecureSkipVerify: false,
    timeoutMs: 500,
    keyPrefix: `t${Math.random().toString(36).slice(2, 8)}:`,
    ...overrides,
  };
}

function principal(limits: Partial<PolicyLimits>, keyId = 'k1'): Principal {
  return { keyId, consumer: 'team-a', namespace: null, policy: { source: 'file', models: () => true, limits: { ...NO_LIMITS, ...limits } } };
}

/** A Redis store with its health transitions recorded. */
function redisStore(config: RedisSettings): { store: RedisCounters; health: StoreHealth; transitions: boolean[] } {
  const transitions: boolean[] = [];
  const health = new StoreHealth((up) => transitions.push(up));
  return { store: new RedisCounters(config, health), health, transitions };
}

function limiterOn(store: RedisCounters | MemoryCounters, health: StoreHealth, failOpen = true): PolicyLimiter {
  return new PolicyLimiter(store, failOpen, health, { decidedWithoutStore: () => undefined, refused: () => undefined });
}

async function ready(store: RedisCounters): Promise<void> {
  // The store connects on its own; an admission succeeds once it is ready.
  await waitFor(async () => {
    try {
      await store.admit({ rates: [], slot: null });
      return true;
    } catch {
      return false;
    }
  }, 5000);
}

let redis: RedisHandle;
let admin: ReturnType<typeof createClient>;

async function commandCalls(command: string): Promise<number> {
  const match = new RegExp(`^cmdstat_${command}:calls=(\\d+)`, 'm').exec(await admin.info('commandstats'));
  return match === null ? 0 : Number(match[1]);
}

beforeAll(async () => {
  redis = await startRedis({ password: 'pw-limits' });
  admin = createClient({ url: `redis://127.0.0.1:${redis.port}`, password: redis.password });
  admin.on('error', () => undefined);
  await admin.connect();
});

afterAll(async () => {
  admin?.destroy();
  await redis?.stop();
});

describe('the Lua scripts do what the in-process counters do', () => {
  test('the same sequence of admissions and charges gives the same decisions, remaining and (to the ms) resets', async () => {
    const { store } = redisStore(settings(redis));
    await ready(store);
    const memory = new MemoryCounters();
    const rates = (cost: number): Admission => ({
      rates: [
        { id: 'rpm', spec: { limit: 5, windowMs: HOUR }, cost },
        { id: 'tpm', spec: { limit: 1000, windowMs: HOUR }, cost: 0 },
      ],
      slot: null,
    });
    const charge: RateOp[] = [{ id: 'tpm', spec: { limit: 1000, windowMs: HOUR }, cost: 400 }];
    const decisions: boolean[] = [];
    for (let i = 0; i < 7; i++) {
      const fromRedis = await store.admit(rates(1));
      const fromMemory = memory.admit(rates(1));
      decisions.push(fromRedis.allowed);
      expect(fromRedis.allowed).toBe(fromMemory.allowed);
      fromRedis.rates.forEach((outcome, r) => {
        const other = fromMemory.rates[r]!;
        expect([outcome.allowed, outcome.remaining]).toEqual([other.allowed, other.remaining]);
        // Redis's clock and this one advance together; the two differ by the calls' own time.
        expect(Math.abs(outcome.resetMs - other.resetMs)).toBeLessThan(100);
        expect(Math.abs(outcome.retryAfterMs - other.retryAfterMs)).toBeLessThan(100);
      });
      store.charge(charge);
      memory.charge(charge);
      await store.flush();
    }
    // Three requests' 1200 tokens overdraw the 1000: the fourth is refused by tokens, the sixth would be by requests.
    expect(decisions).toEqual([true, true, true, false, false, false, false]);
    await memory.close();
    await store.close();
  });

  test('all or nothing: a refused admission takes nothing; counters expire with their window', async () => {
    const config = settings(redis);
    const { store } = redisStore(config);
    await ready(store);
    const wide = { id: 'wide', spec: { limit: 10, windowMs: 2_000 }, cost: 1 };
    const narrow = { id: 'narrow', spec: { limit: 1, windowMs: 2_000 }, cost: 1 };
    expect((await store.admit({ rates: [wide, narrow], slot: null })).allowed).toBe(true);
    const refused = await store.admit({ rates: [wide, narrow], slot: null });
    expect(refused.allowed).toBe(false);
    expect(refused.rates.map((o) => o.allowed)).toEqual([true, false]);
    expect((await store.admit({ rates: [wide], slot: null })).rates[0]!.remaining).toBe(8);
    const ttl = await admin.pTTL(`${config.keyPrefix}wide`);
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(400); // two of ten per 2 s: full again in 400 ms
    await waitFor(async () => (await admin.exists(`${config.keyPrefix}wide`)) === 0, 2000, 'the counter to expire');
    await store.close();
  });

  test('slots: held up to the limit, released by the batched call, renewed while held; a holder whose lease passed does not count', async () => {
    const config = settings(redis);
    const { store } = redisStore(config);
    await ready(store);
    const slot = { id: 'streams', limit: 2 };
    const first = await store.admit({ rates: [], slot });
    const second = await store.admit({ rates: [], slot });
    expect([first.allowed, second.allowed]).toEqual([true, true]);
    expect(await store.admit({ rates: [], slot })).toMatchObject({ allowed: false, slotFree: false, slotHandle: null });
    const key = `${config.keyPrefix}streams`;
    const leases = await admin.zRangeWithScores(key, 0, -1);
    expect(leases).toHaveLength(2);
    for (const { score } of leases) expect(score - Date.now()).toBeGreaterThan(SLOT_LEASE_MS - 5_000);

    store.release(slot, first.slotHandle!);
    await store.flush();
    expect(await admin.zCard(key)).toBe(1);
    expect((await store.admit({ rates: [], slot })).allowed).toBe(true);

    // A replica that died: its holder's lease has passed.
    await admin.zAdd(key, { score: Date.now() - 1, value: 'dead-replica:1' });
    expect(await admin.zCard(key)).toBe(3);
    const afterDeath = await store.admit({ rates: [], slot: { id: 'streams', limit: 3 } });
    expect(afterDeath.allowed).toBe(true);
    expect(await admin.zScore(key, 'dead-replica:1')).toBeNull();
    await store.close();
  });
});

describe('round trips', () => {
  test('one EVALSHA per request; what requests owe afterwards goes out in one call per batch', async () => {
    const { store, health } = redisStore(settings(redis));
    await ready(store);
    const limiter = limiterOn(store, health);
    const who = principal({ requestsPerMinute: { limit: 1000, scope: 'key' }, tokensPerMinute: { limit: 100_000, scope: 'consumer' }, concurrentStreams: 100 });
    const before = { evalsha: await commandCalls('evalsha'), eval: await commandCalls('eval') };
    const decisions = await Promise.all(Array.from({ length: 40 }, async () => limiter.admit(who, { tokens: true, stream: true })));
    const afterAdmit = { evalsha: await commandCalls('evalsha'), eval: await commandCalls('eval') };
    // Each script is loaded once by EVAL (NOSCRIPT), then run by EVALSHA.
    expect(afterAdmit.evalsha + afterAdmit.eval - before.evalsha - before.eval).toBeLessThanOrEqual(41);
    expect(afterAdmit.evalsha + afterAdmit.eval - before.evalsha - before.eval).toBeGreaterThanOrEqual(40);
    for (const decision of decisions) (decision as Extract<LimitDecision, { kind: 'allowed' }>).ticket!.finish(25);
    await store.flush();
    const afterSettle = (await commandCalls('evalsha')) + (await commandCalls('eval'));
    expect(afterSettle - afterAdmit.evalsha - afterAdmit.eval).toBeLessThanOrEqual(2);
    // The 40 charges of 25 tokens arrived as one: 1000 of 100,000 spent, 40 slots free again.
    const next = (await limiter.admit(who, { tokens: true, stream: true })) as Extract<LimitDecision, { kind: 'allowed' }>;
    expect(next.headers!['x-ratelimit-remaining-tokens']).toMatch(/^99\d\d\d$/);
    next.ticket!.finish(0);
    await store.close();
  });
});

describe('two stores on one Redis (two replicas)', () => {
  test('200 concurrent admissions against a limit of 50: exactly 50 pass', async () => {
    const config = settings(redis);
    const a = redisStore(config);
    const b = redisStore(config);
    await Promise.all([ready(a.store), ready(b.store)]);
    const rate = { id: 'shared', spec: { limit: 50, windowMs: HOUR }, cost: 1 };
    const results = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 === 0 ? a : b).store.admit({ rates: [rate], slot: null })));
    expect(results.filter((r) => r.allowed)).toHaveLength(50);
    await Promise.all([a.store.close(), b.store.close()]);
  });
});

describe('password and TLS', () => {
  test('rediss:// with a private CA and a password; a wrong password fails (and says so once)', async () => {
    const secure = await startRedis({ password: 'pw-tls-limits', tls: true });
    try {
      const { store } = redisStore(settings(secure));
      await ready(store);
      expect((await store.admit({ rates: [{ id: 'tls', spec: { limit: 1, windowMs: HOUR }, cost: 1 }], slot: null })).allowed).toBe(true);
      await store.close();

      const wrong = redisStore(settings(secure, { password: 'not-it' }));
      await expect(wrong.store.admit({ rates: [], slot: null })).rejects.toThrow();
      await waitFor(() => wrong.transitions.length > 0, 5000, 'the failure reported');
      expect(wrong.transitions).toEqual([false]);
      await wrong.store.close();
    } finally {
      await secure.stop();
    }
  });
});

describe('Redis away', () => {
  test('killed: admissions fail at once (no offline queue) and the limiter fails open, one transition; restarted: limits again', async () => {
    const own = await startRedis({ password: 'pw-away' });
    try {
      const { store, health, transitions } = redisStore(settings(own));
      await ready(store);
      const limiter = limiterOn(store, health, true);
      const who = principal({ requestsPerMinute: { limit: 2, scope: 'key' } });
      expect((await limiter.admit(who, { tokens: true, stream: false })).kind).toBe('allowed');
      await own.kill();
      await waitFor(() => !health.up, 5000, 'the store to notice');
      const started = performance.now();
      const decisions = await Promise.all(Array.from({ length: 20 }, async () => limiter.admit(who, { tokens: true, stream: false })));
      expect(performance.now() - started).toBeLessThan(500);
      expect(decisions.every((d) => d.kind === 'allowed' && d.headers === null)).toBe(true);
      expect(transitions).toEqual([false]);

      await own.restart();
      await waitFor(() => health.up, 10_000, 'the store to reconnect');
      expect(transitions).toEqual([false, true]);
      // An empty Redis: the budget starts full again.
      const again = await Promise.all([1, 2, 3].map(async () => limiter.admit(who, { tokens: true, stream: false })));
      expect(again.map((d) => d.kind)).toEqual(['allowed', 'allowed', 'refused']);
      await store.close();
    } finally {
      await own.stop();
    }
  });

  test('fail closed: refused as unavailable while Redis is away', async () => {
    const own = await startRedis();
    try {
      const { store, health } = redisStore(settings(own));
      await ready(store);
      const limiter = limiterOn(store, health, false);
      const who = principal({ requestsPerMinute: { limit: 100, scope: 'key' } });
      await own.kill();
      await waitFor(() => !health.up, 5000, 'the store to notice');
      expect(await limiter.admit(who, { tokens: false, stream: false })).toEqual({ kind: 'unavailable' });
      await store.close();
    } finally {
      await own.stop();
    }
  });

  test('a Redis that stops answering (SIGSTOP): the call times out after timeout_ms, the request is not held longer', async () => {
    const own = await startRedis();
    try {
      const { store, health } = redisStore(settings(own, { timeoutMs: 150 }));
      await ready(store);
      const limiter = limiterOn(store, health, true);
      const who = principal({ requestsPerMinute: { limit: 100, scope: 'key' } });
      own.freeze();
      try {
        const started = performance.now();
        expect((await limiter.admit(who, { tokens: false, stream: false })).kind).toBe('allowed');
        const took = performance.now() - started;
        expect(took).toBeGreaterThanOrEqual(140);
        expect(took).toBeLessThan(1000);
        expect(health.up).toBe(false);
      } finally {
        own.thaw();
      }
      await store.close();
    } finally {
      await own.stop();
    }
  });
});
