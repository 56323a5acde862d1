import { setTimeout as delay } from 'node:timers/promises';
import { Watch, type KubeConfig } from '@kubernetes/client-node';
import type { Logger } from '../../observability/logger.js';

/** The parts of a Kubernetes object this source reads. */
export interface KubeObject {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    generation?: number;
    creationTimestamp?: string | Date;
    resourceVersion?: string;
    labels?: Record<string, string>;
  };
  [field: string]: unknown;
}

export interface ListResult {
  items: KubeObject[];
  resourceVersion: string;
}

export interface ResourceWatchOptions {
  readonly name: string;
  readonly kubeConfig: KubeConfig;
  /** Lists the collection (one namespace or all). */
  readonly list: () => Promise<ListResult>;
  /** The collection's watch path, e.g. /apis/apiproxy.io/v1alpha1/namespaces/ns/modelroutes. */
  readonly watchPath: string;
  readonly query?: Record<string, string>;
  /** A watch silent this long (no event, no bookmark) is restarted. */
  readonly silenceTimeoutMs: number;
  readonly onChange: () => void;
  readonly logger: Logger;
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

/** A watch (or a list followed by its watch) shorter than this without progress counts as a failure. */
const HEALTHY_WATCH_MS = 1_000;

class WatchGoneError extends Error {
  readonly code = 'WATCH_GONE';
}

/**
 * A list+watch cache for one collection that never gives up: it re-lists on
 * 410 Gone, reconnects with backoff after any other error (the client's own
 * informer stops there), and restarts watches that go silent. While the API
 * server is away the last listed state stays in place.
 */
export class ResourceWatch {
  readonly #options: ResourceWatchOptions;
  readonly #items = new Map<string, KubeObject>();
  #synced = false;
  #stopped = false;
  #abort: AbortController | null = null;
  /** Ends the running watch at once (also while its request is still connecting). */
  #endWatch: (() => void) | null = null;
  /** Aborts the backoff wait when stop() is called. */
  readonly #stopSignal = new AbortController();
  #loop: Promise<void> | null = null;
  #firstSync: { promise: Promise<void>; resolve: () => void };

  constructor(options: ResourceWatchOptions) {
    this.#options = options;
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    this.#firstSync = { promise, resolve };
  }

  get synced(): boolean {
    return this.#synced;
  }

  get items(): IterableIterator<KubeObject> {
    return this.#items.values();
  }

  /** Resolves after the first successful list. */
  get firstSync(): Promise<void> {
    return this.#firstSync.promise;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#stopSignal.abort();
    this.#abort?.abort();
    this.#endWatch?.();
    await this.#loop;
  }

  async #run(): Promise<void> {
    const { logger, name } = this.#options;
    const minBackoff = this.#options.minBackoffMs ?? 200;
    const maxBackoff = this.#options.maxBackoffMs ?? 10_000;
    let backoff = minBackoff;
    let listedAt = 0;
    let quickGones = 0;
    while (!this.#stopped) {
      try {
        listedAt = Date.now();
        let resourceVersion = await this.#list();
        // The backoff resets only once a watch made progress: a list that works
        // followed by a watch that fails at once must not retry in a tight loop.
        while (!this.#stopped) {
          resourceVersion = await this.#watch(resourceVersion, () => (backoff = minBackoff));
        }
      } catch (error) {
        if (this.#stopped) break;
        if (error instanceof WatchGoneError) {
          logger.info({ watch: name }, 'watch expired (410 Gone); listing again');
          // The first 410 lists again at once; a server that answers every fresh list's watch with 410
          // must not get a tight list loop.
          quickGones = Date.now() - listedAt < HEALTHY_WATCH_MS ? quickGones + 1 : 0;
          if (quickGones > 1) {
            await delay(backoff, undefined, { signal: this.#stopSignal.signal }).catch(() => undefined);
            backoff = Math.min(backoff * 2, maxBackoff);
          }
          continue;
        }
        logger.warn({ watch: name, err: { message: (error as Error).message }, retry_ms: backoff }, 'watch failed; keeping the last state and retrying');
        // Abortable, so stop() neither waits out the backoff nor leaves its timer behind.
        await delay(backoff, undefined, { signal: this.#stopSignal.signal }).catch(() => undefined);
        backoff = Math.min(backoff * 2, maxBackoff);
      }
    }
  }

  async #list(): Promise<string> {
    const result = await this.#options.list();
    this.#items.clear();
    for (const item of result.items) this.#items.set(keyOf(item), item);
    const first = !this.#synced;
    this.#synced = true;
    this.#options.onChange();
    if (first) this.#firstSync.resolve();
    return result.resourceVersion;
  }

  /** Watches from `resourceVersion` until the server ends the watch; returns the last version seen. */
  #watch(resourceVersion: string, onProgress: () => void): Promise<string> {
    const { kubeConfig, watchPath, query, silenceTimeoutMs, onChange } = this.#options;
    const startedAt = Date.now();
    return new Promise<string>((resolve, reject) => {
      let version = resourceVersion;
      let settled = false;
      let sawEvent = false;
      let silence: NodeJS.Timeout | null = null;
      const finish = (error: Error | null): void => {
        if (settled) return;
        settled = true;
        if (silence !== null) clearTimeout(silence);
        this.#abort?.abort();
        this.#abort = null;
        this.#endWatch = null;
        if (error === null) resolve(version);
        else reject(error);
      };
      const armWatchdog = (): void => {
        if (silence !== null) clearTimeout(silence);
        silence = setTimeout(() => finish(new Error(`watch silent for ${silenceTimeoutMs} ms`)), silenceTimeoutMs);
        silence.unref();
      };
      armWatchdog();
      this.#endWatch = () => finish(null);
      new Watch(kubeConfig)
        .watch(
          watchPath,
          {
            ...query,
            resourceVersion: version,
            allowWatchBookmarks: true,
            // The server ends the watch before the watchdog would, so a healthy quiet watch restarts cleanly.
            timeoutSeconds: Math.max(1, Math.floor((silenceTimeoutMs * 0.8) / 1000)),
          },
          (phase: string, object: KubeObject) => {
            // Lines already buffered when the watch ended must not touch the cache.
            if (settled) return;
            armWatchdog();
            if (phase === 'ERROR') {
              const status = object as { code?: number; message?: string };
              finish(status.code === 410 ? new WatchGoneError('gone') : new Error(`watch error ${status.code}: ${status.message}`));
              return;
            }
            const objectVersion = object.metadata?.resourceVersion;
            if (objectVersion !== undefined) version = objectVersion;
            sawEvent = true;
            onProgress();
            if (phase === 'BOOKMARK') return;
            if (phase === 'DELETED') this.#items.delete(keyOf(object));
            else this.#items.set(keyOf(object), object);
            onChange();
          },
          (error: unknown) => {
            if (error === null || error === undefined) {
              // A watch the server ends at once, again and again, is a fault to back off from, not progress.
              if (!sawEvent && Date.now() - startedAt < HEALTHY_WATCH_MS) return finish(new Error('the server ended the watch at once'));
              onProgress();
              return finish(null);
            }
            const code = (error as { statusCode?: number; code?: number }).statusCode ?? (error as { code?: number }).code;
            finish(code === 410 ? new WatchGoneError('gone') : (error as Error));
          },
        )
        .then(
          (abort) => {
            if (settled || this.#stopped) abort.abort();
            else this.#abort = abort;
          },
          (error: unknown) => finish(error as Error),
        );
    });
  }
}

function keyOf(object: KubeObject): string {
  return `${object.metadata?.namespace ?? ''}/${object.metadata?.name ?? ''}`;
}
