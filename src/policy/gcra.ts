/**
 * The rate arithmetic every counter store shares (the in-process one here,
 * the Redis one in its Lua scripts, line for line): GCRA, the generic cell
 * rate algorithm. A limit of `limit` per `windowMs` is a bucket of `limit`
 * units that refills evenly, one unit every `windowMs / limit`; its whole
 * state is one number, the "theoretical arrival time" (`tat`): the moment
 * the bucket is full again. A state at or before now is the same as none,
 * so a counter can be forgotten as soon as its tat passes ("windows expire").
 */

export interface RateSpec {
  readonly limit: number;
  readonly windowMs: number;
}

/** What one limit says about one request, in OpenAI's header terms. */
export interface RateOutcome {
  readonly allowed: boolean;
  /** Units left after this request (0 when refused or overdrawn). */
  readonly remaining: number;
  /** ms until the bucket is full again (`x-ratelimit-reset-*`). */
  readonly resetMs: number;
  /** When refused: ms until this request would be allowed (`Retry-After`); 0 otherwise. */
  readonly retryAfterMs: number;
}

/** Floating-point slack: a bucket that is full to within a nanosecond is full. */
const EPSILON_MS = 1e-6;

/**
 * Judges one request against one limit at `now`: with `cost` > 0 it takes
 * `cost` units if they fit (requests); with `cost` 0 it only asks whether
 * at least one unit is left (a token budget checked before a request whose
 * cost is known only after). Returns the outcome and the state to store if
 * every limit of the request allows it.
 */
export function judge(tat: number, now: number, spec: RateSpec, cost: number): { outcome: RateOutcome; tat: number } {
  const interval = spec.windowMs / spec.limit;
  const base = tat > now ? tat : now;
  const used = base - now;
  if (cost > 0) {
    const next = base + cost * interval;
    if (next - now <= spec.windowMs + EPSILON_MS) {
      return { outcome: { allowed: true, remaining: unitsLeft(spec.windowMs - (next - now), interval), resetMs: next - now, retryAfterMs: 0 }, tat: next };
    }
    return {
      outcome: { allowed: false, remaining: unitsLeft(spec.windowMs - used, interval), resetMs: used, retryAfterMs: next - spec.windowMs - now },
      tat: base,
    };
  }
  const spare = spec.windowMs - interval - used;
  if (spare >= -EPSILON_MS)
    return { outcome: { allowed: true, remaining: unitsLeft(spec.windowMs - used, interval), resetMs: used, retryAfterMs: 0 }, tat: base };
  return { outcome: { allowed: false, remaining: 0, resetMs: used, retryAfterMs: -spare }, tat: base };
}

/** Charges `cost` units after the fact: never refused, so a bucket can be overdrawn (it then refuses until repaid). */
export function charge(tat: number, now: number, spec: RateSpec, cost: number): number {
  return (tat > now ? tat : now) + cost * (spec.windowMs / spec.limit);
}

function unitsLeft(timeLeftMs: number, interval: number): number {
  return timeLeftMs <= 0 ? 0 : Math.floor(timeLeftMs / interval + EPSILON_MS);
}
