import { setTimeout as delay } from 'node:timers/promises';
import { CHANGE, ERROR, ListWatch, Watch, type KubeConfig, type KubernetesListObject, type KubernetesObject } from '@kubernetes/client-node';
import { ExponentialBackoff } from '../../backoff/exponential-backoff.js';
import type { Logger } from '../../observability/logger.js';

/**
 * The parts of a Kubernetes object this source reads, typed as the server's
 * JSON: watch events arrive undecoded (timestamps as strings), while the
 * client's list calls hand back its model classes (timestamps as Dates).
 */
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

export type ListCall = () => Promise<KubernetesListObject<KubernetesObject>>;

export interface ResourceWatchOptions {
  readonly name: string;
  readonly kubeConfig: KubeConfig;
  /** Lists the collection (one namespace or all) with the same selectors as the watch. */
  readonly list: ListCall;
  /** The collection's watch path, e.g. /apis/apiproxy.io/v1alpha1/namespaces/ns/modelroutes. */
  readonly watchPath: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** A watch silent this long (no event, no bookmark, not even its response headers) is restarted. */
  readonly silenceTimeoutMs: number;
  /** Called after the first sync and after every change of the cache (once per object of a list: it should only schedule work). */
  readonly onChange: () => void;
  readonly logger: Logger;
  /** Restart backoff after an error: ceiling doubling from min to max, equal jitter. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
}

interface WatchHooks {
  /** The library is about to open a watch: a listed state is in its cache. */
  opening(): void;
  event(phase: string, object: unknown): void;
  ended(error: unknown): void;
}

type WatchCallback = (phase: string, object: unknown, raw?: unknown) => void;
type DoneCallback = (error: unknown) => void;

/**
 * The client's Watch as ListWatch's transport, with the three things its
 * owner needs: bookmarks asked for (they keep a quiet watch's resourceVersion
 * fresh and its inactivity timer fed), an inactivity timeout of our choosing,
 * and an off switch. ListWatch.stop() only aborts a watch it already holds: a
 * watch still connecting, or one opened after its own reconnect delay or a
 * list that was in flight, would otherwise start after stop() and feed the
 * cache until the server ends it.
 */
class OwnedWatch extends Watch {
  readonly #hooks: WatchHooks;
  #closed = false;

  constructor(kubeConfig: KubeConfig, silenceTimeoutMs: number, hooks: WatchHooks) {
    super(kubeConfig);
    // Watch's inactivity timeout (reset by every chunk, also while connecting) is a field TypeScript calls private;
    // the client documents setting it on the instance. A silent watch is aborted with a TimeoutError and ListWatch
    // reconnects from its last resourceVersion at once.
    Object.assign(this, { requestTimeoutMs: silenceTimeoutMs });
    this.#hooks = hooks;
  }

  close(): void {
    this.#closed = true;
  }

  override async watch(
    path: string,
    query: Record<string, string | number | boolean | undefined>,
    callback: WatchCallback,
    done: DoneCallback,
  ): Promise<AbortController> {
    if (this.#closed) return aborted();
    let ended = false;
    const onEvent: WatchCallback = (phase, object, raw) => {
      if (this.#closed || ended) return;
      this.#hooks.event(phase, object);
      callback(phase, object, raw);
    };
    const onDone: DoneCallback = (error) => {
      if (ended) return;
      ended = true;
      if (this.#closed) return;
      this.#hooks.ended(error);
      done(error);
    };
    this.#hooks.opening();
    let controller: AbortController;
    try {
      controller = await super.watch(path, { ...query, allowWatchBookmarks: true }, onEvent, onDone);
    } catch (error) {
      // Nobody awaits this call (ListWatch makes it from a done callback), so a throw here (no current
      // cluster, failing credentials) would be an unhandled rejection; it is a failed watch like any other.
      onDone(error);
      return aborted();
    }
    if (this.#closed) controller.abort();
    return controller;
  }
}

function aborted(): AbortController {
  const controller = new AbortController();
  controller.abort();
  return controller;
}

function statusCode(value: unknown): number | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { statusCode: http, code } = value as { statusCode?: unknown; code?: unknown };
  return typeof http === 'number' ? http : typeof code === 'number' ? code : undefined;
}

/** Message and code of whatever the client failed with (its errors come from more than one realm: no instanceof). */
function errorFields(error: unknown): { message: string; code?: string | number } {
  if (typeof error !== 'object' || error === null) return { message: String(error) };
  const { message, code } = error as { message?: unknown; code?: unknown };
  const status = statusCode(error) ?? code;
  return {
    message: typeof message === 'string' ? message : JSON.stringify(error),
    ...(typeof status === 'string' || typeof status === 'number' ? { code: status } : {}),
  };
}

function isTimeout(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'TimeoutError';
}

/**
 * One collection through @kubernetes/client-node's ListWatch, which lists,
 * watches from the list's resourceVersion, lists again after 410 Gone,
 * resumes after a normal end (backing off while watches end without an
 * event) and at once after a silent watch is aborted. On any other error it
 * stops: this owner starts it again after a jittered backoff, which resets
 * once a watch delivers an event. Its cache, and so the last listed state,
 * stays in place meanwhile; an unchanged object keeps its identity across
 * lists (translate.ts caches per object on that).
 */
export class ResourceWatch {
  readonly #options: ResourceWatchOptions;
  readonly #informer: ListWatch<KubernetesObject>;
  readonly #watch: OwnedWatch;
  readonly #backoff: ExponentialBackoff;
  readonly #firstSync = Promise.withResolvers<void>();
  /** Ends the library's reconnect delays when stop() is called. */
  readonly #stopSignal = new AbortController();
  #synced = false;
  #started = false;
  #stopped = false;
  #restartTimer: NodeJS.Timeout | null = null;

  constructor(options: ResourceWatchOptions) {
    this.#options = options;
    this.#backoff = new ExponentialBackoff({ initialMs: options.minBackoffMs ?? 200, maxMs: options.maxBackoffMs ?? 10_000 });
    this.#watch = new OwnedWatch(options.kubeConfig, options.silenceTimeoutMs, {
      opening: () => this.#listed(),
      event: (phase, object) => this.#event(phase, object),
      ended: (error) => this.#ended(error),
    });
    this.#informer = new ListWatch(options.watchPath, this.#watch, options.list, false, options.labelSelector, options.fieldSelector, {
      delayFn: (ms) => delay(ms, undefined, { signal: this.#stopSignal.signal }).catch(() => undefined),
    });
    this.#informer.on(CHANGE, () => {
      if (!this.#stopped) options.onChange();
    });
    this.#informer.on(ERROR, (error: unknown) => this.#restartLater(error));
  }

  get synced(): boolean {
    return this.#synced;
  }

  /** The cached objects (the library's types describe its decoded classes; these are partly raw JSON). */
  get items(): readonly KubeObject[] {
    return this.#informer.list() as readonly KubeObject[];
  }

  /** Resolves after the first successful list is in `items`. */
  get firstSync(): Promise<void> {
    return this.#firstSync.promise;
  }

  start(): void {
    if (this.#started || this.#stopped) return;
    this.#started = true;
    this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#restartTimer !== null) clearTimeout(this.#restartTimer);
    this.#restartTimer = null;
    this.#stopSignal.abort();
    this.#watch.close();
    await this.#informer.stop();
  }

  #run(): void {
    // ListWatch reports its failures through ERROR; a rejection here is one it did not catch.
    this.#informer.start().catch((error: unknown) => this.#restartLater(error));
  }

  #listed(): void {
    if (this.#synced) return;
    this.#synced = true;
    this.#firstSync.resolve();
    // The cache reports changes per object: an empty first list reported none, yet the owner must hear of the sync.
    if (!this.#stopped) this.#options.onChange();
  }

  #event(phase: string, object: unknown): void {
    const { logger, name } = this.#options;
    if (phase !== 'ERROR') {
      this.#backoff.reset();
      return;
    }
    // ListWatch lists again after a 410 and resumes after any other ERROR event, once the server ends the watch.
    if (statusCode(object) === 410) logger.info({ watch: name }, 'watch expired (410 Gone); listing again');
    else logger.warn({ watch: name, status: errorFields(object) }, 'watch error event; resuming from the last version');
  }

  #ended(error: unknown): void {
    const { logger, name, silenceTimeoutMs } = this.#options;
    if (isTimeout(error)) {
      logger.info({ watch: name }, `watch silent for ${silenceTimeoutMs} ms; reconnecting`);
    } else if (statusCode(error) === 410) {
      logger.info({ watch: name }, 'watch expired (410 Gone); listing again');
    }
  }

  #restartLater(error: unknown): void {
    if (this.#stopped || this.#restartTimer !== null) return;
    const retryMs = this.#backoff.next();
    this.#options.logger.warn({ watch: this.#options.name, err: errorFields(error), retry_ms: retryMs }, 'watch failed; keeping the last state and retrying');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (!this.#stopped) this.#run();
    }, retryMs);
  }
}
