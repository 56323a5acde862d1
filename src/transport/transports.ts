import type { RoutingSnapshot } from '../config/snapshot.js';
import type { Upstream } from '../config/upstream.js';
import { UpstreamPool } from './h1/pool.js';
import type { Transport } from './types.js';
import { UndiciTransport } from './undici/undici-transport.js';

/** How long an idle upstream connection is kept, under the upstream's own Keep-Alive timeout when it sends one. */
const KEEP_ALIVE_MS = 4_000;
/** The largest upstream response head, for either client. */
const MAX_HEAD_BYTES = 64 * 1024;

/**
 * Which client carries upstream requests: `auto`, the native HTTP/1.1 client
 * for what it serves (nativeClientServes) and undici for the rest; `undici`
 * for everything (a diagnostic: the bench measures undici's path with it).
 */
export type ClientChoice = 'auto' | 'undici';

/**
 * Whether the native client can carry an upstream's requests: plain http,
 * HTTP/1.1, no proxy (its own or HTTP_PROXY). Everything else (https, HTTP/2,
 * proxies, client certificates) is undici's.
 */
export function nativeClientServes(upstream: Upstream): boolean {
  return (
    upstream.origin.startsWith('http:') &&
    upstream.http2 !== 'on' &&
    upstream.proxy === null &&
    (upstream.envProxy === null || upstream.envProxy.httpProxy === null)
  );
}

/**
 * One transport per upstream origin and connection settings, kept across
 * snapshots so that a reload does not drop warm connections.
 */
export class Transports {
  readonly #byKey = new Map<string, Transport>();
  readonly #choice: ClientChoice;

  constructor(choice: ClientChoice = 'auto') {
    this.#choice = choice;
  }

  get(upstream: Upstream): Transport {
    let transport = this.#byKey.get(upstream.poolKey);
    if (transport === undefined) {
      transport = this.#choice === 'auto' && nativeClientServes(upstream) ? nativeTransport(upstream) : undiciTransport(upstream);
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

function nativeTransport(upstream: Upstream): Transport {
  return new UpstreamPool({
    origin: upstream.origin,
    maxIdle: upstream.maxIdleConnections,
    connectTimeoutMs: upstream.connectTimeoutMs,
    keepAliveMs: KEEP_ALIVE_MS,
  });
}

function undiciTransport(upstream: Upstream): Transport {
  return new UndiciTransport({
    origin: upstream.origin,
    connectTimeoutMs: upstream.connectTimeoutMs,
    keepAliveMs: KEEP_ALIVE_MS,
    maxHeaderBytes: MAX_HEAD_BYTES,
    tls: {
      ca: upstream.tlsCa,
      rejectUnauthorized: !upstream.tlsInsecureSkipVerify,
      servername: upstream.tlsServername,
      clientCert: upstream.clientCert,
    },
    http2: upstream.http2,
    proxy: upstream.proxy === null ? null : { url: upstream.proxy.url, authorization: upstream.proxyAuthorization },
    envProxy: upstream.envProxy,
  });
}
