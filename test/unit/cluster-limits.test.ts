import { jest } from '@jest/globals';
import { LimitsHost, type LimitsWorker } from '../../src/cluster/limits-host.js';
import type { ClusterMessage } from '../../src/cluster/messages.js';
import { PrimaryCounters } from '../../src/cluster/primary-counters.js';
import type { Admission } from '../../src/policy/counter-store.js';

/** A worker and the primary joined by message passing, as node:cluster's IPC does (through JSON). */
function joined(host: LimitsHost): { counters: PrimaryCounters; worker: LimitsWorker & { connected: boolean } } {
  const worker = {
    connected: true,
    send: (message: ClusterMessage) => setImmediate(() => counters.onMessage(JSON.parse(JSON.stringify(message)))),
    isConnected: () => worker.connected,
  };
  const counters: PrimaryCounters = new PrimaryCounters((message) => setImmediate(() => host.onMessage(worker, JSON.parse(JSON.stringify(message)))));
  return { counters, worker };
}

const rpm = (limit: number): Admission => ({ rates: [{ id: 'rpm:c:k', spec: { limit, windowMs: 3_600_000 }, cost: 1 }], slot: null });
const stream = (limit: number): Admission => ({ rates: [], slot: { id: 'streams:c:k', limit } });
const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('two workers share one budget held by the primary', async () => {
  const host = new LimitsHost();
  const a = joined(host);
  const b = joined(host);
  const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 === 0 ? a : b).counters.admit(rpm(4))));
  expect(results.filter((r) => r.allowed)).toHaveLength(4);
  await host.close();
});

test("slots: released by the worker's batched message; a worker that dies gives its slots back", async () => {
  const host = new LimitsHost();
  const a = joined(host);
  const b = joined(host);
  const held = await a.counters.admit(stream(2));
  expect(held.slotHandle).not.toBeNull();
  expect((await b.counters.admit(stream(2))).allowed).toBe(true);
  expect((await b.counters.admit(stream(2))).allowed).toBe(false);
  a.counters.release({ id: 'streams:c:k', limit: 2 }, held.slotHandle!);
  await tick();
  await tick();
  expect((await b.counters.admit(stream(2))).allowed).toBe(true);
  expect((await a.counters.admit(stream(2))).allowed).toBe(false);
  host.workerExited(b.worker); // b held two
  expect((await a.counters.admit(stream(2))).allowed).toBe(true);
  expect((await a.counters.admit(stream(2))).allowed).toBe(true);
  await host.close();
});

test('charges sent in one message per turn', async () => {
  const host = new LimitsHost();
  const sent: ClusterMessage[] = [];
  const counters = new PrimaryCounters((message) => sent.push(message));
  const op = { id: 'tpm:c', spec: { limit: 100, windowMs: 60_000 }, cost: 10 };
  counters.charge([op]);
  counters.charge([op]);
  counters.release({ id: 's', limit: 1 }, '7');
  await tick();
  expect(sent).toEqual([{ type: 'api-proxy:limits-settle', charges: [op, op], releases: [{ slot: { id: 's', limit: 1 }, handle: '7' }] }]);
  await host.close();
});

test('a primary that does not answer: the admission fails after a second (the limiter then fails open or closed)', async () => {
  jest.useFakeTimers();
  try {
    const counters = new PrimaryCounters(() => undefined);
    const admitted = counters.admit(rpm(1));
    jest.advanceTimersByTime(1_000);
    await expect(admitted).rejects.toMatchObject({ code: 'LIMITS_PRIMARY_TIMEOUT' });
  } finally {
    jest.useRealTimers();
  }
});
