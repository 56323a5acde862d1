import { GatewayError } from '../../src/errors/gateway-error.js';
import { Admissions, UpstreamAdmission, type AdmissionObserver } from '../../src/pipeline/admission.js';

class Observed implements AdmissionObserver {
  readonly events: string[] = [];
  readonly waits: { seconds: number; outcome: string }[] = [];
  readonly openedUpstreams: string[] = [];
  opened(upstream: string): void {
    this.openedUpstreams.push(upstream);
  }
  waited(_upstream: string, seconds: number, outcome: 'admitted' | 'refused' | 'abandoned'): void {
    this.waits.push({ seconds, outcome });
  }
  saturated(upstream: string, maxInFlight: number, queueTimeoutMs: number): void {
    this.events.push(`saturated ${upstream} ${maxInFlight} ${queueTimeoutMs}`);
  }
  drained(upstream: string, queued: number, refused: number): void {
    this.events.push(`drained ${upstream} queued=${queued} refused=${refused}`);
  }
}

const never = new AbortController().signal;

test('no cap (the default): every request enters at once, however many are in flight', () => {
  const admission = new UpstreamAdmission('up', { maxInFlight: null, queueTimeoutMs: 10 }, new Observed());
  for (let i = 0; i < 10_000; i++) expect(admission.tryEnter()).toBe(true);
  expect(admission.inFlight).toBe(10_000);
  expect(admission.queued).toBe(0);
});

test('past the cap requests wait in order; each freed slot goes to the oldest waiter', async () => {
  const observed = new Observed();
  const admission = new UpstreamAdmission('up', { maxInFlight: 2, queueTimeoutMs: 5_000 }, observed);
  expect([admission.tryEnter(), admission.tryEnter(), admission.tryEnter()]).toEqual([true, true, false]);
  const order: string[] = [];
  const third = admission.wait(never).then(() => order.push('third'));
  const fourth = admission.wait(never).then(() => order.push('fourth'));
  expect(admission.queued).toBe(2);
  // a newcomer does not jump the queue even when a slot is free for a moment
  admission.leave();
  expect(admission.tryEnter()).toBe(false);
  await third;
  expect(order).toEqual(['third']);
  admission.leave();
  await fourth;
  expect(order).toEqual(['third', 'fourth']);
  expect(admission.inFlight).toBe(2);
  expect(observed.events).toEqual(['saturated up 2 5000', 'drained up queued=2 refused=0']);
  expect(observed.waits.map((w) => w.outcome)).toEqual(['admitted', 'admitted']);
});

test('a waiter gets 503 upstream_saturated with Retry-After after the queue timeout, counted and logged once per episode', async () => {
  const observed = new Observed();
  const admission = new UpstreamAdmission('up', { maxInFlight: 1, queueTimeoutMs: 60 }, observed);
  expect(admission.tryEnter()).toBe(true);
  const started = performance.now();
  const results = await Promise.allSettled([admission.wait(never), admission.wait(never)]);
  const waitedMs = performance.now() - started;
  for (const result of results) {
    expect(result.status).toBe('rejected');
    const error = (result as PromiseRejectedResult).reason as GatewayError;
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe('upstream_saturated');
    expect(error.status).toBe(503);
    expect(error.headers).toEqual({ 'retry-after': '1' });
  }
  expect(waitedMs).toBeGreaterThanOrEqual(55);
  expect(admission.queued).toBe(0);
  expect(admission.inFlight).toBe(1);
  expect(observed.events).toEqual(['saturated up 1 60', 'drained up queued=2 refused=2']);
  expect(observed.waits.map((w) => w.outcome)).toEqual(['refused', 'refused']);
  expect(observed.waits[0]!.seconds).toBeGreaterThanOrEqual(0.055);
});

test('a waiter whose client goes away leaves the queue at once and takes no slot', async () => {
  const observed = new Observed();
  const admission = new UpstreamAdmission('up', { maxInFlight: 1, queueTimeoutMs: 5_000 }, observed);
  admission.tryEnter();
  const gone = new AbortController();
  const waiting = admission.wait(gone.signal);
  const reason = new Error('client gone');
  gone.abort(reason);
  await expect(waiting).rejects.toBe(reason);
  expect(admission.queued).toBe(0);
  admission.leave();
  expect(admission.inFlight).toBe(0);
  expect(observed.waits.map((w) => w.outcome)).toEqual(['abandoned']);
});

test('each upstream is announced once, when its admission is first needed (its series start at zero)', () => {
  const observed = new Observed();
  const admissions = new Admissions(observed);
  const limits = { maxInFlight: null, queueTimeoutMs: 10 };
  admissions.get('a', limits);
  admissions.get('a', limits);
  admissions.get('b', limits);
  expect(observed.openedUpstreams).toEqual(['a', 'b']);
});

test('a reload that raises the cap lets waiters through; one that lowers it lets in-flight requests finish', async () => {
  const admissions = new Admissions(new Observed());
  const one = { maxInFlight: 1, queueTimeoutMs: 5_000 };
  const admission = admissions.get('up', one);
  admission.tryEnter();
  const waiting = admission.wait(never);
  expect(admissions.get('up', { maxInFlight: 3, queueTimeoutMs: 5_000 })).toBe(admission);
  await waiting;
  expect(admission.inFlight).toBe(2);
  expect(admission.tryEnter()).toBe(true);
  admissions.get('up', one);
  admission.leave();
  admission.leave();
  expect(admission.inFlight).toBe(1);
  expect(admission.tryEnter()).toBe(false);
});
