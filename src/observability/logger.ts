import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Paths pino blanks out wherever they appear, as a second line of defence: secrets are never logged on purpose. */
export const REDACTED_PATHS = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'api_key',
  '*.api_key',
  'key',
  '*.key',
  'apiKey',
  '*.apiKey',
  'token',
  '*.token',
];

/** How long a log line may wait in the write buffer when traffic is low. */
const FLUSH_INTERVAL_MS = 500;

/**
 * JSON logs to stdout, or to `destination` in tests. Stdout is written
 * asynchronously in batches of 4 KiB (a write per line costs throughput);
 * a timer flushes what a quiet period leaves in the buffer, and exit flushes the rest.
 */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  if (destination === undefined) {
    const stdout = pino.destination({ dest: 1, sync: false, minLength: 4096 });
    setInterval(() => stdout.flush(), FLUSH_INTERVAL_MS).unref();
    destination = stdout;
  }
  return pino(
    {
      level,
      base: { service: 'api-proxy' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
