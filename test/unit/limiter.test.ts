import type { Admission, AdmissionResult, CounterStore } from '../../src/policy/counter-store.js';
import { charge, judge } from '../../src/policy/gcra.js';
import { PolicyLimiter, type LimitDecision, type LimitName } from '../../src/policy/limiter.js';
import { MemoryCounters } from '../../src/policy/memory-counters.js';
import { formatDuration } from '../../src/policy/rate-limit-headers.js';
import { StoreHealth } from '../../src/policy/store-health.js';
import type { PolicyLimits, Principal } from '../../src/policy/types.js';

const MINUTE = 60_000;
const NO_LIMITS: PolicyLimits = { requestsPerMinute: null, tokensPerMinute: null, tokensPerDay: null, concurrentStreams: null };

function principal(limits: Partial<PolicyLimits>, keyId = 'k1', consumer = 'team-a'): Principal {
  return { keyId, consumer, namespace: null, policy: { source: 'file', models: () => true, limits: { ...NO_LIMITS, ...limits } } };
}

class Clock {
  now = 1_000_000;
  readonly read = (): number => this.now;
}

interface Recorded {
  refused: [string, LimitName][];
  withoutStore: boolean[];
  transitions: boolean[];
}

function limiterWith(store: CounterStore, failOpen = true): { limiter: PolicyLimiter; recorded: Recorded } {
  const recorded: Recorded = { refused: [], withoutStore: [], transitions: [] };
  const health = new StoreHealth((up) => recorded.transitions.push(up));
  const limiter = new PolicyLimiter(store, failOpen, health, {
    decidedWithoutStore: (allowed) => recorded.withoutStore.push(allowed),
    refused: (who, limit) => recorded.refused.push([who.keyId, limit]),
  });
  return { limiter, recorded };
}

const chat = { tokens: true, stream: false };
const stream = { tokens: true, stream: true };
const upload = { tokens: false, stream: false };

function sync(decision: LimitDecision | Promise<LimitDecision>): LimitDecision {
  if (decision instanceof Promise) throw new Error('the in-process store decides at once');
  return decision;
}

describe('GCRA (gcra.ts): a bucket of `limit` units refilled evenly over the window', () => {
  const spec = { limit: 3, windowMs: MINUTE };

  test('takes up to the limit at once, then refuses until one unit (window / limit) has refilled', () => {
    let tat = 0;
    const now = 10_000;
    const taken = [1, 2, 3].map(() => {
      const judged = judge(tat, now, spec, 1);
      tat = judged.tat;
      return judged.outcome;
    });
    expect(taken.map((o) => [o.allowed, o.remaining])).toEqual([
      [true, 2],
      [true, 1],
      [true, 0],
    ]);
    expect(taken[2]!.resetMs).toBe(MINUTE);
    const refused = judge(tat, now, spec, 1);
    expect(refused.outcome).toEqual({ allowed: false, remaining: 0, resetMs: MINUTE, retryAfterMs: 20_000 });
    expect(refused.tat).toBe(tat);
    expect(judge(tat, now + 19_999, spec, 1).outcome.allowed).toBe(false);
    expect(judge(tat, now + 20_000, spec, 1).outcome).toMatchObject({ allowed: true, remaining: 0 });
  });

  test('a window that has passed is the same as no state at all', () => {
    const judged = judge(5_000, 5_000 + MINUTE, spec, 1);
    expect(judged).toEqual(judge(0, 5_000 + MINUTE, spec, 1));
  });

  test('a check (cost 0) allows while one unit is left and takes nothing; a charge may overdraw, and the debt is repaid over time', () => {
    const tokens = { limit: 1000, windowMs: MINUTE };
    const now = 0;
    expect(judge(0, now, tokens, 0)).toEqual({ outcome: { allowed: true, remaining: 1000, resetMs: 0, retryAfterMs: 0 }, tat: 0 });
    const overdrawn = charge(0, now, tokens, 1500); // 1.5 windows of debt
    expect(overdrawn).toBe(90_000);
    const checked = judge(overdrawn, now, tokens, 0);
    expect(checked.outcome.allowed).toBe(false);
    expect(checked.outcome.remaining).toBe(0);
    // One token is back when the debt is down to the window less one token's interval (60 ms).
    expect(checked.outcome.retryAfterMs).toBeCloseTo(30_060, 6);
    expect(judge(overdrawn, now + 30_060, tokens, 0).outcome).toMatchObject({ allowed: true, remaining: 1 });
  });

  test('remaining and reset at fractions: 7 per minute', () => {
    const seven = { limit: 7, windowMs: MINUTE };
    let tat = 0;
    for (let i = 0; i < 7; i++) tat = judge(tat, 0, seven, 1).tat;
    expect(judge(tat, 0, seven, 1).outcome.allowed).toBe(false);
    const later = judge(tat, MINUTE / 7, seven, 1);
    expect(later.outcome.allowed).toBe(true);
    expect(later.outcome.remaining).toBe(0);
  });
});

describe('MemoryCounters', () => {
  test('all or nothing: a request refused by one limit takes nothing from the others', () => {
    const clock = new Clock();
    const store = new MemoryCounters(clock.read);
    const rpm = { id: 'rpm', spec: { limit: 10, windowMs: MINUTE }, cost: 1 };
    const tight = { id: 'tight', spec: { limit: 1, windowMs: MINUTE }, cost: 1 };
    expect(store.admit({ rates: [rpm, tight], slot: null }).allowed).toBe(true);
    const refused = store.admit({ rates: [rpm, tight], slot: null });
    expect(refused.allowed).toBe(false);
    expect(refused.rates.map((o) => o.allowed)).toEqual([true, false]);
    // rpm still has 9 (only the first request took one).
    expect(store.admit({ rates: [rpm], slot: null }).rates[0]!.remaining).toBe(8);
    void store.close();
  });

  test('slots: taken up to the limit, given back on release; a full slot refuses the rates too', () => {
    const store = new MemoryCounters(new Clock().read);
    const slot = { id: 'streams', limit: 2 };
    const rpm = { id: 'rpm', spec: { limit: 100, windowMs: MINUTE }, cost: 1 };
    const admit = (): AdmissionResult => store.admit({ rates: [rpm], slot });
    expect([admit().allowed, admit().allowed]).toEqual([true, true]);
    const full = admit();
    expect(full).toMatchObject({ allowed: false, slotFree: false, slotHandle: null });
    expect(store.admit({ rates: [rpm], slot: null }).rates[0]!.remaining).toBe(97);
    store.release(slot);
    expect(admit().allowed).toBe(true);
    void store.close();
  });

  test('windows expire: counters whose bucket is full again are dropped by the sweep; released slots leave none', () => {
    const clock = new Clock();
    const store = new MemoryCounters(clock.read);
    store.admit({ rates: [{ id: 'a', spec: { limit: 60, windowMs: MINUTE }, cost: 1 }], slot: { id: 's', limit: 1 } });
    store.charge([{ id: 'b', spec: { limit: 1000, windowMs: MINUTE }, cost: 500 }]);
    expect(store.size).toBe(3);
    store.release({ id: 's', limit: 1 });
    clock.now += 1_000; // 'a' (one request of 60/min) is full again; 'b' (half a window of tokens) is not
    store.sweep();
    expect(store.size).toBe(1);
    clock.now += 29_000;
    store.sweep();
    expect(store.size).toBe(0);
    void store.close();
  });
});

describe('PolicyLimiter', () => {
  test('no policy, or a policy without limits: allowed at once, no headers, no ticket', () => {
    const store = new MemoryCounters(new Clock().read);
    const { limiter } = limiterWith(store);
    expect(sync(limiter.admit({ keyId: 'k', consumer: 'c', namespace: null, policy: null }, chat))).toEqual({ kind: 'allowed', headers: null, ticket: null });
    expect(sync(limiter.admit(principal({}), chat))).toEqual({ kind: 'allowed', headers: null, ticket: null });
    expect(store.size).toBe(0);
    void store.close();
  });

  test("requests per minute: OpenAI's headers on every answer, then 429 naming the limit with Retry-After", () => {
    const clock = new Clock();
    const store = new MemoryCounters(clock.read);
    const { limiter, recorded } = limiterWith(store);
    const who = principal({ requestsPerMinute: { limit: 2, scope: 'key' } });
    const first = sync(limiter.admit(who, chat));
    expect(first).toMatchObject({
      kind: 'allowed',
      headers: { 'x-ratelimit-limit-requests': '2', 'x-ratelimit-remaining-requests': '1', 'x-ratelimit-reset-requests': '30s' },
      ticket: null,
    });
    sync(limiter.admit(who, chat));
    const refused = sync(limiter.admit(who, chat));
    expect(refused).toEqual({
      kind: 'refused',
      limit: 'requests_per_minute',
      message: "Rate limit reached for requests per minute (RPM) of key 'k1' of consumer 'team-a': limit 2. Please try again in 30s.",
      headers: {
        'x-ratelimit-limit-requests': '2',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': '1m0s',
        'retry-after': '30',
        'retry-after-ms': '30000',
      },
    });
    expect(recorded.refused).toEqual([['k1', 'requests_per_minute']]);
    clock.now += 30_000;
    expect(sync(limiter.admit(who, chat)).kind).toBe('allowed');
    void store.close();
  });

  test('per key counts each key alone; per consumer, the keys of a consumer share one budget', () => {
    const store = new MemoryCounters(new Clock().read);
    const { limiter } = limiterWith(store);
    const perKey = { requestsPerMinute: { limit: 1, scope: 'key' as const } };
    expect(sync(limiter.admit(principal(perKey, 'k1'), chat)).kind).toBe('allowed');
    expect(sync(limiter.admit(principal(perKey, 'k2'), chat)).kind).toBe('allowed');
    const shared = { requestsPerMinute: { limit: 1, scope: 'consumer' as const } };
    expect(sync(limiter.admit(principal(shared, 'k1', 'team-b'), chat)).kind).toBe('allowed');
    const second = sync(limiter.admit(principal(shared, 'k2', 'team-b'), chat));
    expect(second).toMatchObject({ kind: 'refused', limit: 'requests_per_minute' });
    expect(second.kind === 'refused' && second.message).toContain("of consumer 'team-b'");
    void store.close();
  });

  test('token budgets: checked before (refused once spent), charged with the real usage after; headers show the tighter of minute and day', () => {
    const clock = new Clock();
    const store = new MemoryCounters(clock.read);
    const { limiter, recorded } = limiterWith(store);
    const who = principal({ tokensPerMinute: { limit: 1000, scope: 'key' }, tokensPerDay: { limit: 1500, scope: 'consumer' } });
    const first = sync(limiter.admit(who, chat));
    expect(first.kind === 'allowed' && first.headers).toEqual({
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '1000',
      'x-ratelimit-reset-tokens': '0s',
    });
    // Two requests in flight, both admitted before either is charged: the overshoot the docs describe.
    const second = sync(limiter.admit(who, chat));
    if (first.kind !== 'allowed' || second.kind !== 'allowed') throw new Error('expected both admitted');
    first.ticket!.finish(900);
    second.ticket!.finish(300); // 1200 of 1000 per minute: overdrawn
    const third = sync(limiter.admit(who, chat));
    expect(third).toMatchObject({ kind: 'refused', limit: 'tokens_per_minute' });
    expect(third.kind === 'refused' && third.headers['x-ratelimit-remaining-tokens']).toBe('0');
    // 12 s repays 200 tokens of the minute budget: one token is left; the day budget has 300 left.
    clock.now += 12_060;
    const fourth = sync(limiter.admit(who, chat));
    expect(fourth.kind === 'allowed' && fourth.headers).toEqual({
      'x-ratelimit-limit-tokens': '1000',
      'x-ratelimit-remaining-tokens': '1',
      'x-ratelimit-reset-tokens': '59.94s',
    });
    if (fourth.kind !== 'allowed') throw new Error('expected allowed');
    fourth.ticket!.finish(299);
    clock.now += MINUTE; // the minute budget is full again; the day budget is spent (1499 of 1500 + refill)
    const fifth = sync(limiter.admit(who, chat));
    expect(fifth.kind === 'allowed' && fifth.headers!['x-ratelimit-limit-tokens']).toBe('1500');
    if (fifth.kind === 'allowed') fifth.ticket!.finish(100);
    const sixth = sync(limiter.admit(who, chat));
    expect(sixth).toMatchObject({ kind: 'refused', limit: 'tokens_per_day' });
    // 1599 tokens charged against 1500 a day (57.6 s a token), 72 s after the first: 5687.94 s of debt to repay.
    expect(sixth.kind === 'refused' && sixth.message).toBe(
      "Rate limit reached for tokens per day (TPD) of consumer 'team-a': limit 1500. Please try again in 1h34m47.94s.",
    );
    expect(recorded.refused.map(([, limit]) => limit)).toEqual(['tokens_per_minute', 'tokens_per_day']);
    void store.close();
  });

  test('token budgets do not apply to requests that use no tokens (uploads, files, model lists)', () => {
    const store = new MemoryCounters(new Clock().read);
    const { limiter } = limiterWith(store);
    const who = principal({ requestsPerMinute: { limit: 10, scope: 'key' }, tokensPerMinute: { limit: 1, scope: 'key' } });
    const decision = sync(limiter.admit(who, upload));
    expect(decision.kind === 'allowed' && Object.keys(decision.headers!)).toEqual([
      'x-ratelimit-limit-requests',
      'x-ratelimit-remaining-requests',
      'x-ratelimit-reset-requests',
    ]);
    expect(decision.kind === 'allowed' && decision.ticket).toBeNull();
    void store.close();
  });

  test('concurrent streams per key: refused while all are open, free again when one finishes; requests that are not streams pass', () => {
    const store = new MemoryCounters(new Clock().read);
    const { limiter } = limiterWith(store);
    const who = principal({ concurrentStreams: 1 });
    const open = sync(limiter.admit(who, stream));
    expect(open.kind).toBe('allowed');
    const refused = sync(limiter.admit(who, stream));
    expect(refused).toMatchObject({ kind: 'refused', limit: 'concurrent_streams', headers: { 'retry-after': '1' } });
    expect(refused.kind === 'refused' && refused.message).toBe(
      "Rate limit reached for concurrent streams of key 'k1' of consumer 'team-a': limit 1. Please try again when one of its streams ends.",
    );
    expect(sync(limiter.admit(who, chat)).kind).toBe('allowed');
    if (open.kind !== 'allowed') throw new Error('expected allowed');
    open.ticket!.finish(0);
    open.ticket!.finish(0); // once only
    expect(sync(limiter.admit(who, stream)).kind).toBe('allowed');
    expect(sync(limiter.admit(who, stream)).kind).toBe('refused');
    void store.close();
  });

  describe('a store that fails', () => {
    class FlakyStore implements CounterStore {
      down = false;
      readonly inner = new MemoryCounters(new Clock().read);
      admit(admission: Admission): Promise<AdmissionResult> {
        return this.down ? Promise.reject(new Error('ECONNREFUSED')) : Promise.resolve(this.inner.admit(admission));
      }
      charge(): void {}
      release(): void {}
      close(): Promise<void> {
        return this.inner.close();
      }
    }
    const who = principal({ requestsPerMinute: { limit: 1000, scope: 'key' } });

    test('fail open: requests pass without headers, counted; one transition each way, not one per request', async () => {
      const store = new FlakyStore();
      const { limiter, recorded } = limiterWith(store, true);
      expect((await limiter.admit(who, chat)).kind).toBe('allowed');
      store.down = true;
      const decisions = await Promise.all([1, 2, 3].map(async () => limiter.admit(who, chat)));
      expect(decisions).toEqual([1, 2, 3].map(() => ({ kind: 'allowed', headers: null, ticket: null })));
      expect(recorded.withoutStore).toEqual([true, true, true]);
      store.down = false;
      expect((await limiter.admit(who, chat)).kind).toBe('allowed');
      expect(recorded.transitions).toEqual([false, true]);
      await store.close();
    });

    test('fail closed: requests are refused as unavailable', async () => {
      const store = new FlakyStore();
      store.down = true;
      const { limiter, recorded } = limiterWith(store, false);
      expect(await limiter.admit(who, chat)).toEqual({ kind: 'unavailable' });
      expect(recorded.withoutStore).toEqual([false]);
      expect(recorded.transitions).toEqual([false]);
      await store.close();
    });
  });
});

describe('formatDuration (as OpenAI writes x-ratelimit-reset-*)', () => {
  test.each([
    [0, '0s'],
    [-5, '0s'],
    [0.2, '1ms'],
    [20, '20ms'],
    [999.4, '999ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [59_940, '59.94s'],
    [60_000, '1m0s'],
    [86_400, '1m26.4s'],
    [360_000, '6m0s'],
    [3_723_000, '1h2m3s'],
    [86_400_000, '24h0m0s'],
  ])('%d ms -> %s', (ms, text) => {
    expect(formatDuration(ms)).toBe(text);
  });
});
