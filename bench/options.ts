/** The bench's command line (bench/main.ts lists the flags). */
import os from 'node:os';
import { join, resolve } from 'node:path';
import { readFlags } from './args.js';
import type { LongStreamShape } from './long-streams.js';
import { readPeerFile, type PeerFile } from './peers.js';

export interface Options {
  quick: boolean;
  rounds: number;
  seconds: number;
  only: Set<string> | null;
  profile: boolean;
  out: string;
  peerFiles: PeerFile[];
  /** WORKERS for the cluster section. */
  workers: number;
  /** The long-stream profile's shape. */
  long: LongStreamShape;
  /** Another build's main.js, measured beside this one in the tracing, failover (tracing off, nothing failing) and policy sections. */
  baseline: string | null;
}

export const SECTIONS = [
  'throughput',
  'streams',
  'clients',
  'memory',
  'body',
  'upload',
  'config',
  'nolog',
  'cluster',
  'peers',
  'longstreams',
  'tracing',
  'answermodel',
  'redaction',
  'duplicates',
  'failover',
  'policy',
] as const;

const FLAGS = {
  quick: 'boolean',
  rounds: 'string',
  seconds: 'string',
  only: 'string',
  profile: 'boolean',
  out: 'string',
  workers: 'string',
  peer: 'string',
  'long-streams': 'string',
  'long-seconds': 'string',
  'long-rate': 'string',
  baseline: 'string',
} as const;

/** A whole number from `min` to `max` for --`name`, or `fallback` when the flag is absent or empty. */
function wholeNumber(flags: Record<string, string | true | undefined>, name: string, fallback: number, min: number, max: number): number {
  const text = flags[name];
  if (text === undefined || text === '' || text === true) return fallback;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new Error(`--${name} must be a whole number from ${min} to ${max}, got '${text}'`);
  return value;
}

/** The bench's flags (see bench/main.ts); `root` is the checkout, where bench-results/ goes. */
export function parseBenchArgs(argv: readonly string[], root: string): Options {
  const flags = readFlags(argv, FLAGS, { unknown: (arg) => `unknown argument '${arg}' (see bench/main.ts)` });
  const text = (name: keyof typeof FLAGS): string | undefined => {
    const value = flags[name];
    return value === true ? '' : value;
  };
  const quick = flags['quick'] !== undefined;
  const only = text('only');
  const sections = only === undefined || only === '' ? null : new Set(only.split(','));
  for (const section of sections ?? []) {
    if (!(SECTIONS as readonly string[]).includes(section)) throw new Error(`unknown section '${section}' in --only (sections: ${SECTIONS.join(',')})`);
  }
  const workersFlag = text('workers') || '2';
  const workers = workersFlag === 'auto' ? Math.max(2, os.availableParallelism()) : Number(workersFlag);
  if (!Number.isInteger(workers) || workers < 2 || workers > 64)
    throw new Error(`--workers must be a whole number from 2 to 64, or 'auto', got '${workersFlag}'`);
  const rate = wholeNumber(flags, 'long-rate', 20, 1, 1000);
  const longSeconds = wholeNumber(flags, 'long-seconds', quick ? 3 : 10, 1, 600);
  return {
    quick,
    rounds: Number(text('rounds') ?? (quick ? 1 : 3)),
    seconds: Number(text('seconds') ?? (quick ? 2 : 5)),
    only: sections,
    profile: flags['profile'] !== undefined,
    out: resolve(text('out') || join(root, 'bench-results', 'latest.json')),
    workers,
    peerFiles: (text('peer') || '')
      .split(',')
      .filter((path) => path !== '')
      .map(readPeerFile),
    long: {
      streams: wholeNumber(flags, 'long-streams', quick ? 200 : 2000, 1, 20_000),
      tokens: longSeconds * rate,
      intervalMs: 1000 / rate,
      rampMs: quick ? 1000 : 5000,
      perConnection: 2,
    },
    baseline: text('baseline') ? resolve(text('baseline')!) : null,
  };
}
