import type { RoutingSnapshot } from '../../src/config/snapshot.js';
import type { Upstream } from '../../src/config/upstream.js';
import { TargetHealth } from '../../src/pipeline/target-health.js';

/** Outlier ejection and Retry-After waits on a clock the test moves. */

const outlier = { consecutiveFailures: 3, ejectionMs: 1000, maxEjectionMs: 3000, maxEjectedPercent: 50 };
const upstream = (name: string, overrides: Partial<Upstream['outlier']> = {}): Upstream => ({ name, outlier: { ...outlier, ...overrides } }) as Upstream;
const a = upstream('a');
const b = upstream('b');
const c = upstream('c');

function setup(upstreams: readonly Upstream[] = [a, b, c]): { health: TargetHealth; clock: { now: number }; events: string[] } {
  const clock = { now: 0 };
  const events: string[] = [];
  const health = new TargetHealth(
    {
      opened: (name) => events.push(`opened ${name}`),
      ejected: (name, ms, failures) => events.push(`ejected ${name} ${ms} ms after ${failures}`),
      readmitted: (name, ms) => events.push(`readmitted ${name} after ${ms} ms`),
    },
    () => clock.now,
  );
  health.retain({ upstreams: new Map(upstreams.map((u) => [u.name, u])) } as unknown as RoutingSnapshot);
  return { health, clock, events };
}

const fail = (health: TargetHealth, target: Upstream, times: number, probe = false): void => {
  for (let i = 0; i < times; i++) health.failed(target, probe);
};

test('every upstream starts available, its series opened', () => {
  const { health, events } = setup();
  expect(health.allAvailable).toBe(true);
  expect(health.available(a, 'm')).toBe(true);
  expect(events).toEqual(['opened a', 'opened b', 'opened c']);
  expect([...health.ejections()].map((e) => [e.name, e.ejected])).toEqual([
    ['a', false],
    ['b', false],
    ['c', false],
  ]);
});

test('consecutive failures eject; a success in between starts the count again', () => {
  const { health, events } = setup();
  fail(health, a, 2);
  health.succeeded(a);
  fail(health, a, 2);
  expect(health.available(a, 'm')).toBe(true);
  fail(health, a, 1);
  expect(health.available(a, 'm')).toBe(false);
  expect(health.allAvailable).toBe(false);
  expect(health.readyAt(a, 'm')).toBe(Number.POSITIVE_INFINITY);
  expect(events.at(-1)).toBe('ejected a 1000 ms after 3');
});

test('after the ejection time one request, the probe, goes through; its success readmits', () => {
  const { health, clock, events } = setup();
  fail(health, a, 3);
  clock.now = 999;
  expect(health.enter(a)).toBe(false);
  clock.now = 1000;
  expect(health.available(a, 'm')).toBe(true);
  expect(health.enter(a)).toBe('probe');
  expect(health.available(a, 'm')).toBe(false); // the probe is out: nobody else
  expect(health.enter(a)).toBe(false);
  health.succeeded(a);
  expect(health.available(a, 'm')).toBe(true);
  expect(health.allAvailable).toBe(true);
  expect(events.at(-1)).toBe('readmitted a after 1000 ms');
});

test('a probe whose client left frees the probe for the next request', () => {
  const { health, clock } = setup();
  fail(health, a, 3);
  clock.now = 1000;
  expect(health.enter(a)).toBe('probe');
  health.abandoned(a);
  expect(health.enter(a)).toBe('probe');
});

test('each ejection in a row doubles, up to the max; a failed probe ejects again at once', () => {
  const { health, clock, events } = setup();
  fail(health, a, 3); // 1000
  clock.now = 1000;
  health.enter(a);
  fail(health, a, 1, true); // the probe failed: 2000
  clock.now = 3000;
  health.enter(a);
  fail(health, a, 1, true); // 4000, capped: 3000
  expect(events.filter((e) => e.startsWith('ejected'))).toEqual(['ejected a 1000 ms after 3', 'ejected a 2000 ms after 4', 'ejected a 3000 ms after 5']);
  clock.now = 5999;
  expect(health.available(a, 'm')).toBe(false);
  clock.now = 6000;
  expect(health.available(a, 'm')).toBe(true);
});

test('the doubling starts over once the upstream stayed in for a whole longest ejection', () => {
  const { health, clock, events } = setup();
  fail(health, a, 3); // 1000
  clock.now = 1000;
  health.enter(a);
  health.succeeded(a); // readmitted at 1000
  clock.now = 2000;
  fail(health, a, 3); // soon after: 2000
  clock.now = 4000;
  health.enter(a);
  health.succeeded(a); // readmitted at 4000
  clock.now = 7001;
  fail(health, a, 3); // more than 3000 later: 1000 again
  expect(events.filter((e) => e.startsWith('ejected'))).toEqual(['ejected a 1000 ms after 3', 'ejected a 2000 ms after 3', 'ejected a 1000 ms after 3']);
});

test('no more than max_ejected_percent of the upstreams is out at once', () => {
  const { health } = setup([a, b, c, upstream('d')]);
  fail(health, a, 3);
  fail(health, b, 3);
  fail(health, c, 3); // 3 of 4 would be 75 %
  expect([...health.ejections()].filter((e) => e.ejected).map((e) => e.name)).toEqual(['a', 'b']);
  expect(health.available(c, 'm')).toBe(true);
  health.succeeded(a); // readmitted: room for one more
  fail(health, c, 1);
  expect(health.available(c, 'm')).toBe(false);
});

test('one upstream alone is never ejected (50 % of one is none); 0 failures means never', () => {
  const alone = setup([a]);
  fail(alone.health, a, 10);
  expect(alone.health.available(a, 'm')).toBe(true);
  const never = upstream('n', { consecutiveFailures: 0 });
  const off = setup([never, b]);
  fail(off.health, never, 10);
  expect(off.health.available(never, 'm')).toBe(true);
});

test('a Retry-After wait holds one target (upstream and model) until it ends', () => {
  const { health, clock } = setup();
  health.wait(a, 'gpt-4o', 500);
  expect(health.allAvailable).toBe(false);
  expect(health.available(a, 'gpt-4o')).toBe(false);
  expect(health.readyAt(a, 'gpt-4o')).toBe(500);
  expect(health.available(a, 'other-model')).toBe(true);
  expect(health.available(b, 'gpt-4o')).toBe(true);
  health.wait(a, 'gpt-4o', 300); // a shorter wait does not shorten it
  expect(health.readyAt(a, 'gpt-4o')).toBe(500);
  clock.now = 500;
  expect(health.available(a, 'gpt-4o')).toBe(true);
  expect(health.allAvailable).toBe(true); // the expired wait is gone
});

test('waits are bounded: past 10,000 the expired go, then the oldest', () => {
  const { health, clock } = setup();
  for (let i = 0; i < 10_000; i++) health.wait(a, `m${i}`, i < 10 ? 1 : 1_000_000);
  clock.now = 2;
  health.wait(a, 'new', 1_000_000);
  expect(health.available(a, 'm0')).toBe(true);
  expect(health.available(a, 'new')).toBe(false);
  for (let i = 0; i < 20; i++) health.wait(a, `more${i}`, 1_000_000);
  expect(health.available(a, 'm10')).toBe(true); // the oldest went
  expect(health.available(a, 'm9999')).toBe(false);
});

test('a reload that drops an upstream drops its state', () => {
  const { health } = setup();
  fail(health, a, 3);
  expect(health.allAvailable).toBe(false);
  health.retain({ upstreams: new Map([['b', b]]) } as unknown as RoutingSnapshot);
  expect(health.allAvailable).toBe(true);
  expect([...health.ejections()].map((e) => e.name)).toEqual(['b']);
});
