import { pino, type Logger, type DestinationStream } from 'pino';
import { LineSink } from './line-sink.js';

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

function droppedLine(dropped: number): string {
  return `{"level":"warn","time":"${new Date().toISOString()}","service":"api-proxy","dropped_lines":${dropped},"msg":"log lines dropped: stdout was not read fast enough"}\n`;
}

/**
 * JSON logs to stdout, or to `destination` in tests. Stdout is written
 * asynchronously, one batched write per event-loop turn (see LineSink);
 * exit writes whatever is left. Cluster processes (`worker` set, or the
 * primary's -1) share stdout, so their writes are kept whole-line and atomic.
 */
export function createLogger(level: string, destination?: DestinationStream, worker?: number): Logger {
  if (destination === undefined) {
    const stdout = new LineSink(1, { droppedLine, shared: worker !== undefined });
    process.once('exit', () => stdout.flushSync());
    destination = stdout;
  }
  return pino(
    {
      level,
      base: worker === undefined ? { service: 'api-proxy' } : worker < 0 ? { service: 'api-proxy', process: 'primary' } : { service: 'api-proxy', worker },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
