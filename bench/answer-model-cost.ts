/**
 * The answer-model stage alone, in this process: CPU per non-streamed answer
 * and per 20-event stream, on the bench upstream's own answers, each read a
 * fresh buffer as the transport hands it over (the copy is measured apart
 * and taken off). Steadier than end-to-end figures on a shared machine.
 */
import { answerModel } from '../src/pipeline/answer-model.js';
import type { RoutePlan } from '../src/routing/resolve.js';
import { median } from './stats.js';
import { CHUNK, COMPLETION, DONE } from './upstream-server.js';

export interface AnswerModelCost {
  /** µs of CPU per chat.completion answer (330 bytes): hold, scan, replace, Content-Length. */
  readonly jsonAnswerUs: number;
  /** µs of CPU per stream of 20 chunk events and [DONE], each its own read. */
  readonly streamUs: number;
}

const PLAN: RoutePlan = { requestedModel: 'gpt-4', route: 'file', answerModel: 'requested', targets: [], preferred: 0 };
const noReport = (): void => undefined;

function cpuUsPer(iterations: number, run: () => void): number {
  const started = process.cpuUsage();
  for (let i = 0; i < iterations; i++) run();
  const used = process.cpuUsage(started);
  return (used.user + used.system) / iterations;
}

function jsonAnswer(): void {
  const stage = answerModel(PLAN, 'bench-model', noReport)!;
  const transform = stage.forResponse(200, { 'content-type': 'application/json' }, { 'content-length': COMPLETION.length })!;
  transform.push(Buffer.from(COMPLETION));
  transform.end();
}

function jsonCopy(): void {
  Buffer.from(COMPLETION);
}

function stream(): void {
  const stage = answerModel(PLAN, 'bench-model', noReport)!;
  const transform = stage.forResponse(200, { 'content-type': 'text/event-stream' }, {})!;
  for (let i = 0; i < 20; i++) transform.push(Buffer.from(CHUNK));
  transform.push(Buffer.from(DONE));
  transform.end();
}

function streamCopies(): void {
  for (let i = 0; i < 20; i++) Buffer.from(CHUNK);
  Buffer.from(DONE);
}

/** Medians of `rounds` rounds, after a warm-up. */
export function answerModelCost(rounds: number): AnswerModelCost {
  cpuUsPer(50_000, jsonAnswer);
  cpuUsPer(5_000, stream);
  const json: number[] = [];
  const streams: number[] = [];
  for (let round = 0; round < rounds; round++) {
    json.push(cpuUsPer(100_000, jsonAnswer) - cpuUsPer(100_000, jsonCopy));
    streams.push(cpuUsPer(10_000, stream) - cpuUsPer(10_000, streamCopies));
  }
  return { jsonAnswerUs: median(json), streamUs: median(streams) };
}
