import type { RoutingSnapshot } from '../../config/snapshot.js';
import type { Logger } from '../../observability/logger.js';
import type { ResourceWatch } from './resource-watch.js';

/** `namespace/name` of every Secret the snapshot's upstreams read: keys, proxy passwords, client certificates. */
export function referencedSecrets(snapshot: RoutingSnapshot, defaultNamespace: string): Set<string> {
  const secrets = new Set<string>();
  for (const upstream of snapshot.upstreams.values()) {
    for (const ref of [upstream.apiKeySecret, upstream.proxy?.passwordSecret ?? null, upstream.tlsClientCertSecret]) {
      if (ref !== null) secrets.add(`${ref.namespace ?? defaultNamespace}/${ref.name}`);
    }
  }
  return secrets;
}

/**
 * One watch per Secret the upstreams read, following the config: a reload that names
 * a new `api_key_secret` (or proxy `password_secret`, or `client_cert_secret`) starts its watch, one that drops the last reference
 * stops it (its entries leave with it).
 */
export class UpstreamKeyWatches {
  readonly #watches = new Map<string, ResourceWatch>();
  readonly #create: (namespace: string, name: string) => ResourceWatch;
  readonly #defaultNamespace: string;
  readonly #onChange: () => void;
  readonly #logger: Logger;
  #started = false;
  #stopped = false;

  constructor(options: { create: (namespace: string, name: string) => ResourceWatch; defaultNamespace: string; onChange: () => void; logger: Logger }) {
    this.#create = options.create;
    this.#defaultNamespace = options.defaultNamespace;
    this.#onChange = options.onChange;
    this.#logger = options.logger;
  }

  get watches(): IterableIterator<ResourceWatch> {
    return this.#watches.values();
  }

  /** Watches exactly the Secrets that `snapshot` names (a watch added after start() starts at once). */
  follow(snapshot: RoutingSnapshot): void {
    if (this.#stopped) return;
    const wanted = referencedSecrets(snapshot, this.#defaultNamespace);
    for (const qualified of wanted) {
      if (this.#watches.has(qualified)) continue;
      const slash = qualified.indexOf('/');
      const watch = this.#create(qualified.slice(0, slash), qualified.slice(slash + 1));
      this.#watches.set(qualified, watch);
      if (this.#started) {
        this.#logger.info({ secret: qualified }, 'watching a newly named upstream-key secret');
        watch.start();
      }
    }
    for (const [qualified, watch] of this.#watches) {
      if (wanted.has(qualified)) continue;
      this.#watches.delete(qualified);
      this.#logger.info({ secret: qualified }, 'upstream-key secret no longer named; not watching it');
      void watch.stop();
      this.#onChange();
    }
  }

  start(): void {
    this.#started = true;
    for (const watch of this.#watches.values()) watch.start();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await Promise.all([...this.#watches.values()].map((watch) => watch.stop()));
  }
}
