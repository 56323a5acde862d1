import { GatewayError } from '../errors/gateway-error.js';

/** What an upstream's admission reports: for gauges, the queue-wait histogram and the once-per-episode log. */
export interface AdmissionObserver {
  /** The upstream's admission was created (its series start at zero). */
  opened(upstream: string): void;
  /** A request waited `seconds` in the queue, then got a slot, was refused (timeout), or its client left. */
  waited(upstream: string, seconds: number, outcome: 'admitted' | 'refused' | 'abandoned'): void;
  /** The first request of an episode had to queue. */
  saturated(upstream: string, maxInFlight: number, queueTimeoutMs: number): void;
  /** The queue is empty again: how many queued in the episode, how many were refused, the longest wait. */
  drained(upstream: string, queued: number, refused: number, longestWaitMs: number): void;
}

export interface AdmissionLimits {
  /** In-flight requests allowed to the upstream at once; null: no cap (the default). */
  readonly maxInFlight: number | null;
  /** Longest wait for a slot once the cap is reached, then 503 `upstream_saturated`. */
  readonly queueTimeoutMs: number;
}

/** A queued request: resolved with a slot, or refused. */
interface Waiter {
  readonly since: number;
  readonly admit: () => void;
  readonly refuse: (error: Error) => void;
  timer: NodeJS.Timeout | null;
}

/**
 * Counts the requests in flight to one upstream and, when the operator caps
 * them, holds the ones past the cap in order for at most the queue timeout.
 * Nothing ever waits without a bound, a metric and a log line: with no cap
 * (the default) every request goes at once.
 */
export class UpstreamAdmission {
  readonly name: string;
  #limits: AdmissionLimits;
  readonly #observer: AdmissionObserver;
  #inFlight = 0;
  #waiters: Waiter[] = [];
  #episode: { queued: number; refused: number; longestWaitMs: number } | null = null;

  constructor(name: string, limits: AdmissionLimits, observer: AdmissionObserver) {
    this.name = name;
    this.#limits = limits;
    this.#observer = observer;
  }

  get limits(): AdmissionLimits {
    return this.#limits;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  get queued(): number {
    return this.#waiters.length;
  }

  /** A reload may change the cap; waiters that now fit are let through. */
  setLimits(limits: AdmissionLimits): void {
    this.#limits = limits;
    while (this.#waiters.length > 0 && this.#hasRoom()) {
      this.#inFlight++;
      this.#admitNext();
    }
  }

  /** Takes a slot now if there is room (no allocation); false means `wait` is needed. */
  tryEnter(): boolean {
    if (this.#waiters.length > 0 || !this.#hasRoom()) return false;
    this.#inFlight++;
    return true;
  }

  /**
   * Waits in order for a slot; rejects with 503 `upstream_saturated` after the
   * queue timeout. `signal` aborts the wait (the client went away).
   */
  wait(signal: AbortSignal): Promise<void> {
    const { maxInFlight, queueTimeoutMs } = this.#limits;
    if (this.#episode === null) {
      this.#episode = { queued: 0, refused: 0, longestWaitMs: 0 };
      this.#observer.saturated(this.name, maxInFlight ?? 0, queueTimeoutMs);
    }
    this.#episode.queued++;
    return new Promise<void>((resolve, reject) => {
      const onAbort = (): void => this.#remove(waiter, signal.reason as Error, 'abandoned');
      const waiter: Waiter = {
        since: performance.now(),
        admit: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        refuse: (error) => {
          signal.removeEventListener('abort', onAbort);
          reject(error);
        },
        timer: null,
      };
      waiter.timer = setTimeout(() => {
        const retryAfter = String(Math.max(1, Math.ceil(queueTimeoutMs / 1000)));
        const error = new GatewayError(
          'upstream_saturated',
          `The upstream '${this.name}' is at its limit of ${maxInFlight} requests in flight; no slot freed within ${queueTimeoutMs} ms.`,
          {
            headers: { 'retry-after': retryAfter },
          },
        );
        this.#remove(waiter, error, 'refused');
      }, queueTimeoutMs);
      this.#waiters.push(waiter);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Frees a slot: it passes straight to the oldest waiter, if any. */
  leave(): void {
    if (this.#waiters.length > 0 && this.#inFlight <= (this.#limits.maxInFlight ?? Infinity)) {
      this.#admitNext();
      return;
    }
    this.#inFlight--;
  }

  #hasRoom(): boolean {
    const max = this.#limits.maxInFlight;
    return max === null || this.#inFlight < max;
  }

  #admitNext(): void {
    const waiter = this.#waiters.shift()!;
    clearTimeout(waiter.timer!);
    this.#settled(waiter, 'admitted');
    waiter.admit();
  }

  #remove(waiter: Waiter, error: Error, outcome: 'refused' | 'abandoned'): void {
    const at = this.#waiters.indexOf(waiter);
    if (at === -1) return;
    this.#waiters.splice(at, 1);
    clearTimeout(waiter.timer!);
    if (outcome === 'refused') this.#episode!.refused++;
    this.#settled(waiter, outcome);
    waiter.refuse(error);
  }

  #settled(waiter: Waiter, outcome: 'admitted' | 'refused' | 'abandoned'): void {
    const waitedMs = performance.now() - waiter.since;
    this.#observer.waited(this.name, waitedMs / 1000, outcome);
    const episode = this.#episode!;
    episode.longestWaitMs = Math.max(episode.longestWaitMs, waitedMs);
    if (this.#waiters.length === 0) {
      this.#episode = null;
      this.#observer.drained(this.name, episode.queued, episode.refused, Math.round(episode.longestWaitMs));
    }
  }
}

/** One admission per upstream name, kept across config reloads so counts survive them. */
export class Admissions {
  readonly #byName = new Map<string, UpstreamAdmission>();
  readonly #observer: AdmissionObserver;

  constructor(observer: AdmissionObserver) {
    this.#observer = observer;
  }

  /** The upstream's admission, with the limits of the snapshot the request reads. */
  get(name: string, limits: AdmissionLimits): UpstreamAdmission {
    let admission = this.#byName.get(name);
    if (admission === undefined) {
      admission = new UpstreamAdmission(name, limits, this.#observer);
      this.#byName.set(name, admission);
      this.#observer.opened(name);
    } else if (admission.limits !== limits) {
      admission.setLimits(limits);
    }
    return admission;
  }

  all(): IterableIterator<UpstreamAdmission> {
    return this.#byName.values();
  }
}
