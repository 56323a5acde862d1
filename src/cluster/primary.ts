import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../observability/logger.js';
import { LimitsHost } from './limits-host.js';
import type { ShutdownRequest } from './messages.js';
import { MetricsAggregator } from './metrics-aggregator.js';
import { RestartDelay } from './restart-delay.js';

interface Slot {
  readonly index: number;
  worker: Worker | null;
  startedAt: number;
  listened: boolean;
  readonly restartDelay: RestartDelay;
  restartTimer: NodeJS.Timeout | null;
}

/**
 * The cluster primary: forks `count` gateway workers that share the port,
 * restarts one that dies (RestartDelay: jittered, growing while it keeps
 * dying), answers their `/metrics` requests (MetricsAggregator), and on
 * SIGTERM/SIGINT drains them all. It serves no traffic itself. Each worker
 * finds its slot in env `indexEnv`. Resolves with the exit code once every
 * worker has exited.
 */
export function runPrimary(count: number, indexEnv: string, logger: Logger): Promise<number> {
  const slots: Slot[] = [];
  let shuttingDown = false;
  let failed = false;
  let signals = 0;
  const metrics = new MetricsAggregator(() => slots.flatMap((slot) => (slot.worker?.isConnected() ? [slot.worker] : [])));
  // The limit counters of the workers (without Redis): one budget per replica, as for one process.
  const limits = new LimitsHost();

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
      worker.on('message', (message: unknown) => {
        metrics.onMessage(worker, message);
        limits.onMessage(worker, message);
      });
    };

    const exitIfDone = (): void => {
      if (slots.every((slot) => slot.worker === null && slot.restartTimer === null)) {
        logger.info({ exit_code: failed ? 1 : 0 }, 'all workers stopped');
        void limits.close();
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
      limits.workerExited(worker);
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
      const delayMs = slot.restartDelay.after(Date.now() - slot.startedAt);
      logger.error({ worker: slot.index, exit_code: code, signal, restart_in_ms: delayMs }, 'worker exited; restarting it');
      slot.restartTimer = setTimeout(() => fork(slot), delayMs);
    });

    const onSignal = (signal: NodeJS.Signals): void => {
      const now = ++signals > 1;
      if (now) logger.warn({ signal }, 'second signal: stopping the workers now');
      else logger.info({ signal, workers: count }, 'shutting down the workers');
      shutdown(now);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);

    for (let index = 0; index < count; index++) {
      const slot: Slot = { index, worker: null, startedAt: 0, listened: false, restartDelay: new RestartDelay(), restartTimer: null };
      slots.push(slot);
      fork(slot);
    }
    logger.info({ workers: count }, 'api-proxy cluster primary started');
  });
}
