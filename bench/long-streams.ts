/**
 * The long-stream client: many concurrent event streams that each last
 * seconds (paced per stream by paced-upstream.ts), opened over a ramp.
 * Records each stream's time to first event and every gap between two token
 * events, and what the client itself cost (CPU, event-loop delay), so that a
 * client that could not keep up shows in the figures instead of hiding in
 * them.
 *
 * At tens of thousands of events a second on the cores the gateway uses,
 * the client must cost little per event: each connection reads into one
 * buffer shared by all (net `onread`: no allocation and no stream machinery
 * per read), decoded in place (EventStreamDecoder).
 */
import { connect, type Socket } from 'node:net';
import { createHistogram, monitorEventLoopDelay, type RecordableHistogram } from 'node:perf_hooks';
import type { Target } from './load.js';
import { EventStreamDecoder, rampOffsets } from './pacing.js';
import { percentile } from './stats.js';
import { streamRequest } from './stream-client.js';

export interface LongStreamShape {
  /** Streams open at once once the ramp is over (one connection each). */
  readonly streams: number;
  /** Token events per stream (then `data: [DONE]`). */
  readonly tokens: number;
  /** Between two tokens of a stream: 1000 / tokens per second. */
  readonly intervalMs: number;
  /** The connections open over this long, evenly with random phases. */
  readonly rampMs: number;
  /** Streams each connection runs back to back. */
  readonly perConnection: number;
}

/** Percentiles of a distribution, in milliseconds. */
export interface Spread {
  readonly count: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  readonly maxMs: number;
}

export interface LongStreamsResult {
  /** streams × perConnection. */
  readonly expected: number;
  /** Streams that ended with `data: [DONE]` after all their tokens. */
  readonly completed: number;
  /** Streams that did not complete: failed, still open at the deadline, or never started before it. */
  readonly errors: number;
  readonly ttfb: Spread;
  /** Between consecutive token events of a stream, as the client saw them. */
  readonly gaps: Spread;
  /** Token and [DONE] events seen. */
  readonly events: number;
  readonly seconds: number;
  /** Most streams open at once. */
  readonly peakOpen: number;
  /** CPU the whole bench process used meanwhile (the client, and the bench's sampling), and the part of it in the kernel. */
  readonly clientCpu: { readonly totalMs: number; readonly systemMs: number };
  /** How late the client's event loop ran its timers (sampled every 10 ms), beyond the sampling period. */
  readonly clientLoopDelay: Spread;
}

export interface LongStreamsRun {
  /** Streams open now. */
  readonly open: number;
  readonly done: Promise<LongStreamsResult>;
}

const LOOP_SAMPLE_MS = 10;

/** A histogram of milliseconds kept in microseconds (HDR histograms hold whole numbers). */
function spreadOf(histogram: RecordableHistogram | ReturnType<typeof monitorEventLoopDelay>, unitMs: number): Spread {
  const count = histogram.count;
  const ms = (value: number): number => (count === 0 ? Number.NaN : value * unitMs);
  return { count, p50Ms: ms(histogram.percentile(50)), p99Ms: ms(histogram.percentile(99)), p999Ms: ms(histogram.percentile(99.9)), maxMs: ms(histogram.max) };
}

export function spreadOfValues(values: readonly number[]): Spread {
  const max = values.reduce((most, value) => Math.max(most, value), Number.NEGATIVE_INFINITY);
  return {
    count: values.length,
    p50Ms: percentile(values, 50),
    p99Ms: percentile(values, 99),
    p999Ms: percentile(values, 99.9),
    maxMs: values.length === 0 ? Number.NaN : max,
  };
}

/** The event-loop delay histogram holds whole sampling periods: the delay is what exceeds the period. */
function loopDelayOf(histogram: ReturnType<typeof monitorEventLoopDelay>, periodMs: number): Spread {
  const spread = spreadOf(histogram, 1 / 1e6);
  const over = (ms: number): number => Math.max(0, ms - periodMs);
  return { count: spread.count, p50Ms: over(spread.p50Ms), p99Ms: over(spread.p99Ms), p999Ms: over(spread.p999Ms), maxMs: over(spread.maxMs) };
}

/** Reads of every connection land here in turn: each is decoded before the next read. */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** One keep-alive connection running streams one after another. */
class LongStreamConnection {
  readonly #url: URL;
  readonly #request: Buffer;
  readonly #decoder: EventStreamDecoder;
  readonly #onEnd: (complete: boolean, ttfbMs: number) => void;
  #socket: Socket | null = null;
  #sentAt = 0;
  #busy = false;

  constructor(url: URL, request: Buffer, decoder: EventStreamDecoder, onEnd: (complete: boolean, ttfbMs: number) => void) {
    this.#url = url;
    this.#request = request;
    this.#decoder = decoder;
    this.#onEnd = onEnd;
  }

  send(): void {
    if (this.#socket === null) this.#open();
    this.#decoder.reset();
    this.#busy = true;
    this.#sentAt = performance.now();
    this.#socket!.write(this.#request);
  }

  close(): void {
    this.#socket?.destroy();
    this.#socket = null;
  }

  #open(): void {
    const socket: Socket = connect({
      host: this.#url.hostname,
      port: Number(this.#url.port),
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (bytes: number, buffer: Uint8Array): boolean => this.#read(socket, bytes, buffer as Buffer) },
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      if (this.#socket !== socket) return;
      this.#socket = null;
      this.#end(false); // a no-op unless a response was still due
    });
    this.#socket = socket;
  }

  /** Always true: returning false would pause the socket. */
  #read(socket: Socket, bytes: number, buffer: Buffer): boolean {
    if (socket !== this.#socket) return true;
    const state = this.#decoder.push(buffer, 0, bytes, performance.now());
    if (state === 'more') return true;
    if (state === 'failed') this.close();
    this.#end(state === 'complete');
    return true;
  }

  #end(complete: boolean): void {
    if (!this.#busy) return;
    this.#busy = false;
    this.#onEnd(complete, this.#decoder.firstByteAt - this.#sentAt);
  }
}

/**
 * Runs the profile against `target`: connection i opens at its ramp offset
 * and runs `perConnection` streams back to back; resolves when every stream
 * has ended, or at the deadline (the ramp plus twice the streams' nominal
 * length, plus `graceMs`), when the streams still open count as errors.
 */
export function longStreams(target: Target, body: string, shape: LongStreamShape, graceMs = 30_000): LongStreamsRun {
  const url = new URL(target.url);
  const request = streamRequest(target, body, { 'x-bench-chunks': String(shape.tokens), 'x-bench-interval': String(shape.intervalMs) });
  const gaps = createHistogram();
  const recordGap = (gapMs: number): void => gaps.record(Math.max(1, Math.round(gapMs * 1000)));
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_SAMPLE_MS });
  const ttfbs: number[] = [];
  const cpuBefore = process.cpuUsage();
  const begin = performance.now();
  let open = 0;
  let peakOpen = 0;
  let completed = 0;
  let events = 0;
  let connectionsLeft = shape.streams;
  const connections: LongStreamConnection[] = [];
  const starts: NodeJS.Timeout[] = [];
  loopDelay.enable();

  const done = new Promise<LongStreamsResult>((resolve) => {
    const finish = (): void => {
      clearTimeout(deadline);
      for (const timer of starts) clearTimeout(timer);
      for (const connection of connections) connection.close();
      loopDelay.disable();
      const cpu = process.cpuUsage(cpuBefore);
      resolve({
        expected: shape.streams * shape.perConnection,
        completed,
        errors: shape.streams * shape.perConnection - completed,
        ttfb: spreadOfValues(ttfbs),
        gaps: spreadOf(gaps, 1 / 1000),
        events,
        seconds: (performance.now() - begin) / 1000,
        peakOpen,
        clientCpu: { totalMs: (cpu.user + cpu.system) / 1000, systemMs: cpu.system / 1000 },
        clientLoopDelay: loopDelayOf(loopDelay, LOOP_SAMPLE_MS),
      });
    };
    const streamMs = shape.tokens * shape.intervalMs;
    const deadline = setTimeout(finish, shape.rampMs + 2 * shape.perConnection * streamMs + graceMs);
    for (const offset of rampOffsets(shape.streams, shape.rampMs)) {
      let runs = 0;
      const decoder = new EventStreamDecoder(shape.tokens, recordGap);
      const start = (): void => {
        open++;
        if (open > peakOpen) peakOpen = open;
        connection.send();
      };
      const connection = new LongStreamConnection(url, request, decoder, (complete, ttfbMs) => {
        open--;
        events += decoder.events;
        if (complete) {
          completed++;
          ttfbs.push(ttfbMs);
        }
        if (++runs < shape.perConnection) start();
        else {
          connection.close();
          if (--connectionsLeft === 0) finish();
        }
      });
      connections.push(connection);
      starts.push(setTimeout(start, offset));
    }
    if (shape.streams === 0) finish();
  });
  return {
    get open() {
      return open;
    },
    done,
  };
}
