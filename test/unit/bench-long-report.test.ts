/**
 * The long-stream profile's report: figures per hop and what each hop adds
 * over direct, the targets met or missed, a queue series that is missing
 * counted as a failure (never as a zero), and a load generator that fell
 * behind named instead of hidden in the figures.
 */
import { parseSampleLine, readGatewaySeries, sampleValue, type GatewayReading } from '../../bench/gateway-metrics.js';
import type { HopMeasurement, HopName, LongProfileResult } from '../../bench/long-profile.js';
import { longStreamRows, queueTarget, summarizeLongProfile } from '../../bench/long-report.js';
import type { Spread } from '../../bench/long-streams.js';

const spread = (p50Ms: number, p99Ms: number, maxMs = p99Ms): Spread => ({ count: 1000, p50Ms, p99Ms, p999Ms: maxMs, maxMs });

interface HopFigures {
  ttfbP99?: number;
  gapP99?: number;
  errors?: number;
  late?: number;
  loop?: number;
  rss?: { idle: number; peak: number; open: number };
  cpuMs?: number;
}

function hop(name: HopName, figures: HopFigures = {}): HopMeasurement {
  return {
    hop: name,
    client: {
      expected: 4000,
      completed: 4000 - (figures.errors ?? 0),
      errors: figures.errors ?? 0,
      ttfb: spread(1, figures.ttfbP99 ?? 10),
      gaps: spread(50, figures.gapP99 ?? 52),
      events: 804_000,
      seconds: 30,
      peakOpen: 2000,
      clientCpu: { totalMs: 8000, systemMs: 4000 },
      clientLoopDelay: spread(0.1, figures.loop ?? 1),
    },
    wallSeconds: 40,
    upstreamCpu: { totalMs: 10_000, systemMs: 6000 },
    proxyCpu: name === 'direct' ? null : { totalMs: figures.cpuMs ?? 12_000, systemMs: 9000 },
    proxyRss: figures.rss === undefined ? null : { idleBytes: figures.rss.idle, peakBytes: figures.rss.peak, peakOpen: figures.rss.open },
    pacing: { chunks: 796_000, p50Ms: 0.2, p99Ms: figures.late ?? 1, maxMs: 9 },
    machine: { busy: 0.8, steal: 0 },
    loadAverage: [1.5, 1.2, 1],
  };
}

const calm: GatewayReading = { queued: 0, queueWaitCount: 0, inFlight: 2000, activeStreams: 2000, acceptQueue: 0, listenOverflows: 5, loopDelayP99Ms: 1.5 };
const MIB = 1024 * 1024;

function profile(hops: HopMeasurement[], gatewayReadings: GatewayReading[] = [calm, calm]): LongProfileResult {
  return { shape: { streams: 2000, tokens: 200, intervalMs: 50, rampMs: 5000, perConnection: 2 }, hops, gatewayReadings, notMeasured: {} };
}

describe('summarizeLongProfile', () => {
  test('figures per hop, and what the gateway and nginx add over direct', () => {
    const summary = summarizeLongProfile(
      profile([
        hop('direct', { ttfbP99: 8, gapP99: 60 }),
        hop('gateway', { ttfbP99: 14, gapP99: 63, rss: { idle: 90 * MIB, peak: 190 * MIB, open: 2000 } }),
        hop('nginx', { ttfbP99: 11, gapP99: 61 }),
      ]),
    );
    const gateway = summary.hops.gateway!;
    expect(gateway.ttfb_p99_added_ms).toBe(6);
    expect(gateway.gap_p99_added_ms).toBe(3);
    expect(summary.hops.nginx!.ttfb_p99_added_ms).toBe(3);
    expect(gateway.rss_kib_per_open_stream).toBe(51.2);
    expect(gateway.rss_peak_mib).toBe(190);
    expect(gateway.cpu_us_per_stream).toEqual({ client: 2000, upstream: 2500, hop: 3000 });
    expect(gateway.cores).toEqual({ client: 0.2, upstream: 0.25, hop: 0.3 });
    expect(gateway.kernel_share).toEqual({ client: 0.5, upstream: 0.6, hop: 0.75 });
    expect(summary.hops.direct!.cpu_us_per_stream.hop).toBeNull();
    expect(summary.gateway_capacity).toEqual({ events_per_cpu_second: 67_000, streams_per_core: 3350 });
    expect(summary.shape).toMatchObject({ streams: 2000, tokens_per_s: 20, stream_seconds: 10, events_per_s_at_full_concurrency: 40_000 });
    expect(summary.load_generator).toEqual({ held_up: true, problems: [] });
    expect(summary.gateway_loop_delay_p99_ms).toEqual({ median: 1.5, max: 1.5 });
    expect(summary.targets.map((target) => [target.name, target.met])).toEqual([
      ['no request queued at the default config', true],
      ['TTFB p99 added by the gateway', true],
      ['inter-token p99 added by the gateway', true],
      ['gateway RSS per open stream', true],
    ]);
  });

  test('each target misses past its limit', () => {
    const summary = summarizeLongProfile(
      profile(
        [
          hop('direct', { ttfbP99: 8, gapP99: 60 }),
          hop('gateway', { ttfbP99: 15, gapP99: 65, rss: { idle: 90 * MIB, peak: 90 * MIB + 2000 * 64 * 1024, open: 2000 } }),
          hop('nginx', { ttfbP99: 11, gapP99: 61 }),
        ],
        [calm, { ...calm, queued: 3 }],
      ),
    );
    expect(summary.targets.map((target) => target.met)).toEqual([false, false, false, false]);
    expect(summary.gateway_loop_delay_p99_ms).toEqual({ median: 1.5, max: 1.5 });
    expect(summary.targets[1]!.limit).toContain('6 ms');
  });

  test('a load generator that fell behind, and streams that failed, are named; latency is then shown, not judged', () => {
    const summary = summarizeLongProfile(
      profile([hop('direct', { late: 40 }), hop('gateway', { loop: 12, errors: 3, rss: { idle: MIB, peak: 2 * MIB, open: 100 } }), hop('nginx')]),
    );
    expect(summary.targets.map((target) => [target.name, target.met])).toEqual([
      ['no request queued at the default config', true],
      ['TTFB p99 added by the gateway', null],
      ['inter-token p99 added by the gateway', null],
      ['gateway RSS per open stream', true],
    ]);
    expect(summary.targets[2]!.value).toBe('0 ms (nginx 0 ms) (not judged: the load generator fell behind)');
    expect(summary.load_generator.held_up).toBe(false);
    expect(summary.load_generator.problems).toEqual([
      "direct: the upstream's chunks left 40 ms late at p99",
      "gateway: the client's event loop ran 12 ms late at p99",
      'gateway: 3 of 4000 streams failed or did not finish',
    ]);
  });

  test('a bare Node.js pipe is shown beside nginx in the latency targets and in its own row, and judges nothing', () => {
    const summary = summarizeLongProfile(
      profile([
        hop('direct', { ttfbP99: 8, gapP99: 60 }),
        hop('gateway', { ttfbP99: 30, gapP99: 75 }),
        hop('nginx', { ttfbP99: 11, gapP99: 61 }),
        hop('node-pipe', { ttfbP99: 20, gapP99: 68, cpuMs: 8000 }),
      ]),
    );
    expect(summary.targets[1]).toMatchObject({ value: '22 ms (nginx 3 ms, bare Node.js pipe 12 ms)', met: false });
    expect(summary.targets[2]).toMatchObject({ value: '15 ms (nginx 1 ms, bare Node.js pipe 8 ms)', met: false });
    expect(summary.hops['node-pipe']!.cpu_us_per_stream.hop).toBe(2000);
    expect(longStreamRows(summary).find((row) => row[0].includes('bare Node.js pipe'))).toEqual([
      '    bare Node.js pipe: added p99 ms TTFB; inter-token; CPU µs/stream',
      '12; 8; 2000',
      '',
      'the least a Node.js hop adds here (bench/node-pipe.ts)',
    ]);
    expect(longStreamRows(summarizeLongProfile(profile([hop('direct'), hop('gateway')]))).some((row) => row[0].includes('bare Node.js pipe'))).toBe(false);
  });

  test("the gateway's own loop delay: the median reading and the worst; none without readings", () => {
    const readings = [1, 7, 2, null].map((loopDelayP99Ms) => ({ ...calm, loopDelayP99Ms }));
    const summary = summarizeLongProfile(profile([hop('direct'), hop('gateway')], readings));
    expect(summary.gateway_loop_delay_p99_ms).toEqual({ median: 2, max: 7 });
    expect(longStreamRows(summary).find((row) => row[0].includes('own loop delay'))?.[1]).toBe('2; 7');
    expect(summarizeLongProfile(profile([hop('direct')], [])).gateway_loop_delay_p99_ms).toBeNull();
  });

  test("the gateway's accept queue: its longest and the overflows between the first and the last reading; no row without the series", () => {
    const readings = [calm, { ...calm, acceptQueue: 97, listenOverflows: 9 }, { ...calm, acceptQueue: 4, listenOverflows: 11 }];
    const summary = summarizeLongProfile(profile([hop('direct'), hop('gateway')], readings));
    expect(summary.gateway_queue).toMatchObject({ accept_queue_max: 97, listen_overflows: 6 });
    expect(longStreamRows(summary).find((row) => row[0].includes('accept queue'))?.[1]).toBe('97; 6');
    const absent = summarizeLongProfile(profile([hop('direct'), hop('gateway')], [{ ...calm, acceptQueue: null, listenOverflows: null }]));
    expect(absent.gateway_queue).toMatchObject({ accept_queue_max: null, listen_overflows: null });
    expect(longStreamRows(absent).some((row) => row[0].includes('accept queue'))).toBe(false);
  });

  test('without nginx the TTFB target is not judged, and the table says so', () => {
    const result = {
      ...profile([hop('direct'), hop('gateway', { rss: { idle: MIB, peak: 2 * MIB, open: 100 } })]),
      notMeasured: { nginx: 'nginx is not installed' },
    };
    const summary = summarizeLongProfile(result);
    expect(summary.targets[1]).toMatchObject({ met: null, value: 'nginx not measured' });
    expect(summary.targets[2]!.value).toMatch(/^-?[0-9.]+ ms$/); // no peer beside it: nothing in parentheses
    const rows = longStreamRows(summary);
    expect(rows.find((row) => row[0].includes('TTFB p99 added'))![1]).toBe('not judged');
    expect(rows.find((row) => row[0].trim() === 'nginx')).toEqual(['    nginx', 'not measured', '', 'nginx is not installed']);
    expect(rows[1]).toEqual(['    streams completed', '4000/4000', '4000/4000', 'not measured']);
  });
});

describe('queueTarget', () => {
  test('met only when both series are present and 0 in every reading', () => {
    expect(queueTarget([calm, calm]).met).toBe(true);
    expect(queueTarget([calm, { ...calm, queueWaitCount: 1 }]).met).toBe(false);
    expect(queueTarget([]).met).toBe(false);
  });

  test('a missing series is a failure, named, never a zero', () => {
    const target = queueTarget([calm, { ...calm, queueWaitCount: null }, { ...calm, queueWaitCount: null }]);
    expect(target.met).toBe(false);
    expect(target.value).toBe('missing: apiproxy_upstream_queue_wait_seconds_count{upstream="default"} in 2 of 3 readings');
  });
});

const METRICS = `# HELP apiproxy_upstream_queue_wait_seconds Time requests waited.
# TYPE apiproxy_upstream_queue_wait_seconds histogram
apiproxy_upstream_queue_wait_seconds_bucket{le="0.005",upstream="default"} 0
apiproxy_upstream_queue_wait_seconds_bucket{le="+Inf",upstream="default"} 2
apiproxy_upstream_queue_wait_seconds_sum{upstream="default"} 0.5
apiproxy_upstream_queue_wait_seconds_count{upstream="default"} 2
apiproxy_upstream_queue_wait_seconds_count{upstream="other"} 7
# HELP apiproxy_upstream_in_flight Requests in flight.
# TYPE apiproxy_upstream_in_flight gauge
apiproxy_upstream_in_flight{upstream="default"} 1999
# HELP apiproxy_upstream_queued Requests waiting.
# TYPE apiproxy_upstream_queued gauge
apiproxy_upstream_queued{upstream="other"} 4
apiproxy_upstream_queued{upstream="default"} 1
# HELP apiproxy_active_streams Event streams being relayed.
# TYPE apiproxy_active_streams gauge
apiproxy_active_streams 1998
# HELP apiproxy_listen_queue_connections Not yet accepted.
# TYPE apiproxy_listen_queue_connections gauge
apiproxy_listen_queue_connections{port="8080"} 3
# HELP apiproxy_listen_overflows_total Dropped handshakes.
# TYPE apiproxy_listen_overflows_total counter
apiproxy_listen_overflows_total 12
# HELP nodejs_eventloop_lag_p99_seconds The 99th percentile of the recorded event loop delays.
# TYPE nodejs_eventloop_lag_p99_seconds gauge
nodejs_eventloop_lag_p99_seconds 0.0125
`;

describe('readGatewaySeries', () => {
  test("reads the upstream's series from Prometheus text", () => {
    expect(readGatewaySeries(METRICS, 'default')).toEqual({
      queued: 1,
      queueWaitCount: 2,
      inFlight: 1999,
      activeStreams: 1998,
      acceptQueue: 3,
      listenOverflows: 12,
      loopDelayP99Ms: 2.5,
    });
    expect(readGatewaySeries(METRICS, 'other')).toMatchObject({ queued: 4, queueWaitCount: 7, inFlight: null });
  });

  test('a histogram or gauge without a series for the upstream reads as missing', () => {
    const empty =
      '# HELP apiproxy_upstream_queue_wait_seconds x\n# TYPE apiproxy_upstream_queue_wait_seconds histogram\n# HELP apiproxy_upstream_queued y\n# TYPE apiproxy_upstream_queued gauge\n';
    expect(readGatewaySeries(empty, 'default')).toEqual({
      queued: null,
      queueWaitCount: null,
      inFlight: null,
      activeStreams: null,
      acceptQueue: null,
      listenOverflows: null,
      loopDelayP99Ms: null,
    });
  });
});

describe('parseSampleLine', () => {
  test('name, labels (escapes included) and value; a timestamp is ignored', () => {
    expect(parseSampleLine('a_total{x="1",path="C:\\\\DIR",msg="say \\"hi\\"\\nbye"} 3 1700000000')).toEqual({
      name: 'a_total',
      labels: { x: '1', path: 'C:\\DIR', msg: 'say "hi"\nbye' },
      value: 3,
    });
    expect(parseSampleLine('up 1')).toEqual({ name: 'up', labels: {}, value: 1 });
    expect(parseSampleLine('h_bucket{le="+Inf"} +Inf')?.value).toBe(Number.POSITIVE_INFINITY);
    expect(parseSampleLine('g{a="b",} 2.5e3')).toEqual({ name: 'g', labels: { a: 'b' }, value: 2500 });
  });

  test.each(['# HELP a b', '', 'a{x="1"', 'a{x=1} 2', 'a{x="1"} two', 'a'])('%j is no sample', (line) => {
    expect(parseSampleLine(line)).toBeNull();
  });

  test('a series is found by its whole name, not by a longer name it begins', () => {
    expect(sampleValue('q_total{upstream="default"} 5\nq{upstream="default"} 1\n', 'q', { upstream: 'default' })).toBe(1);
    expect(sampleValue('q_total 5\n', 'q')).toBeNull();
  });

  test('a label value holding what looks like another label does not match it', () => {
    expect(sampleValue('q{upstream="x,upstream=\\"default\\""} 5\nq{upstream="default"} 1\n', 'q', { upstream: 'default' })).toBe(1);
  });
});
