import { createClient } from '@redis/client';
import type { RedisSettings } from '../config/model.js';
import { admitScript, settleScript } from './redis-scripts.js';
import type { StoreHealth } from './store-health.js';

/** The longest wait between reconnection attempts. */
const MAX_RECONNECT_DELAY_MS = 2_000;

/**
 * A Redis client with the counters' scripts, connecting in the background.
 * Loaded only when a config names Redis (redis-counters.ts imports it when
 * needed): the client library alone is ~27 MiB of a process's RSS.
 */
export function connectRedis(settings: RedisSettings, health: StoreHealth) {
  const tls = settings.url.startsWith('rediss:');
  const client = createClient({
    url: settings.url,
    ...(settings.username === null ? {} : { username: settings.username }),
    ...(settings.password === null ? {} : { password: settings.password }),
    keyPrefix: settings.keyPrefix,
    // Commands fail at once while disconnected: a request never waits for a reconnect.
    disableOfflineQueue: true,
    socket: {
      connectTimeout: Math.max(settings.timeoutMs, 1_000),
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, MAX_RECONNECT_DELAY_MS) * (0.5 + Math.random() / 2),
      ...(tls ? { tls: true as const, rejectUnauthorized: !settings.tlsInsecureSkipVerify, ...(settings.tlsCa === null ? {} : { ca: settings.tlsCa }) } : {}),
    },
    scripts: { admit: admitScript, settle: settleScript },
  });
  const timed = client.withCommandOptions({ timeout: settings.timeoutMs, rejectInFlight: true });
  client.on('error', (error: unknown) => health.failed(error));
  client.on('ready', () => health.worked());
  client.connect().catch((error: unknown) => health.failed(error));
  return { client, timed };
}
