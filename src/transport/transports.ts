import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import { UpstreamPool } from './h1/pool.js';
import type { Transport } from './types.js';

/** How long an idle upstream connection is kept, under the upstream's own Keep-Alive timeout when it sends one. */
const KEEP_ALIVE_MS = 4_000;

/**
 * One transport per upstream origin and connection settings, kept across
 * snapshots so that a reload does not drop warm connections.
 */
export class Transports {
  readonly #byKey = new Map<string, Transport>();

  get(upstream: Upstream): Transport {
    let transport = this.#byKey.get(upstream.poolKey);
    if (transport === undefined) {
      transport = new UpstreamPool({
        origin: upstream.origin,
        maxIdle: upstream.maxIdleConnections,
        connectTimeoutMs: upstream.connectTimeoutMs,
        tlsCa: upstream.tlsCa,
        tlsInsecureSkipVerify: upstream.tlsInsecureSkipVerify,
        keepAliveMs: KEEP_ALIVE_MS,
      });
      this.#byKey.set(upstream.poolKey, transport);
    }
    return transport;
  }

  /** Closes transports the snapshot no longer uses; their in-flight requests finish first. */
  retain(snapshot: RoutingSnapshot): void {
    const used = new Set<string>();
    for (const upstream of snapshot.upstreams.values()) used.add(upstream.poolKey);
    for (const [key, transport] of this.#byKey) {
      if (!used.has(key)) {
        this.#byKey.delete(key);
        void transport.close();
      }
    }
  }

  async destroy(): Promise<void> {
    const transports = [...this.#byKey.values()];
    this.#byKey.clear();
    await Promise.all(transports.map((transport) => transport.destroy()));
  }
}
