import type { Admission, AdmissionResult, CounterStore, RateOp, SlotOp } from './counter-store.js';
import type { RateOutcome, RateSpec } from './gcra.js';
import { addBudget, addRetryAfter, formatDuration, type RateLimitHeaders } from './rate-limit-headers.js';
import type { StoreHealth } from './store-health.js';
import type { PolicyLimits, Principal, RateLimit } from './types.js';

export type LimitName = 'requests_per_minute' | 'tokens_per_minute' | 'tokens_per_day' | 'concurrent_streams';

const MINUTE_MS = 60_000;
const DAY_MS = 86_400_000;

const TITLES: Record<LimitName, string> = {
  requests_per_minute: 'requests per minute (RPM)',
  tokens_per_minute: 'tokens per minute (TPM)',
  tokens_per_day: 'tokens per day (TPD)',
  concurrent_streams: 'concurrent streams',
};

/** What a request is, as far as limits care. */
export interface RequestShape {
  /** It can use tokens (chat, completions, responses, embeddings): token budgets apply. */
  readonly tokens: boolean;
  /** It asks for an event stream: the concurrent-streams limit applies. */
  readonly stream: boolean;
}

/** What an admitted request owes afterwards: its tokens, and its stream's slot back. Called once. */
export interface LimitTicket {
  /** `tokens`: what the request used (prompt and completion), or 0 when nothing was reported. */
  finish(tokens: number): void;
}

export type LimitDecision =
  | {
      readonly kind: 'allowed';
      /** OpenAI's headers for the answer; null when no budget applies (or the store could not be asked). */
      readonly headers: RateLimitHeaders | null;
      readonly ticket: LimitTicket | null;
    }
  | {
      readonly kind: 'refused';
      /** The limit that binds longest. */
      readonly limit: LimitName;
      readonly message: string;
      /** The budgets' headers and Retry-After. */
      readonly headers: RateLimitHeaders;
    }
  /** The store could not be asked and the limiter is set to fail closed. */
  | { readonly kind: 'unavailable' };

/** What the limiter reports, for metrics. */
export interface LimiterEvents {
  /** A request decided without the store: let through (fail open) or refused (fail closed). */
  decidedWithoutStore(allowed: boolean): void;
  refused(principal: Principal, limit: LimitName): void;
}

/** One budget of a principal's policy, with the counter it lives in. */
interface Budget {
  readonly name: LimitName;
  readonly spec: RateSpec;
  readonly id: string;
  /** For messages: `key 'k1' of consumer 'c'` or `consumer 'c'`. */
  readonly whose: string;
}

/** What a principal's limits compile to, once per principal (they come from the immutable snapshot). */
interface Plan {
  readonly requests: Budget | null;
  readonly tokens: readonly Budget[];
  readonly streams: { readonly slot: SlotOp; readonly whose: string } | null;
  /** Admissions by shape: [tokens][stream], built on first use. */
  readonly admissions: (Admission | null)[];
}

/**
 * The authorize stage's limits: turns a principal's policy into counter
 * operations, asks the store once per request, and turns the answer into
 * OpenAI's headers, a refusal naming the limit, or (the store away) the
 * configured choice: fail open (let requests through, unlimited) or closed.
 */
export class PolicyLimiter {
  readonly store: CounterStore;
  readonly failOpen: boolean;
  readonly #health: StoreHealth;
  readonly #events: LimiterEvents;
  readonly #plans = new WeakMap<Principal, Plan | null>();

  constructor(store: CounterStore, failOpen: boolean, health: StoreHealth, events: LimiterEvents) {
    this.store = store;
    this.failOpen = failOpen;
    this.#health = health;
    this.#events = events;
  }

  /** Judges one request; a principal without limits is allowed at once, with no headers. */
  admit(principal: Principal, shape: RequestShape): LimitDecision | Promise<LimitDecision> {
    const plan = this.#plan(principal);
    if (plan === null) return ALLOWED_UNLIMITED;
    const admission = admissionFor(plan, shape);
    if (admission === null) return ALLOWED_UNLIMITED;
    let result: AdmissionResult | Promise<AdmissionResult>;
    try {
      result = this.store.admit(admission);
    } catch (error) {
      return this.#withoutStore(error);
    }
    if (result instanceof Promise) {
      return result.then(
        (answer) => this.#decide(principal, plan, admission, answer),
        (error: unknown) => this.#withoutStore(error),
      );
    }
    return this.#decide(principal, plan, admission, result);
  }

  #decide(principal: Principal, plan: Plan, admission: Admission, result: AdmissionResult): LimitDecision {
    this.#health.worked();
    const headers = headersFor(plan, admission, result);
    if (result.allowed) {
      // A ticket only when something is owed afterwards: tokens to charge, a slot to give back.
      const owes = admission.slot !== null || admission.rates.some((op) => op.cost === 0);
      return { kind: 'allowed', headers, ticket: owes ? new Ticket(this.store, plan, admission.slot, result.slotHandle) : null };
    }
    const refusal = bindingRefusal(plan, admission, result);
    addRetryAfter(headers, refusal.retryAfterMs);
    this.#events.refused(principal, refusal.name);
    return { kind: 'refused', limit: refusal.name, message: refusal.message, headers };
  }

  #withoutStore(error: unknown): LimitDecision {
    this.#health.failed(error);
    this.#events.decidedWithoutStore(this.failOpen);
    return this.failOpen ? ALLOWED_UNLIMITED : UNAVAILABLE;
  }

  #plan(principal: Principal): Plan | null {
    let plan = this.#plans.get(principal);
    if (plan === undefined) {
      plan = compilePlan(principal);
      this.#plans.set(principal, plan);
    }
    return plan;
  }
}

const ALLOWED_UNLIMITED: LimitDecision = { kind: 'allowed', headers: null, ticket: null };
const UNAVAILABLE: LimitDecision = { kind: 'unavailable' };

/** Charges the tokens a request used and gives its stream slot back, once. */
class Ticket implements LimitTicket {
  readonly #store: CounterStore;
  readonly #plan: Plan;
  readonly #slot: SlotOp | null;
  readonly #handle: string | null;
  #done = false;

  constructor(store: CounterStore, plan: Plan, slot: SlotOp | null, handle: string | null) {
    this.#store = store;
    this.#plan = plan;
    this.#slot = slot;
    this.#handle = handle;
  }

  finish(tokens: number): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#slot !== null && this.#handle !== null) this.#store.release(this.#slot, this.#handle);
    if (tokens > 0 && this.#plan.tokens.length > 0) this.#store.charge(this.#plan.tokens.map((budget) => ({ id: budget.id, spec: budget.spec, cost: tokens })));
  }
}

function compilePlan(principal: Principal): Plan | null {
  const limits: PolicyLimits | undefined = principal.policy?.limits;
  if (limits === undefined) return null;
  const budget = (name: LimitName, kind: string, limit: RateLimit | null, windowMs: number): Budget | null => {
    if (limit === null) return null;
    const perKey = limit.scope === 'key';
    return {
      name,
      spec: { limit: limit.limit, windowMs },
      id: perKey ? `${kind}:${principal.consumer}:${principal.keyId}` : `${kind}:${principal.consumer}`,
      whose: perKey ? `key '${principal.keyId}' of consumer '${principal.consumer}'` : `consumer '${principal.consumer}'`,
    };
  };
  const requests = budget('requests_per_minute', 'rpm', limits.requestsPerMinute, MINUTE_MS);
  const tokens = [budget('tokens_per_minute', 'tpm', limits.tokensPerMinute, MINUTE_MS), budget('tokens_per_day', 'tpd', limits.tokensPerDay, DAY_MS)].filter(
    (b): b is Budget => b !== null,
  );
  const streams =
    limits.concurrentStreams === null
      ? null
      : {
          slot: { id: `streams:${principal.consumer}:${principal.keyId}`, limit: limits.concurrentStreams },
          whose: `key '${principal.keyId}' of consumer '${principal.consumer}'`,
        };
  if (requests === null && tokens.length === 0 && streams === null) return null;
  return { requests, tokens, streams, admissions: [null, null, null, null] };
}

function admissionFor(plan: Plan, shape: RequestShape): Admission | null {
  const index = (shape.tokens ? 2 : 0) + (shape.stream ? 1 : 0);
  let admission = plan.admissions[index] ?? null;
  if (admission === null) {
    const rates: RateOp[] = [];
    if (plan.requests !== null) rates.push({ id: plan.requests.id, spec: plan.requests.spec, cost: 1 });
    if (shape.tokens) for (const budget of plan.tokens) rates.push({ id: budget.id, spec: budget.spec, cost: 0 });
    const slot = shape.stream && plan.streams !== null ? plan.streams.slot : null;
    admission = rates.length === 0 && slot === null ? EMPTY : { rates, slot };
    plan.admissions[index] = admission;
  }
  return admission === EMPTY ? null : admission;
}

const EMPTY: Admission = { rates: [], slot: null };

/** The budgets of the admission in OpenAI's headers; of the token budgets, the one with fewer tokens left. */
function headersFor(plan: Plan, admission: Admission, result: AdmissionResult): RateLimitHeaders {
  const headers: RateLimitHeaders = {};
  let index = 0;
  if (plan.requests !== null) {
    let outcome = result.rates[0]!;
    // Refused as a whole: nothing was taken, so the request budget still has what it had.
    if (!result.allowed && outcome.allowed) outcome = { ...outcome, remaining: Math.min(plan.requests.spec.limit, outcome.remaining + 1) };
    addBudget(headers, 'requests', plan.requests.spec, outcome);
    index = 1;
  }
  let tightest: { spec: RateSpec; outcome: RateOutcome } | null = null;
  for (let i = index; i < admission.rates.length; i++) {
    const outcome = result.rates[i]!;
    if (tightest === null || outcome.remaining < tightest.outcome.remaining) tightest = { spec: admission.rates[i]!.spec, outcome };
  }
  if (tightest !== null) addBudget(headers, 'tokens', tightest.spec, tightest.outcome);
  return headers;
}

function bindingRefusal(plan: Plan, admission: Admission, result: AdmissionResult): { name: LimitName; message: string; retryAfterMs: number } {
  // The admission's rates are the request budget (if any), then the token budgets in the plan's order.
  const budgets = plan.requests === null ? plan.tokens : [plan.requests, ...plan.tokens];
  let worst: { budget: Budget; outcome: RateOutcome } | null = null;
  result.rates.forEach((outcome, i) => {
    if (!outcome.allowed && (worst === null || outcome.retryAfterMs > worst.outcome.retryAfterMs)) worst = { budget: budgets[i]!, outcome };
  });
  if (worst !== null) {
    const { budget, outcome } = worst as { budget: Budget; outcome: RateOutcome };
    return {
      name: budget.name,
      retryAfterMs: outcome.retryAfterMs,
      message: `Rate limit reached for ${TITLES[budget.name]} of ${budget.whose}: limit ${budget.spec.limit}. Please try again in ${formatDuration(outcome.retryAfterMs)}.`,
    };
  }
  const streams = plan.streams!;
  return {
    name: 'concurrent_streams',
    retryAfterMs: 1000,
    message: `Rate limit reached for ${TITLES.concurrent_streams} of ${streams.whose}: limit ${streams.slot.limit}. Please try again when one of its streams ends.`,
  };
}
