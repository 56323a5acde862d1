/**
 * The bound metric families against prom-client's own Counter and Histogram:
 * fed the same observations, a registry prints the same Prometheus text and
 * the cluster's AggregatorRegistry combines them to the same figures.
 */
import client, { AggregatorRegistry, Registry } from 'prom-client';
import { CounterFamily, HistogramFamily } from '../../src/observability/bound-metrics.js';

const BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.1, 1, 10];
const OBSERVATIONS: [string, number][] = [
  ['chat_completions', 0.0004],
  ['chat_completions', 0.001], // on a bound: counted in that bound's bucket
  ['chat_completions', 0.0011],
  ['chat_completions', 0.2],
  ['chat_completions', 9.99],
  ['chat_completions', 10],
  ['chat_completions', 11], // past the last bound: only +Inf
  ['models', 0],
  ['models', 0.05],
];
const COUNTS: [string, string, number][] = [
  ['chat_completions', '200', 5],
  ['chat_completions', '502', 1],
  ['models', '401', 2],
  ['with "quotes" and \\ and \n', '200', 1],
];

function boundRegistry(): { registry: Registry; histogram: HistogramFamily; counter: CounterFamily } {
  const registry = new Registry();
  const histogram = new HistogramFamily(registry, { name: 'test_duration_seconds', help: 'Durations.', labelNames: ['route'], buckets: BUCKETS });
  const counter = new CounterFamily(registry, { name: 'test_requests_total', help: 'Requests.', labelNames: ['route', 'status'] });
  for (const [route, value] of OBSERVATIONS) histogram.cell(route).observe(value);
  for (const [route, status, times] of COUNTS) for (let i = 0; i < times; i++) counter.cell(route, status).inc();
  return { registry, histogram, counter };
}

function promClientRegistry(): Registry {
  const registry = new Registry();
  const histogram = new client.Histogram({ name: 'test_duration_seconds', help: 'Durations.', labelNames: ['route'], buckets: BUCKETS, registers: [registry] });
  const counter = new client.Counter({ name: 'test_requests_total', help: 'Requests.', labelNames: ['route', 'status'], registers: [registry] });
  for (const [route, value] of OBSERVATIONS) histogram.labels(route).observe(value);
  for (const [route, status, times] of COUNTS) for (let i = 0; i < times; i++) counter.labels(route, status).inc();
  return registry;
}

describe('bound metric families', () => {
  it("print the same Prometheus text as prom-client's Counter and Histogram", async () => {
    const expected = await promClientRegistry().metrics();
    expect(expected).toContain('test_duration_seconds_bucket{le="0.001",route="chat_completions"} 2');
    expect(await boundRegistry().registry.metrics()).toBe(expected);
  });

  it("combine across cluster workers as prom-client's own do", async () => {
    const bound = await AggregatorRegistry.aggregate([
      await boundRegistry().registry.getMetricsAsJSON(),
      await boundRegistry().registry.getMetricsAsJSON(),
    ]).metrics();
    const reference = await AggregatorRegistry.aggregate([
      await promClientRegistry().getMetricsAsJSON(),
      await promClientRegistry().getMetricsAsJSON(),
    ]).metrics();
    expect(bound).toBe(reference);
    expect(bound).toContain('test_requests_total{route="chat_completions",status="200"} 10');
  });

  it('start again from zero on a registry reset, and cells held by callers keep counting', async () => {
    const { registry, histogram, counter } = boundRegistry();
    const held = counter.cell('models', '401');
    registry.resetMetrics();
    expect(await registry.metrics()).toContain('test_requests_total{route="models",status="401"} 0');
    expect(await registry.metrics()).toContain('test_duration_seconds_count{route="chat_completions"} 0');
    held.inc();
    histogram.cell('models').observe(0.002);
    const text = await registry.metrics();
    expect(text).toContain('test_requests_total{route="models",status="401"} 1');
    expect(text).toContain('test_duration_seconds_bucket{le="0.0025",route="models"} 1');
    expect(text).toContain('test_duration_seconds_sum{route="models"} 0.002');
  });

  it('leave a value that is not a finite number out, and refuse a wrong number of label values', async () => {
    const { registry, histogram, counter } = boundRegistry();
    histogram.cell('models').observe(Number.NaN);
    histogram.cell('models').observe(Number.POSITIVE_INFINITY);
    expect(await registry.metrics()).toContain('test_duration_seconds_count{route="models"} 2');
    expect(() => counter.cell('models')).toThrow('test_requests_total takes 2 label values, got 1');
  });

  it('hand out one cell per label set', () => {
    const { counter } = boundRegistry();
    expect(counter.cell('models', '401')).toBe(counter.cell('models', '401'));
    expect(counter.cell('models', '401')).not.toBe(counter.cell('models', '200'));
  });
});
