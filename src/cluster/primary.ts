import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import type { Logger } from '../observability/logger.js';
import type { MetricsJson } from '../observability/metrics-report.js';
import { isClusterMessage, type CollectRequest, type CollectResult, type MetricsRequest, type MetricsResult, type ShutdownRequest } from './messages.js';

/** How long the primary waits for each worker's figures; a worker that is restarting is left out. */
const COLLECT_TIMEOUT_MS = 2_000;
const RESTART_DELAY_MS = 1_000;
const MAX_RESTART_DELAY_MS = 30_000;
/** A worker that lived at least this long before dying is restarted without backoff. */
const STABLE_AFTER_MS = 10_000;

/** JSON figures that describe the whole process tree rather than add up across workers. */
const SHARED_FIGURES = new Set(['uptime_seconds', 'cpu_cores', 'model_redirects', 'event_loop_lag_p99_ms']);

/** Sums each worker's JSON figures (max for the shared ones) and says how many workers answered. */
export function combineJson(parts: readonly MetricsJson[]): MetricsJson {
  const combined: MetricsJson = {};
  for (const part of parts) {
    for (const [name, value] of Object.entries(part)) {
      const so_far = combined[name];
      combined[name] = so_far === undefined ? value : SHARED_FIGURES.has(name) ? Math.max(so_far, value) : so_far + value;
    }
  }
  combined['workers'] = parts.length;
  return combined;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  startedAt: number;
  listened: boolean;
  restartDelayMs: number;
  restartTimer: NodeJS.Timeout | null;
}

/**
 * The cluster primary: forks `count` gateway workers that share the port,
 * restarts one that dies (with backoff when it keeps dying), combines their
 * metrics for `/metrics`, and on SIGTERM/SIGINT drains them all. It serves no
 * traffic itself. Each worker finds its slot in env `indexEnv`. Resolves with
 * the exit code once every worker has exited.
 */
export function runPrimary(count: number, indexEnv: string, logger: Logger): Promise<number> {
  const slots: Slot[] = [];
  let shuttingDown = false;
  let failed = false;
  let signals = 0;
  let nextCollectId = 1;
  const collections = new Map<number, { parts: CollectResult[]; expected: number; done(): void }>();

  return new Promise((resolveExit) => {
    const fork = (slot: Slot): void => {
      slot.restartTimer = null;
      slot.listened = false;
      slot.startedAt = Date.now();
      const worker = cluster.fork({ [indexEnv]: String(slot.index) });
      slot.worker = worker;
      worker.on('listening', () => {
        slot.listened = true;
      });
      worker.on('message', (message: unknown) => onMessage(worker, message));
    };

    const exitIfDone = (): void => {
      if (slots.every((slot) => slot.worker === null && slot.restartTimer === null)) {
        logger.info({ exit_code: failed ? 1 : 0 }, 'all workers stopped');
        resolveExit(failed ? 1 : 0);
      }
    };

    let shutdownRequest: ShutdownRequest | null = null;
    const shutdown = (now: boolean): void => {
      shuttingDown = true;
      const request: ShutdownRequest = { type: 'api-proxy:shutdown', now };
      shutdownRequest = request;
      for (const slot of slots) {
        if (slot.restartTimer !== null) clearTimeout(slot.restartTimer);
        slot.restartTimer = null;
        if (slot.worker?.isConnected()) slot.worker.send(request);
      }
      exitIfDone();
    };

    // A worker takes shutdown requests only once it listens; one still starting when the request
    // went out dropped it (and would then serve until killed). It gets the request again now.
    cluster.on('listening', (worker) => {
      if (shutdownRequest !== null && worker.isConnected()) worker.send(shutdownRequest);
    });

    cluster.on('exit', (worker, code, signal) => {
      const slot = slots.find((candidate) => candidate.worker === worker);
      if (slot === undefined) return;
      slot.worker = null;
      if (shuttingDown) {
        if (code !== 0) failed = true;
        exitIfDone();
        return;
      }
      if (!slot.listened && slots.every((other) => !other.listened)) {
        // Nobody ever started: a bad PORT, a taken port. Restarting would only repeat it.
        logger.fatal({ worker: slot.index, exit_code: code, signal }, 'worker failed to start; stopping');
        failed = true;
        shutdown(false);
        return;
      }
      const lived = Date.now() - slot.startedAt;
      // 1 s after a worker that had run a while; each quick death after that doubles the wait, up to 30 s.
      if (lived >= STABLE_AFTER_MS) slot.restartDelayMs = RESTART_DELAY_MS;
      const delayMs = slot.restartDelayMs;
      slot.restartDelayMs = Math.min(delayMs * 2, MAX_RESTART_DELAY_MS);
      logger.error({ worker: slot.index, exit_code: code, signal, restart_in_ms: delayMs }, 'worker exited; restarting it');
      slot.restartTimer = setTimeout(() => fork(slot), delayMs);
    });

    const onMessage = (from: Worker, message: unknown): void => {
      if (!isClusterMessage(message)) return;
      if (message.type === 'api-proxy:metrics-request') void answerMetrics(from, message);
      else if (message.type === 'api-proxy:collected') {
        const collection = collections.get(message.id);
        if (collection === undefined) return;
        collection.parts.push(message);
        if (collection.parts.length === collection.expected) collection.done();
      }
    };

    const collect = (): Promise<CollectResult[]> => {
      const live = slots.flatMap((slot) => (slot.worker?.isConnected() ? [slot.worker] : []));
      const id = nextCollectId++;
      return new Promise((resolveParts) => {
        const parts: CollectResult[] = [];
        const done = (): void => {
          clearTimeout(timer);
          collections.delete(id);
          resolveParts(parts);
        };
        const timer = setTimeout(done, COLLECT_TIMEOUT_MS);
        collections.set(id, { parts, expected: live.length, done });
        const request: CollectRequest = { type: 'api-proxy:collect', id };
        for (const worker of live) worker.send(request);
      });
    };

    const answerMetrics = async (to: Worker, request: MetricsRequest): Promise<void> => {
      const parts = await collect();
      const body =
        request.format === 'json'
          ? combineJson(parts.map((part) => part.json))
          : await AggregatorRegistry.aggregate(parts.map((part) => part.prometheus)).metrics();
      const result: MetricsResult = { type: 'api-proxy:metrics-result', id: request.id, body };
      if (to.isConnected()) to.send(result);
    };

    const onSignal = (signal: NodeJS.Signals): void => {
      const now = ++signals > 1;
      if (now) logger.warn({ signal }, 'second signal: stopping the workers now');
      else logger.info({ signal, workers: count }, 'shutting down the workers');
      shutdown(now);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    for (let index = 0; index < count; index++) {
      const slot: Slot = { index, worker: null, startedAt: 0, listened: false, restartDelayMs: RESTART_DELAY_MS, restartTimer: null };
      slots.push(slot);
      fork(slot);
    }
    logger.info({ workers: count }, 'api-proxy cluster primary started');
  });
}
