/**
 * Gateways that differ in one setting (tracing off or on, a policy or none),
 * all running at once and measured in interleaved rounds (the order reversed
 * every other round), so the machine's noise falls on all of them alike:
 * each round a closed loop of non-streaming requests, then concurrent streams.
 */
import { closedLoop, type StreamsResult, type Target } from './load.js';
import type { GatewayProcess } from './processes.js';
import { median, round, type WrkResult } from './stats.js';
import { rawStreams } from './stream-client.js';

export interface VariantRun {
  readonly tool: 'wrk' | 'autocannon';
  readonly rounds: number;
  readonly seconds: number;
  readonly lua: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  readonly streamBody: string;
  /** Concurrent streams per round. */
  readonly streams: number;
  readonly log: (text: string) => void;
  /** Names the section in the log. */
  readonly label: string;
}

export interface VariantSummary {
  requests_per_second: number;
  p50_ms: number;
  p99_ms: number;
  errors: number;
  streams_completed: number;
  streams_ttfb_p50_ms: number;
  streams_ttfb_p99_ms: number;
  stream_errors: number;
}

/** Measures every variant; medians over the rounds, by variant name. */
export async function measureVariants(variants: readonly (readonly [string, GatewayProcess])[], run: VariantRun): Promise<Record<string, VariantSummary>> {
  const loops: Record<string, WrkResult[]> = {};
  const streams: Record<string, StreamsResult[]> = {};
  for (const [name, gw] of variants) {
    const target: Target = { url: gw.url, headers: run.headers };
    await closedLoop(run.tool, target, run.body, 64, 1, run.lua);
    await rawStreams(target, run.streamBody, 100, 1, 20, 5);
    loops[name] = [];
    streams[name] = [];
  }
  for (let r = 0; r < run.rounds; r++) {
    run.log(`${run.label}, round ${r + 1}: non-streaming 64 connections, then ${run.streams} concurrent streams`);
    for (const [name, gw] of r % 2 === 0 ? variants : [...variants].reverse()) {
      const target: Target = { url: gw.url, headers: run.headers };
      const loop = await closedLoop(run.tool, target, run.body, 64, run.seconds, run.lua);
      const stream = await rawStreams(target, run.streamBody, run.streams, run.seconds, 20, 5);
      loops[name]!.push(loop);
      streams[name]!.push(stream);
      run.log(
        `  ${name.padEnd(12)} ${loop.requestsPerSecond.toFixed(0)} req/s, p50 ${loop.p50Ms.toFixed(2)} ms, p99 ${loop.p99Ms.toFixed(2)} ms; streams ${stream.completed}, TTFB p50 ${stream.ttfbP50Ms.toFixed(2)} ms p99 ${stream.ttfbP99Ms.toFixed(2)} ms, errors ${loop.errors + stream.errors}`,
      );
    }
  }
  const summary: Record<string, VariantSummary> = {};
  const med = <T>(values: readonly T[], pick: (value: T) => number): number => median(values.map(pick));
  for (const [name] of variants) {
    const l = loops[name]!;
    const s = streams[name]!;
    summary[name] = {
      requests_per_second: round(
        med(l, (r) => r.requestsPerSecond),
        0,
      ),
      p50_ms: round(
        med(l, (r) => r.p50Ms),
        3,
      ),
      p99_ms: round(
        med(l, (r) => r.p99Ms),
        3,
      ),
      errors: l.reduce((sum, r) => sum + r.errors, 0),
      streams_completed: round(
        med(s, (r) => r.completed),
        0,
      ),
      streams_ttfb_p50_ms: round(
        med(s, (r) => r.ttfbP50Ms),
        3,
      ),
      streams_ttfb_p99_ms: round(
        med(s, (r) => r.ttfbP99Ms),
        3,
      ),
      stream_errors: s.reduce((sum, r) => sum + r.errors, 0),
    };
  }
  return summary;
}
