import { setTimeout as delay } from 'node:timers/promises';
import type { CoordinationV1Api, V1Lease } from '@kubernetes/client-node';
import { V1MicroTime } from '@kubernetes/client-node';
import type { Logger } from '../../observability/logger.js';

/** How long a lease lasts, how long its holder keeps leading without renewing it, how often both sides try. */
export interface LeaseTiming {
  /** The lease's leaseDurationSeconds: a holder not seen renewing for this long may be replaced. */
  readonly durationSeconds: number;
  /** A holder that could not renew for this long stops leading; shorter than the duration, so two never overlap. */
  readonly renewDeadlineMs: number;
  /** Between attempts, to renew (holder) or to take over (the others, jittered up to 20 % more). */
  readonly retryMs: number;
}

/** Shutdown waits this long at most for the release: a successor would otherwise wait out the lease. */
const RELEASE_TIMEOUT_MS = 2_000;

/** client-go's leader-election defaults. */
export const LEASE_TIMING: LeaseTiming = { durationSeconds: 15, renewDeadlineMs: 10_000, retryMs: 2_000 };

export interface StatusLeaseOptions {
  readonly api: CoordinationV1Api;
  readonly namespace: string;
  readonly name: string;
  /** This replica's holderIdentity, unique per process (pod name and a random suffix). */
  readonly identity: string;
  readonly timing: LeaseTiming;
  readonly logger: Logger;
  /** Called when this replica starts leading: from now on it writes statuses. */
  readonly onLeading: () => void;
}

function statusOf(error: unknown): number | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

/**
 * A coordination.k8s.io Lease held by one replica at a time, as controllers
 * do (client-go's leaderelection): the holder renews it every `retryMs`; the
 * others take it over once they have seen it unchanged for its duration (time
 * measured on their own clock, so clocks need not agree) or released. A
 * holder that cannot renew within `renewDeadlineMs` stops leading before
 * anyone else may start. Writes use the object's resourceVersion, so two
 * replicas racing for an expired lease cannot both win. On stop the holder
 * releases it, and a successor takes over at its next attempt.
 */
export class StatusLease {
  readonly #options: StatusLeaseOptions;
  #leading = false;
  #stopped = false;
  #timer: NodeJS.Timeout | null = null;
  #attempt: Promise<void> = Promise.resolve();
  /** The lease as last read (resourceVersion) and when this replica first saw it so. */
  #observed: { version: string; at: number } | null = null;
  #renewedAt = 0;
  #failing = false;

  constructor(options: StatusLeaseOptions) {
    this.#options = options;
  }

  /** Whether this replica holds the lease (and so writes statuses). */
  get leading(): boolean {
    return this.#leading;
  }

  start(): void {
    if (this.#stopped || this.#timer !== null) return;
    this.#schedule(0);
  }

  /** Stops trying; a holder releases the lease so the next replica need not wait out its duration. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#attempt;
    if (!this.#leading) return;
    this.#lose('stopping');
    try {
      await Promise.race([this.#release(), delay(RELEASE_TIMEOUT_MS, undefined, { ref: false })]);
    } catch (error) {
      this.#options.logger.warn({ lease: this.#options.name, err: { message: (error as Error).message } }, 'could not release the status lease');
    }
  }

  #schedule(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#attempt = this.#tryAcquireOrRenew().finally(() => {
        if (this.#stopped) return;
        const { retryMs } = this.#options.timing;
        this.#schedule(this.#leading ? retryMs : retryMs * (1 + Math.random() * 0.2));
      });
    }, ms);
    // The lease never keeps a process alive on its own (the server and the watches do).
    this.#timer.unref();
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { api, namespace, name, identity, timing } = this.#options;
    const now = performance.now();
    try {
      let lease: V1Lease;
      try {
        lease = await api.readNamespacedLease({ name, namespace });
      } catch (error) {
        if (statusOf(error) !== 404) throw error;
        await api.createNamespacedLease({ namespace, body: { metadata: { name, namespace }, spec: this.#spec(null) } });
        this.#won(now);
        return;
      }
      const spec = lease.spec ?? {};
      const version = lease.metadata?.resourceVersion ?? '';
      if (this.#observed?.version !== version) this.#observed = { version, at: now };
      const holder = spec.holderIdentity ?? '';
      const durationMs = (spec.leaseDurationSeconds ?? timing.durationSeconds) * 1000;
      if (holder !== '' && holder !== identity && now < this.#observed.at + durationMs) {
        if (this.#leading) this.#lose(`taken over by ${holder}`);
        this.#recovered();
        return;
      }
      await api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: this.#spec(lease) } });
      this.#won(now);
    } catch (error) {
      // 409: another replica wrote the lease since it was read (it renewed, or won the race to take it over).
      if (statusOf(error) === 409) {
        this.#recovered();
      } else if (!this.#failing) {
        this.#failing = true;
        this.#options.logger.warn(
          { lease: `${namespace}/${name}`, err: { message: (error as Error).message, code: statusOf(error) } },
          'status lease: cannot read or write it; statuses wait (requests are not affected)',
        );
      }
    } finally {
      if (this.#leading && performance.now() - this.#renewedAt > timing.renewDeadlineMs) this.#lose('could not renew the lease in time');
    }
  }

  /** The spec this replica writes: over no lease (creating it), renewing its own, or taking over another's. */
  #spec(lease: V1Lease | null): NonNullable<V1Lease['spec']> {
    const now = new V1MicroTime();
    const previous = lease?.spec;
    const renewing = previous !== undefined && previous.holderIdentity === this.#options.identity;
    return {
      holderIdentity: this.#options.identity,
      leaseDurationSeconds: this.#options.timing.durationSeconds,
      acquireTime: renewing ? (previous.acquireTime ?? now) : now,
      renewTime: now,
      leaseTransitions: previous === undefined ? 0 : (previous.leaseTransitions ?? 0) + (renewing ? 0 : 1),
    };
  }

  #won(at: number): void {
    this.#renewedAt = at;
    this.#recovered();
    if (this.#leading) return;
    this.#leading = true;
    this.#options.logger.info(
      { lease: `${this.#options.namespace}/${this.#options.name}`, identity: this.#options.identity },
      'holding the status lease: this replica writes statuses',
    );
    this.#options.onLeading();
  }

  #lose(reason: string): void {
    this.#leading = false;
    this.#options.logger.info({ lease: `${this.#options.namespace}/${this.#options.name}`, reason }, 'no longer holding the status lease');
  }

  #recovered(): void {
    if (!this.#failing) return;
    this.#failing = false;
    this.#options.logger.info({ lease: `${this.#options.namespace}/${this.#options.name}` }, 'status lease reachable again');
  }

  async #release(): Promise<void> {
    const { api, namespace, name, identity } = this.#options;
    const lease = await api.readNamespacedLease({ name, namespace });
    if (lease.spec?.holderIdentity !== identity) return;
    const spec = { ...lease.spec };
    delete spec.holderIdentity;
    await api.replaceNamespacedLease({ name, namespace, body: { ...lease, spec: { ...spec, leaseDurationSeconds: 1, renewTime: new V1MicroTime() } } });
  }
}
