/**
 * What redacting the configured secrets from every answer costs: two gateways
 * in the same run, one whose upstream key is a secret (headers and body
 * searched for it) and one whose key is too short to be one (nothing
 * searched), everything else equal; rounds interleave, the order alternating.
 * Also the redactor alone, in this process, on 64 KiB pieces.
 */
import { redactableSecrets } from '../src/config/secrets.js';
import { StreamRedactor } from '../src/pipeline/redact.js';
import { closedLoop, type Target } from './load.js';
import { cpuMsOf } from './processes.js';
import { median, round, type WrkResult } from './stats.js';
import { rawStreams } from './stream-client.js';

/** The upstream key of the gateway that redacts, and of the one that does not (under MIN_SECRET_LENGTH). */
export const REDACTED_KEY = 'sk-bench-upstream';
export const UNREDACTED_KEY = 'bench';

export interface RedactionSide {
  readonly target: Target;
  readonly pid: number;
}

interface Round {
  rps: number;
  p50Ms: number;
  cpuUsPerRequest: number;
}

interface StreamRound {
  completedPerSecond: number;
  cpuUsPerStream: number;
}

export interface RedactionResult {
  readonly on: { readonly loop: Round[]; readonly streams: StreamRound[] };
  readonly off: { readonly loop: Round[]; readonly streams: StreamRound[] };
  /** The redactor alone on 64 KiB pieces without a secret, MB/s. */
  readonly redactorMBps: number;
}

/** Interleaved A/B: `rounds` rounds of closed-loop non-streaming load and of 50 concurrent streams on each side. */
export async function redactionAB(
  options: { rounds: number; seconds: number; tool: 'wrk' | 'autocannon'; lua: string; body: string; streamBody: string },
  on: RedactionSide,
  off: RedactionSide,
  log: (text: string) => void,
): Promise<RedactionResult> {
  const result: RedactionResult = { on: { loop: [], streams: [] }, off: { loop: [], streams: [] }, redactorMBps: redactorThroughput() };
  if (redactableSecrets([REDACTED_KEY]).length !== 1 || redactableSecrets([UNREDACTED_KEY]).length !== 0) {
    throw new Error('the redaction A/B keys no longer fall on either side of MIN_SECRET_LENGTH');
  }
  for (let r = 0; r < options.rounds; r++) {
    for (const which of r % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
      const side = which === 'on' ? on : off;
      const cpu = cpuMsOf(side.pid);
      const loop: WrkResult = await closedLoop(options.tool, side.target, options.body, 64, options.seconds, options.lua);
      const cpuUs = ((cpuMsOf(side.pid) - cpu) * 1000) / loop.requests;
      result[which].loop.push({ rps: loop.requestsPerSecond, p50Ms: loop.p50Ms, cpuUsPerRequest: cpuUs });
      const streamCpu = cpuMsOf(side.pid);
      const streams = await rawStreams(side.target, options.streamBody, 50, options.seconds, 20, 5);
      const streamCpuUs = ((cpuMsOf(side.pid) - streamCpu) * 1000) / Math.max(1, streams.completed);
      result[which].streams.push({ completedPerSecond: streams.completed / streams.seconds, cpuUsPerStream: streamCpuUs });
      log(
        `  redaction ${which.padEnd(3)} ${loop.requestsPerSecond.toFixed(0)} req/s, ${cpuUs.toFixed(1)} µs CPU/request; ` +
          `50 streams: ${(streams.completed / streams.seconds).toFixed(0)} done/s, ${streamCpuUs.toFixed(0)} µs CPU/stream, errors ${loop.errors + streams.errors}`,
      );
    }
  }
  return result;
}

/** The redactor alone: MB/s through `push` of 64 KiB pieces that hold no secret (the common case). */
function redactorThroughput(): number {
  const piece = Buffer.alloc(64 * 1024, 'data: {"choices":[{"delta":{"content":" token"}}]}\n\n');
  const redactor = new StreamRedactor(redactableSecrets([REDACTED_KEY, 'sk-other-upstream-0123456789']));
  const runs: number[] = [];
  for (let r = 0; r < 7; r++) {
    const started = performance.now();
    for (let i = 0; i < 2000; i++) redactor.push(piece);
    runs.push((2000 * piece.length) / 1e6 / ((performance.now() - started) / 1000));
  }
  return median(runs);
}

export function summarizeRedaction(result: RedactionResult): Record<string, number> {
  const med = (rounds: readonly Round[], pick: (r: Round) => number): number => median(rounds.map(pick));
  const medS = (rounds: readonly StreamRound[], pick: (r: StreamRound) => number): number => median(rounds.map(pick));
  const onRps = med(result.on.loop, (r) => r.rps);
  const offRps = med(result.off.loop, (r) => r.rps);
  const onStreams = medS(result.on.streams, (r) => r.completedPerSecond);
  const offStreams = medS(result.off.streams, (r) => r.completedPerSecond);
  return {
    on_rps: Math.round(onRps),
    off_rps: Math.round(offRps),
    rps_ratio: round(onRps / offRps, 3),
    on_cpu_us_per_request: round(
      med(result.on.loop, (r) => r.cpuUsPerRequest),
      1,
    ),
    off_cpu_us_per_request: round(
      med(result.off.loop, (r) => r.cpuUsPerRequest),
      1,
    ),
    on_streams_per_s: Math.round(onStreams),
    off_streams_per_s: Math.round(offStreams),
    streams_ratio: round(onStreams / offStreams, 3),
    on_cpu_us_per_stream: Math.round(medS(result.on.streams, (r) => r.cpuUsPerStream)),
    off_cpu_us_per_stream: Math.round(medS(result.off.streams, (r) => r.cpuUsPerStream)),
    redactor_mb_per_s: Math.round(result.redactorMBps),
    rounds: result.on.loop.length,
  };
}
