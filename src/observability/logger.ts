import { pino, type Logger, type DestinationStream } from 'pino';
import { LineSink } from './line-sink.js';

export type { Logger, DestinationStream };

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

/** The logger, and a way to write lines already in its format (the access log) to the same destination, in order. */
export interface Logging {
  readonly logger: Logger;
  /** Writes one complete line (with its newline). */
  writeLine(line: string): void;
  /** The base fields as the logger renders them after the time, e.g. `,"service":"api-proxy"`. */
  readonly bindings: string;
}

function droppedLine(dropped: number): string {
  return `{"level":"warn","time":"${new Date().toISOString()}","service":"api-proxy","dropped_lines":${dropped},"msg":"log lines dropped: stdout was not read fast enough"}\n`;
}

/**
 * JSON logs to stdout, or to `destination` in tests. Stdout is written
 * asynchronously, one batched write per event-loop turn (see LineSink);
 * exit writes whatever is left. Cluster processes (`worker` set, or the
 * primary's -1) share stdout, so their writes are kept whole-line and atomic.
 */
export function createLogging(level: string, destination?: DestinationStream, worker?: number): Logging {
  if (destination === undefined) {
    const stdout = new LineSink(1, { droppedLine, shared: worker !== undefined });
    process.once('exit', () => stdout.flushSync());
    destination = stdout;
  }
  const base: Record<string, string | number> =
    worker === undefined ? { service: 'api-proxy' } : worker < 0 ? { service: 'api-proxy', process: 'primary' } : { service: 'api-proxy', worker };
  const logger = pino(
    {
      level,
      base,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
  const sink = destination;
  return { logger, writeLine: (line) => void sink.write(line), bindings: ',' + JSON.stringify(base).slice(1, -1) };
}

export function createLogger(level: string, destination?: DestinationStream, worker?: number): Logger {
  return createLogging(level, destination, worker).logger;
}
