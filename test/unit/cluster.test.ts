/**
 * The cluster's pure parts: WORKERS parsing, the restart delay of a dead
 * worker's slot, and how the workers' /metrics figures combine (JSON summed
 * except the figures every worker shares; Prometheus through prom-client's
 * AggregatorRegistry, as the primary does).
 */
import { jest } from '@jest/globals';
import os from 'node:os';
import { AggregatorRegistry } from 'prom-client';
import type { Worker } from 'node:cluster';
import type { ClusterMessage, MetricsResult } from '../../src/cluster/messages.js';
import { combineJson, MetricsAggregator } from '../../src/cluster/metrics-aggregator.js';
import { RestartDelay, STABLE_AFTER_MS } from '../../src/cluster/restart-delay.js';
import { workersFromEnv } from '../../src/cluster/workers-setting.js';
import { GatewayMetrics } from '../../src/observability/metrics.js';

describe('workersFromEnv', () => {
  afterEach(() => jest.restoreAllMocks());

  test('unset or empty is one process', () => {
    expect(workersFromEnv(undefined)).toBe(1);
    expect(workersFromEnv('')).toBe(1);
  });

  test('a whole number from 1 to 64 is taken as is', () => {
    expect(workersFromEnv('1')).toBe(1);
    expect(workersFromEnv('3')).toBe(3);
    expect(workersFromEnv('64')).toBe(64);
  });

  test("'auto' is one per available CPU, at most 64", () => {
    const cpus = jest.spyOn(os, 'availableParallelism');
    cpus.mockReturnValue(6);
    expect(workersFromEnv('auto')).toBe(6);
    cpus.mockReturnValue(1);
    expect(workersFromEnv('auto')).toBe(1);
    cpus.mockReturnValue(200);
    expect(workersFromEnv('auto')).toBe(64);
    cpus.mockRestore();
    expect(workersFromEnv('auto')).toBe(Math.min(os.availableParallelism(), 64));
  });

  test.each(['0', '-1', '1.5', 'x', 'abc', '65', 'AUTO', 'NaN', 'Infinity'])('%p is refused with a message naming WORKERS', (value) => {
    expect(() => workersFromEnv(value)).toThrow(/^WORKERS .*'auto'.*got '.*'$/);
    expect(() => workersFromEnv(value)).toThrow(`'${value}'`);
  });
});

describe('RestartDelay', () => {
  test('workers dying young: the ceiling doubles from 1 s to 30 s, each wait at least half of it', () => {
    const lowest = new RestartDelay(() => 0);
    const highest = new RestartDelay(() => 0.999_999);
    const quick = [0, 50, 200, 1000, 3000, 9999, 100];
    expect(quick.map((lived) => lowest.after(lived))).toEqual([500, 1000, 2000, 4000, 8000, 15_000, 15_000]);
    expect(quick.map((lived) => highest.after(lived))).toEqual([999, 1999, 3999, 7999, 15_999, 29_999, 29_999]);
  });

  test('a worker that ran for a while starts its slot over at 1 s', () => {
    const delay = new RestartDelay(() => 0);
    expect([delay.after(0), delay.after(0), delay.after(0)]).toEqual([500, 1000, 2000]);
    expect(delay.after(STABLE_AFTER_MS)).toBe(500);
    expect(delay.after(60_000)).toBe(500);
    expect(delay.after(10)).toBe(1000);
  });

  test('jittered: slots whose workers died together wait different times', () => {
    const waits = Array.from({ length: 20 }, () => new RestartDelay().after(0));
    expect(new Set(waits).size).toBeGreaterThan(1);
    expect(waits.every((ms) => ms >= 500 && ms < 1000)).toBe(true);
  });
});

describe('combineJson', () => {
  const worker = (overrides: Record<string, number>): Record<string, number> => ({
    active_requests: 1,
    total_requests: 100,
    error_count: 2,
    uptime_seconds: 30,
    cpu_cores: 4,
    model_redirects: 7,
    active_streams: 1,
    event_loop_lag_p99_ms: 1.5,
    heap_used_bytes: 1000,
    rss_bytes: 5000,
    ...overrides,
  });

  test('adds up per-worker figures, takes the maximum of the shared ones, and counts the workers', () => {
    const parts = [
      worker({}),
      worker({ total_requests: 50, error_count: 0, uptime_seconds: 12, event_loop_lag_p99_ms: 9.25, active_streams: 3 }),
      worker({ active_requests: 0, cpu_cores: 4, model_redirects: 7, heap_used_bytes: 3000 }),
    ];
    expect(combineJson(parts)).toEqual({
      active_requests: 2,
      total_requests: 250,
      error_count: 4,
      uptime_seconds: 30,
      cpu_cores: 4,
      model_redirects: 7,
      active_streams: 5,
      event_loop_lag_p99_ms: 9.25,
      heap_used_bytes: 5000,
      rss_bytes: 15_000,
      workers: 3,
    });
  });

  test('a figure only some workers report is combined from those', () => {
    expect(combineJson([{ a: 1 }, { a: 2, b: 5 }, { b: 1, uptime_seconds: 3 }])).toEqual({ a: 3, b: 6, uptime_seconds: 3, workers: 3 });
  });

  test('one worker is its own figures; none is just a count of zero', () => {
    expect(combineJson([worker({})])).toEqual({ ...worker({}), workers: 1 });
    expect(combineJson([])).toEqual({ workers: 0 });
  });

  test('leaves the parts as they were', () => {
    const parts = [worker({}), worker({})];
    const copies = structuredClone(parts);
    combineJson(parts);
    expect(parts).toEqual(copies);
  });

  test("real workers' JSON: requests add up, the route count and cores are not multiplied", () => {
    const workers = [new GatewayMetrics(), new GatewayMetrics()];
    try {
      for (const [index, metrics] of workers.entries()) {
        metrics.countRoutesWith(() => 3);
        metrics.totalRequests = 10 * (index + 1);
      }
      const combined = combineJson(workers.map((metrics) => metrics.json()));
      expect(combined).toMatchObject({ total_requests: 30, model_redirects: 3, cpu_cores: os.availableParallelism(), workers: 2 });
      expect(Object.keys(combined).sort()).toEqual([...Object.keys(workers[0]!.json()), 'workers'].sort());
    } finally {
      for (const metrics of workers) metrics.close();
    }
  });
});

describe('Prometheus figures of several workers (AggregatorRegistry, as the primary combines them)', () => {
  test('request counters add up; the model-route gauge is the same snapshot, not a sum', async () => {
    const workers = [new GatewayMetrics(), new GatewayMetrics()];
    try {
      for (const [index, metrics] of workers.entries()) {
        metrics.countRoutesWith(() => 3);
        for (let count = 0; count <= index; count++) metrics.requestFinished('chat_completions', 200, 0.01, 'team-a', 'team-a');
      }
      const text = await AggregatorRegistry.aggregate(await Promise.all(workers.map((metrics) => metrics.registry.getMetricsAsJSON()))).metrics();
      expect(text).toMatch(/^apiproxy_requests_total\{route="chat_completions",status="200"\} 3$/m);
      expect(text).toMatch(/^apiproxy_key_requests_total\{consumer="team-a",key_id="team-a",class="2xx"\} 3$/m);
      expect(text).toMatch(/^apiproxy_request_duration_seconds_count\{route="chat_completions"\} 3$/m);
      expect(text).toMatch(/^apiproxy_model_routes 3$/m);
    } finally {
      for (const metrics of workers) metrics.close();
    }
  });
});

describe('MetricsAggregator (the primary side of a scrape)', () => {
  /** A worker as the primary sees it: messages it is sent, and its own figures if it answers collections. */
  function fakeWorker(aggregator: () => MetricsAggregator, metrics: GatewayMetrics | null) {
    const sent: ClusterMessage[] = [];
    const worker = {
      isConnected: () => true,
      send: (message: ClusterMessage) => {
        sent.push(message);
        if (metrics === null || message.type !== 'api-proxy:collect') return true;
        void metrics.registry
          .getMetricsAsJSON()
          .then((prometheus) =>
            aggregator().onMessage(worker as unknown as Worker, { type: 'api-proxy:collected', id: message.id, prometheus, json: metrics.json() }),
          );
        return true;
      },
    };
    return { worker: worker as unknown as Worker, sent };
  }

  async function scrape(answering: number, silent: number, format: 'json' | 'prometheus') {
    const figures = Array.from({ length: answering }, (_, index) => {
      const metrics = new GatewayMetrics();
      metrics.countRoutesWith(() => 3);
      metrics.totalRequests = 10 * (index + 1);
      metrics.requestFinished('chat_completions', 200, 0.01, 'team-a', 'team-a');
      return metrics;
    });
    const workers = [
      ...figures.map((metrics) => fakeWorker(() => aggregator, metrics)),
      ...Array.from({ length: silent }, () => fakeWorker(() => aggregator, null)),
    ];
    const aggregator = new MetricsAggregator(() => workers.map((w) => w.worker));
    const asking = workers[0]!;
    const started = Date.now();
    try {
      aggregator.onMessage(asking.worker, { type: 'api-proxy:metrics-request', id: 7, format });
      const result = () => asking.sent.find((m): m is MetricsResult => m.type === 'api-proxy:metrics-result');
      while (result() === undefined) {
        if (Date.now() - started > 5000) throw new Error('no answer');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      return { result: result()!, ms: Date.now() - started };
    } finally {
      for (const metrics of figures) metrics.close();
    }
  }

  test('every worker answers: the combination goes back at once', async () => {
    const { result, ms } = await scrape(2, 0, 'json');
    expect(result).toMatchObject({ id: 7, body: { workers: 2, total_requests: 30, model_redirects: 3 } });
    expect(ms).toBeLessThan(1000);
  });

  // prom-client's own AggregatorRegistry.clusterMetrics() rejects the whole scrape ("Operation timed out.") after
  // 5 s when one connected worker does not answer; a worker starting or dying must not cost every scrape its answer.
  test('a worker that does not answer (starting, stuck, dying) is left out after 2 s instead of failing the scrape', async () => {
    const json = await scrape(2, 1, 'json');
    expect(json.result.body).toMatchObject({ workers: 2, total_requests: 30 });
    expect(json.ms).toBeGreaterThanOrEqual(1900);
    expect(json.ms).toBeLessThan(3500);
    const text = await scrape(1, 1, 'prometheus');
    expect(text.result.body).toMatch(/^apiproxy_requests_total\{route="chat_completions",status="200"\} 1$/m);
  }, 15_000);
});
