import { UpstreamPool } from '../upstream/pool.js';
import type { RoutingSnapshot, Upstream } from '../config/snapshot.js';

/**
 * One keep-alive connection pool per upstream origin, kept across snapshots
 * so that a reload does not drop warm connections.
 */
export class UpstreamPools {
  readonly #pools = new Map<string, UpstreamPool>();

  get(upstream: Upstream): UpstreamPool {
    let pool = this.#pools.get(upstream.poolKey);
    if (pool === undefined) {
      pool = new UpstreamPool({
        origin: upstream.origin,
        maxIdle: upstream.maxIdleConnections,
        connectTimeoutMs: upstream.connectTimeoutMs,
        tlsCa: upstream.tlsCa,
        tlsInsecureSkipVerify: upstream.tlsInsecureSkipVerify,
        keepAliveMs: 4_000,
      });
      this.#pools.set(upstream.poolKey, pool);
    }
    return pool;
  }

  /** Closes pools the snapshot no longer uses; their in-flight requests finish first. */
  retain(snapshot: RoutingSnapshot): void {
    const used = new Set<string>();
    for (const upstream of snapshot.upstreams.values()) used.add(upstream.poolKey);
    for (const [key, pool] of this.#pools) {
      if (!used.has(key)) {
        this.#pools.delete(key);
        void pool.close();
      }
    }
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.close()));
  }

  async destroy(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.all(pools.map((pool) => pool.destroy()));
  }
}
