/**
 * What the relay's body transforms keep across reads lives in memory of its
 * own, never in Node's shared 8 KiB buffer pool: one small pooled buffer kept
 * for a stream's life keeps its whole slab alive, with every short-lived
 * buffer carved beside it (src/io/owned-bytes.ts). Streams here open one after
 * another while the open ones receive events, as on a gateway: every event is
 * a pooled copy, as the upstream connection makes it.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pushThrough, type BodyTransform } from '../../src/pipeline/body-transform.js';
import { answerModel } from '../../src/pipeline/answer-model.js';
import { redaction } from '../../src/pipeline/redact.js';
import { UsageMeter } from '../../src/pipeline/usage-meter.js';
import type { RoutePlan } from '../../src/routing/resolve.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const STREAMS = 2000;
const EVENTS = 30;
const event = (usage: boolean): string =>
  `data: ${JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'upstream-model', choices: [{ index: 0, delta: { content: ' token' }, finish_reason: null }], ...(usage ? { usage: null } : {}) })}\n\n`;

/** One list for every stream, as a snapshot's is: its bytes are made once. */
const SECRETS = ['sk-upstream-secret-0123456789'];
const plan = { requestedModel: 'gpt-4', answerModel: 'requested' } as RoutePlan;

function chain(strip: boolean): BodyTransform[] {
  const head = { 'content-type': 'text/event-stream' };
  const usage = new UsageMeter(strip, 100).forResponse(200, head, {})!;
  const answer = answerModel(plan, 'upstream-model', () => undefined)!.forResponse(200, head, {})!;
  return [redaction(SECRETS, () => undefined)!.forResponse(200, head, {})!, usage, answer];
}

/** A full collection whose freed buffers are swept (V8 sweeps ArrayBuffers on another thread). */
async function collect(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await delay(20);
  }
  return process.memoryUsage().arrayBuffers;
}

/** Bytes of ArrayBuffers still alive per stream after STREAMS streams of EVENTS events, all still open. */
async function keptPerStream(strip: boolean, bytes: string): Promise<number> {
  const source = Buffer.from(bytes);
  const before = await collect();
  const open: { transforms: BodyTransform[]; events: number }[] = [];
  let out = 0;
  // Stream i opens at step i * EVENTS / STREAMS; each open stream receives one event per step.
  for (let step = 0, opened = 0; open.length < STREAMS || open.some((s) => s.events < EVENTS); step++) {
    while (opened < STREAMS && opened * EVENTS <= step * STREAMS) {
      open.push({ transforms: chain(strip), events: 0 });
      opened++;
    }
    for (const stream of open) {
      if (stream.events === EVENTS) continue;
      stream.events++;
      out += pushThrough(stream.transforms, Buffer.from(source)).length;
    }
  }
  expect(out).toBeGreaterThan(0);
  const kept = ((await collect()) - before) / STREAMS;
  expect(open).toHaveLength(STREAMS); // the transforms are alive until here
  return kept;
}

test.each([
  ['include_usage added by the gateway (stripped)', true, event(true)],
  ['include_usage asked by the client (passed through)', false, event(true)],
  ['no usage in the events', false, event(false)],
])('%s: under 512 bytes of buffers kept per open stream', async (_name, strip, bytes) => {
  // About 200 bytes (the answer_model stage's copies of the event's start); a pooled copy kept instead pinned 1.1 KiB.
  expect(await keptPerStream(strip, bytes)).toBeLessThan(512);
});
