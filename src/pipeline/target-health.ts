import type { OutlierSpec } from '../config/model.js';
import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import type { Availability } from '../routing/resolve.js';

/** What the health state reports, for metrics and logs. */
export interface HealthObserver {
  /** An upstream's state was created (its series start at zero). */
  opened(upstream: string): void;
  /** The upstream was taken out of rotation for `ms` after `failures` failures in a row. */
  ejected(upstream: string, ms: number, failures: number): void;
  /** A request to an ejected upstream succeeded: it is back in rotation. */
  readmitted(upstream: string, ejectedMs: number): void;
}

/** Retry-After waits kept at most; past it the expired ones go, then the oldest. */
const MAX_WAITS = 10_000;

/** One upstream's outlier state. */
class UpstreamState {
  readonly name: string;
  /** Failures in a row (connect, timeout, reset, 5xx). */
  failures = 0;
  ejected = false;
  /** While ejected: when the next request may go through (the probe); a performance.now() time. */
  ejectedUntil = 0;
  ejectedAt = 0;
  /** The probe is out: until it answers, the upstream stays out of rotation. */
  probing = false;
  /** Ejections in a row: each doubles the next one's length. */
  level = 0;
  readmittedAt = Number.NEGATIVE_INFINITY;

  constructor(name: string) {
    this.name = name;
  }
}

/**
 * Which targets may be tried now, across requests: outlier ejection per
 * upstream (failures in a row take it out of rotation for a time that doubles
 * with each ejection in a row, up to a cap; then one request, the probe, is
 * let through, and its success readmits it) and Retry-After waits per target
 * (upstream and model). The forward stage owns it and reports each attempt's
 * result; resolving reads it as an Availability. Nothing is ejected or waiting
 * in the usual case, and then a lookup costs one comparison.
 */
export class TargetHealth implements Availability {
  readonly #byName = new Map<string, UpstreamState>();
  /** `upstream\0model` -> the time (performance.now()) until which the target asked to be left alone. */
  readonly #waits = new Map<string, number>();
  readonly #observer: HealthObserver;
  readonly #now: () => number;
  #ejectedCount = 0;
  /** Upstreams whose last result was a failure: while there are none, a success changes nothing. */
  #failingCount = 0;
  #upstreamCount = 1;

  constructor(observer: HealthObserver, now: () => number = () => performance.now()) {
    this.#observer = observer;
    this.#now = now;
  }

  get allAvailable(): boolean {
    return this.#ejectedCount === 0 && this.#waits.size === 0;
  }

  available(upstream: Upstream, model: string): boolean {
    const now = this.#now();
    return this.readyAt(upstream, model, now) <= now;
  }

  /**
   * When a target may be tried: `now` when it is available, the end of its
   * Retry-After wait, or +Infinity while its upstream is ejected (and its
   * probe not yet due, or already out).
   */
  readyAt(upstream: Upstream, model: string, now = this.#now()): number {
    if (this.#ejectedCount > 0) {
      const state = this.#byName.get(upstream.name);
      if (state !== undefined && state.ejected && (state.probing || now < state.ejectedUntil)) return Number.POSITIVE_INFINITY;
    }
    if (this.#waits.size > 0) {
      const key = waitKey(upstream.name, model);
      const until = this.#waits.get(key);
      if (until !== undefined) {
        if (until > now) return until;
        this.#waits.delete(key);
      }
    }
    return now;
  }

  /**
   * An attempt on a target planned as available is about to start: false when
   * its upstream has gone out of rotation since (another request took the
   * probe); 'probe' when this attempt is the probe of an ejected upstream.
   */
  enter(upstream: Upstream): boolean | 'probe' {
    if (this.#ejectedCount === 0) return true;
    const state = this.#byName.get(upstream.name);
    if (state === undefined || !state.ejected) return true;
    if (state.probing || this.#now() < state.ejectedUntil) return false;
    state.probing = true;
    return 'probe';
  }

  /** An answer came from the upstream (any status below 500, 429 included). */
  succeeded(upstream: Upstream): void {
    if (this.#failingCount === 0) return;
    const state = this.#byName.get(upstream.name);
    if (state === undefined || state.failures === 0) return;
    state.failures = 0;
    this.#failingCount--;
    if (!state.ejected) return;
    state.ejected = false;
    state.probing = false;
    state.readmittedAt = this.#now();
    this.#ejectedCount--;
    this.#observer.readmitted(upstream.name, Math.round(state.readmittedAt - state.ejectedAt));
  }

  /** The upstream failed an attempt (connect, timeout, reset, 5xx); `probe` when it was the probe. */
  failed(upstream: Upstream, probe: boolean): void {
    const state = this.#state(upstream.name);
    if (state.failures === 0) this.#failingCount++;
    state.failures++;
    const outlier = upstream.outlier;
    if (state.ejected) {
      if (probe) this.#eject(state, outlier); // the probe failed: out again, for longer
      return;
    }
    if (outlier.consecutiveFailures === 0 || state.failures < outlier.consecutiveFailures) return;
    if ((this.#ejectedCount + 1) * 100 > outlier.maxEjectedPercent * this.#upstreamCount) return;
    this.#ejectedCount++;
    state.ejected = true;
    state.ejectedAt = this.#now();
    // The doubling starts over once the upstream has stayed in rotation for a whole longest ejection.
    if (state.ejectedAt - state.readmittedAt > outlier.maxEjectionMs) state.level = 0;
    this.#eject(state, outlier);
  }

  /** The probe's request ended without a verdict (its client left): the next request may probe. */
  abandoned(upstream: Upstream): void {
    const state = this.#byName.get(upstream.name);
    if (state !== undefined) state.probing = false;
  }

  /** The target asked to be left alone until `until` (a performance.now() time). */
  wait(upstream: Upstream, model: string, until: number): void {
    const key = waitKey(upstream.name, model);
    const previous = this.#waits.get(key);
    if (previous !== undefined && previous >= until) return;
    this.#waits.delete(key); // re-inserted last: the map stays in order of last update
    if (this.#waits.size >= MAX_WAITS) this.#pruneWaits();
    this.#waits.set(key, until);
  }

  /** Follows a new snapshot: its upstreams' states exist (series at zero), the others go. */
  retain(snapshot: RoutingSnapshot): void {
    this.#upstreamCount = snapshot.upstreams.size;
    for (const name of snapshot.upstreams.keys()) this.#state(name);
    for (const [name, state] of this.#byName) {
      if (snapshot.upstreams.has(name)) continue;
      if (state.ejected) this.#ejectedCount--;
      if (state.failures > 0) this.#failingCount--;
      this.#byName.delete(name);
    }
  }

  /** Every upstream's ejection, for the gauge. */
  *ejections(): IterableIterator<{ readonly name: string; readonly ejected: boolean }> {
    yield* this.#byName.values();
  }

  #eject(state: UpstreamState, outlier: OutlierSpec): void {
    const now = this.#now();
    const ms = Math.min(outlier.maxEjectionMs, outlier.ejectionMs * 2 ** state.level);
    state.level++;
    state.ejectedUntil = now + ms;
    state.probing = false;
    this.#observer.ejected(state.name, ms, state.failures);
  }

  #state(name: string): UpstreamState {
    let state = this.#byName.get(name);
    if (state === undefined) {
      state = new UpstreamState(name);
      this.#byName.set(name, state);
      this.#observer.opened(name);
    }
    return state;
  }

  #pruneWaits(): void {
    const now = this.#now();
    for (const [key, until] of this.#waits) if (until <= now) this.#waits.delete(key);
    const oldest = this.#waits.keys().next();
    if (this.#waits.size >= MAX_WAITS && oldest.done !== true) this.#waits.delete(oldest.value);
  }
}

function waitKey(upstream: string, model: string): string {
  return upstream + '\0' + model;
}
