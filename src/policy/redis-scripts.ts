import { defineScript, type RedisArgument } from '@redis/client';
import type { Admission, RateOp } from './counter-store.js';

/**
 * The Redis counter store's two Lua scripts. Each runs atomically in Redis,
 * on Redis's own clock (replicas with skewed clocks still agree), and does
 * GCRA exactly as src/policy/gcra.ts does (same names, same order, so the
 * two read side by side). A rate counter is a string holding its tat in ms,
 * expiring when the bucket is full again; a slot counter is a sorted set of
 * holders scored by the end of their lease, so the slots of a replica that
 * died free themselves.
 */

const GCRA = `
redis.replicate_commands()
local EPSILON = 1e-6
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000

local function units(left, interval)
  if left <= 0 then return 0 end
  return math.floor(left / interval + EPSILON)
end

-- returns allowed (1/0), remaining, reset ms, retry-after ms, the tat to store
local function judge(tat, limit, window, cost)
  local interval = window / limit
  local base = tat
  if base < now then base = now end
  local used = base - now
  if cost > 0 then
    local nxt = base + cost * interval
    if nxt - now <= window + EPSILON then
      return 1, units(window - (nxt - now), interval), nxt - now, 0, nxt
    end
    return 0, units(window - used, interval), used, nxt - window - now, base
  end
  local spare = window - interval - used
  if spare >= -EPSILON then return 1, units(window - used, interval), used, 0, base end
  return 0, 0, used, -spare, base
end

local function charge(tat, limit, window, cost)
  local base = tat
  if base < now then base = now end
  return base + cost * (window / limit)
end

local function store(key, tat)
  local ttl = math.ceil(tat - now)
  if ttl < 1 then ttl = 1 end
  redis.call('SET', key, string.format('%.17g', tat), 'PX', ttl)
end
`;

/**
 * KEYS: the rate counters, then the slot set (when there is a slot).
 * ARGV: rate count, slot limit (0: none), slot holder, lease ms; then per rate: limit, window ms, cost.
 * Returns: allowed, slot free (1, 0; -1 without a slot), then per rate: allowed, remaining, reset ms, retry-after ms.
 */
const ADMIT = `${GCRA}
local rates = tonumber(ARGV[1])
local slotLimit = tonumber(ARGV[2])
local allowed = 1
local reply = {0, -1}
local taken = {}
for i = 1, rates do
  local at = 4 + (i - 1) * 3
  local cost = tonumber(ARGV[at + 3])
  local ok, remaining, reset, retry, tat = judge(tonumber(redis.call('GET', KEYS[i]) or '0'), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), cost)
  if ok == 0 then allowed = 0 end
  if cost > 0 then taken[i] = tat end
  table.insert(reply, ok)
  table.insert(reply, remaining)
  table.insert(reply, math.ceil(reset))
  table.insert(reply, math.ceil(retry))
end
if slotLimit > 0 then
  local slots = KEYS[rates + 1]
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) < slotLimit then reply[2] = 1 else reply[2] = 0; allowed = 0 end
end
reply[1] = allowed
if allowed == 1 then
  for i, tat in pairs(taken) do store(KEYS[i], tat) end
  if slotLimit > 0 then
    local lease = tonumber(ARGV[4])
    redis.call('ZADD', KEYS[rates + 1], now + lease, ARGV[3])
    redis.call('PEXPIRE', KEYS[rates + 1], lease)
  end
end
return reply
`;

/**
 * KEYS: charged counters, then the slot sets of released holders, then those of renewed holders.
 * ARGV: charge count, release count, renewal count, lease ms; per charge: limit, window ms, cost;
 * per release: holder; per renewal: holder. Returns the number of operations applied.
 */
const SETTLE = `${GCRA}
local charges = tonumber(ARGV[1])
local releases = tonumber(ARGV[2])
local renewals = tonumber(ARGV[3])
local lease = tonumber(ARGV[4])
local arg = 5
for i = 1, charges do
  store(KEYS[i], charge(tonumber(redis.call('GET', KEYS[i]) or '0'), tonumber(ARGV[arg]), tonumber(ARGV[arg + 1]), tonumber(ARGV[arg + 2])))
  arg = arg + 3
end
for i = charges + 1, charges + releases do
  redis.call('ZREM', KEYS[i], ARGV[arg])
  arg = arg + 1
end
for i = charges + releases + 1, charges + releases + renewals do
  if redis.call('ZSCORE', KEYS[i], ARGV[arg]) then
    redis.call('ZADD', KEYS[i], now + lease, ARGV[arg])
    redis.call('PEXPIRE', KEYS[i], lease)
  end
  arg = arg + 1
end
return charges + releases + renewals
`;

/** What one settle call carries. */
export interface Settlement {
  readonly charges: readonly RateOp[];
  /** [slot set, holder] pairs. */
  readonly releases: readonly (readonly [string, string])[];
  readonly renewals: readonly (readonly [string, string])[];
  readonly leaseMs: number;
}

const numbers = (values: number[]): string[] => values.map(String);

export const admitScript = defineScript({
  SCRIPT: ADMIT,
  parseCommand(parser, admission: Admission, holder: RedisArgument, leaseMs: number) {
    const keys = admission.rates.map((op) => op.id);
    if (admission.slot !== null) keys.push(admission.slot.id);
    parser.pushKeysLength(keys);
    parser.push(String(admission.rates.length), String(admission.slot?.limit ?? 0), holder, String(leaseMs));
    for (const op of admission.rates) parser.push(...numbers([op.spec.limit, op.spec.windowMs, op.cost]));
  },
  transformReply: (reply: unknown): number[] => (reply as (number | string)[]).map(Number),
});

export const settleScript = defineScript({
  SCRIPT: SETTLE,
  parseCommand(parser, settlement: Settlement) {
    const { charges, releases, renewals } = settlement;
    parser.pushKeysLength([...charges.map((op) => op.id), ...releases.map(([set]) => set), ...renewals.map(([set]) => set)]);
    parser.push(...numbers([charges.length, releases.length, renewals.length, settlement.leaseMs]));
    for (const op of charges) parser.push(...numbers([op.spec.limit, op.spec.windowMs, op.cost]));
    for (const [, holder] of releases) parser.push(holder);
    for (const [, holder] of renewals) parser.push(holder);
  },
  transformReply: (reply: unknown): number => Number(reply),
});
