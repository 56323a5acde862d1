/** The soak's command line: --minutes N, --warm-minutes N, --concurrency C, --json path. */
import { readFlags } from '../args.js';

/** How often the soak reads the gateway's RSS. */
export const RSS_TRACE_MS = 10_000;

export interface Options {
  minutes: number;
  warmMinutes: number;
  concurrency: number;
  json: string | null;
}

const FLAGS = { minutes: 'string', 'warm-minutes': 'string', concurrency: 'string', json: 'string' } as const;

export function parseSoakArgs(argv: readonly string[]): Options {
  const flags = readFlags(argv, FLAGS, {
    unknown: (arg) => `unknown argument ${arg} (use --minutes N, --warm-minutes N, --concurrency C, --json path)`,
    missing: (arg) => `${arg} needs a value`,
  });
  const number = (name: keyof typeof FLAGS, fallback: number): number => {
    const value = flags[name];
    return value === undefined ? fallback : Number(value);
  };
  const options: Options = {
    minutes: number('minutes', 10),
    warmMinutes: 0,
    concurrency: number('concurrency', 16),
    json: typeof flags['json'] === 'string' ? flags['json'] : null,
  };
  if (!(options.minutes > 0)) throw new Error('--minutes must be a positive number');
  if (!(options.concurrency >= 1 && options.concurrency <= 512)) throw new Error('--concurrency must be 1..512');
  // V8's heap and the allocator take minutes to level off under this load: judge the second half.
  options.warmMinutes = number('warm-minutes', options.minutes / 2);
  // RSS is read every 10 s: fewer than 3 readings after the warm sample would be no trend.
  if (!(options.warmMinutes >= 0 && (options.minutes - options.warmMinutes) * 60_000 >= 3 * RSS_TRACE_MS)) {
    throw new Error(`memory is judged from the warm sample to the end: --minutes must exceed --warm-minutes by at least ${(3 * RSS_TRACE_MS) / 1000} s`);
  }
  return options;
}
