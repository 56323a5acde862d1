/**
 * The long-stream profile's figures, targets and table rows, from what
 * long-profile.ts measured (pure, unit-tested).
 */
import type { GatewayReading } from './gateway-metrics.js';
import type { CpuUse, HopMeasurement, HopName, LongProfileResult } from './long-profile.js';
import { median, round } from './stats.js';

/** The targets of issue 20, and the most the load generators' own lateness may reach before their figures are called distorted. */
export const LIMITS = {
  /** The gateway's added TTFB p99 may be at most this many times nginx's. */
  ttfbVsNginx: 2,
  /** Inter-token gap p99 the gateway may add over direct. */
  gapAddedMs: 5,
  /** Gateway RSS per open stream. */
  rssPerStreamBytes: 64 * 1024,
  /** Upstream chunk lateness p99 and client event-loop delay p99, in any hop: beyond this, the hop's figures carry the load generators' own delays. */
  loadGeneratorLateMs: 5,
} as const;

export interface HopSummary {
  readonly expected: number;
  readonly completed: number;
  readonly errors: number;
  readonly ttfb_p50_ms: number;
  readonly ttfb_p99_ms: number;
  /** Over direct's (0 for direct). */
  readonly ttfb_p99_added_ms: number;
  readonly gap_p50_ms: number;
  readonly gap_p99_ms: number;
  readonly gap_p999_ms: number;
  readonly gap_max_ms: number;
  readonly gap_p99_added_ms: number;
  readonly events: number;
  readonly seconds: number;
  readonly peak_open_streams: number;
  /** CPU µs per completed stream: the client (the whole bench process), the upstream, the hop's own processes. */
  readonly cpu_us_per_stream: { readonly client: number; readonly upstream: number; readonly hop: number | null };
  /** Cores used on average over the hop. */
  readonly cores: { readonly client: number; readonly upstream: number; readonly hop: number | null };
  /** The kernel's share of each one's CPU (system time / all time). */
  readonly kernel_share: { readonly client: number; readonly upstream: number; readonly hop: number | null };
  readonly rss_idle_mib: number | null;
  readonly rss_peak_mib: number | null;
  readonly rss_kib_per_open_stream: number | null;
  readonly upstream_late_p99_ms: number;
  readonly client_loop_delay_p99_ms: number;
  readonly machine_busy: number;
  readonly machine_steal: number;
  readonly load_average: readonly number[];
}

export interface Target {
  readonly name: string;
  readonly value: string;
  readonly limit: string;
  /** null: not judged (a figure it needs is missing). */
  readonly met: boolean | null;
}

export interface LongProfileSummary {
  readonly shape: {
    readonly streams: number;
    readonly tokens_per_stream: number;
    readonly tokens_per_s: number;
    readonly stream_seconds: number;
    readonly streams_per_connection: number;
    readonly ramp_s: number;
    readonly events_per_s_at_full_concurrency: number;
  };
  readonly hops: Readonly<Partial<Record<HopName, HopSummary>>>;
  readonly not_measured: Readonly<Partial<Record<HopName, string>>>;
  readonly gateway_queue: {
    readonly readings: number;
    /** Readings that lacked a series, by series name. */
    readonly missing: Readonly<Record<string, number>>;
    readonly queued_max: number | null;
    readonly queue_wait_count_max: number | null;
    readonly in_flight_max: number | null;
    /** The kernel's accept queue for the gateway's port, at its longest; null where a reading lacks it (not Linux). */
    readonly accept_queue_max: number | null;
    /** Handshakes dropped on a full accept queue (any listener of the namespace) between the first and last reading. */
    readonly listen_overflows: number | null;
  };
  /** The gateway's own event-loop delay p99 (its metrics, each reading covering the second before it): the median reading and the worst. */
  readonly gateway_loop_delay_p99_ms: { readonly median: number; readonly max: number } | null;
  /** The gateway's capacity as measured: token events relayed per CPU-second, hence streams per core at the profile's rate. */
  readonly gateway_capacity: { readonly events_per_cpu_second: number; readonly streams_per_core: number } | null;
  readonly load_generator: { readonly held_up: boolean; readonly problems: readonly string[] };
  readonly targets: readonly Target[];
}

const mib = (bytes: number): number => round(bytes / 1024 / 1024, 1);

function summarizeHop(hop: HopMeasurement, direct: HopMeasurement | undefined): HopSummary {
  const { client } = hop;
  const streams = Math.max(1, client.completed);
  const perStream = (ms: number): number => round((ms * 1000) / streams, 0);
  const cores = (ms: number): number => round(ms / 1000 / hop.wallSeconds, 2);
  const kernel = (cpu: CpuUse): number => round(cpu.systemMs / cpu.totalMs, 2);
  const rss = hop.proxyRss;
  return {
    expected: client.expected,
    completed: client.completed,
    errors: client.errors,
    ttfb_p50_ms: round(client.ttfb.p50Ms, 2),
    ttfb_p99_ms: round(client.ttfb.p99Ms, 2),
    ttfb_p99_added_ms: direct === undefined ? Number.NaN : round(client.ttfb.p99Ms - direct.client.ttfb.p99Ms, 2),
    gap_p50_ms: round(client.gaps.p50Ms, 2),
    gap_p99_ms: round(client.gaps.p99Ms, 2),
    gap_p999_ms: round(client.gaps.p999Ms, 2),
    gap_max_ms: round(client.gaps.maxMs, 2),
    gap_p99_added_ms: direct === undefined ? Number.NaN : round(client.gaps.p99Ms - direct.client.gaps.p99Ms, 2),
    events: client.events,
    seconds: round(hop.wallSeconds, 1),
    peak_open_streams: rss?.peakOpen ?? client.peakOpen,
    cpu_us_per_stream: {
      client: perStream(client.clientCpu.totalMs),
      upstream: perStream(hop.upstreamCpu.totalMs),
      hop: hop.proxyCpu === null ? null : perStream(hop.proxyCpu.totalMs),
    },
    cores: {
      client: cores(client.clientCpu.totalMs),
      upstream: cores(hop.upstreamCpu.totalMs),
      hop: hop.proxyCpu === null ? null : cores(hop.proxyCpu.totalMs),
    },
    kernel_share: { client: kernel(client.clientCpu), upstream: kernel(hop.upstreamCpu), hop: hop.proxyCpu === null ? null : kernel(hop.proxyCpu) },
    rss_idle_mib: rss === null ? null : mib(rss.idleBytes),
    rss_peak_mib: rss === null ? null : mib(rss.peakBytes),
    rss_kib_per_open_stream: rss === null || rss.peakOpen === 0 ? null : round((rss.peakBytes - rss.idleBytes) / rss.peakOpen / 1024, 1),
    upstream_late_p99_ms: round(hop.pacing.p99Ms, 2),
    client_loop_delay_p99_ms: round(client.clientLoopDelay.p99Ms, 2),
    machine_busy: round(hop.machine.busy, 2),
    machine_steal: round(hop.machine.steal, 2),
    load_average: hop.loadAverage.map((n) => round(n, 2)),
  };
}

/** Largest value of a series over the readings; null when any reading lacks it. */
function maxOf(readings: readonly GatewayReading[], pick: (reading: GatewayReading) => number | null): number | null {
  let max = Number.NEGATIVE_INFINITY;
  for (const reading of readings) {
    const value = pick(reading);
    if (value === null) return null;
    max = Math.max(max, value);
  }
  return readings.length === 0 ? null : max;
}

/** How much a counter grew from the first reading to the last; null when any reading lacks it. */
function growth(readings: readonly GatewayReading[], pick: (reading: GatewayReading) => number | null): number | null {
  const first = readings[0];
  const last = readings.at(-1);
  if (first === undefined || last === undefined || maxOf(readings, pick) === null) return null;
  return pick(last)! - pick(first)!;
}

const SERIES: readonly [string, (reading: GatewayReading) => number | null][] = [
  ['apiproxy_upstream_queued{upstream="default"}', (reading) => reading.queued],
  ['apiproxy_upstream_queue_wait_seconds_count{upstream="default"}', (reading) => reading.queueWaitCount],
];

/** Nothing queued: every reading holds both series, and both are 0 throughout. */
export function queueTarget(readings: readonly GatewayReading[]): Target {
  const limit = 'both series present and 0 in every reading';
  const name = 'no request queued at the default config';
  if (readings.length === 0) return { name, value: 'no reading', limit, met: false };
  const missing = SERIES.map(([series, pick]) => [series, readings.filter((reading) => pick(reading) === null).length] as const).filter(
    ([, count]) => count > 0,
  );
  if (missing.length > 0)
    return {
      name,
      value: `missing: ${missing.map(([series, count]) => `${series} in ${count} of ${readings.length} readings`).join('; ')}`,
      limit,
      met: false,
    };
  const queued = maxOf(readings, (reading) => reading.queued)!;
  const waited = maxOf(readings, (reading) => reading.queueWaitCount)!;
  return { name, value: `queued max ${queued}, waited ${waited} (${readings.length} readings)`, limit, met: queued === 0 && waited === 0 };
}

export function summarizeLongProfile(result: LongProfileResult): LongProfileSummary {
  const { shape } = result;
  const byName = new Map(result.hops.map((hop) => [hop.hop, hop] as const));
  const direct = byName.get('direct');
  const hops: Partial<Record<HopName, HopSummary>> = {};
  for (const hop of result.hops) hops[hop.hop] = summarizeHop(hop, direct);
  const gateway = hops.gateway;
  const nginx = hops.nginx;
  const pipe = hops['node-pipe'];
  // Beside each latency figure: what nginx and a bare Node.js pipe added in the same run, in parentheses; '' with neither.
  const peers = (pick: (hop: HopSummary) => number): string => {
    const added = [nginx === undefined ? null : `nginx ${pick(nginx)} ms`, pipe === undefined ? null : `bare Node.js pipe ${pick(pipe)} ms`];
    const shown = added.filter((text) => text !== null);
    return shown.length === 0 ? '' : ` (${shown.join(', ')})`;
  };
  const gatewayRun = byName.get('gateway');

  const problems: string[] = [];
  for (const [name, hop] of Object.entries(hops)) {
    if (!(hop.upstream_late_p99_ms <= LIMITS.loadGeneratorLateMs))
      problems.push(`${name}: the upstream's chunks left ${hop.upstream_late_p99_ms} ms late at p99`);
    if (!(hop.client_loop_delay_p99_ms <= LIMITS.loadGeneratorLateMs))
      problems.push(`${name}: the client's event loop ran ${hop.client_loop_delay_p99_ms} ms late at p99`);
    if (hop.errors > 0) problems.push(`${name}: ${hop.errors} of ${hop.expected} streams failed or did not finish`);
  }

  // Latency measured while the load generator fell behind carries its delays: shown, not judged.
  const distorted = problems.length > 0 ? ' (not judged: the load generator fell behind)' : '';
  const latency = (met: boolean): boolean | null => (distorted === '' ? met : null);
  const targets: Target[] = [queueTarget(result.gatewayReadings)];
  if (gateway !== undefined && nginx !== undefined) {
    const allowed = LIMITS.ttfbVsNginx * nginx.ttfb_p99_added_ms;
    targets.push({
      name: 'TTFB p99 added by the gateway',
      value: `${gateway.ttfb_p99_added_ms} ms${peers((hop) => hop.ttfb_p99_added_ms)}${distorted}`,
      limit: `<= ${LIMITS.ttfbVsNginx}x nginx's: ${round(allowed, 2)} ms`,
      met: latency(gateway.ttfb_p99_added_ms <= allowed),
    });
  } else
    targets.push({
      name: 'TTFB p99 added by the gateway',
      value: gateway === undefined ? 'gateway not measured' : 'nginx not measured',
      limit: `<= ${LIMITS.ttfbVsNginx}x nginx's`,
      met: null,
    });
  if (gateway !== undefined) {
    targets.push({
      name: 'inter-token p99 added by the gateway',
      value: `${gateway.gap_p99_added_ms} ms${peers((hop) => hop.gap_p99_added_ms)}${distorted}`,
      limit: `< ${LIMITS.gapAddedMs} ms`,
      met: latency(gateway.gap_p99_added_ms < LIMITS.gapAddedMs),
    });
    const perStream = gateway.rss_kib_per_open_stream;
    targets.push({
      name: 'gateway RSS per open stream',
      value: perStream === null ? 'not measured' : `${perStream} KiB`,
      limit: `< ${LIMITS.rssPerStreamBytes / 1024} KiB`,
      met: perStream === null ? null : perStream * 1024 < LIMITS.rssPerStreamBytes,
    });
  }

  const gatewayCpuS = gatewayRun?.proxyCpu === undefined || gatewayRun.proxyCpu === null ? Number.NaN : gatewayRun.proxyCpu.totalMs / 1000;
  const eventsPerCpuSecond = gatewayRun === undefined ? Number.NaN : gatewayRun.client.events / gatewayCpuS;
  const tokensPerSecond = 1000 / shape.intervalMs;
  const loopDelay = result.gatewayReadings.map((reading) => reading.loopDelayP99Ms).filter((ms): ms is number => ms !== null);
  return {
    shape: {
      streams: shape.streams,
      tokens_per_stream: shape.tokens,
      tokens_per_s: round(tokensPerSecond, 2),
      stream_seconds: round((shape.tokens * shape.intervalMs) / 1000, 1),
      streams_per_connection: shape.perConnection,
      ramp_s: round(shape.rampMs / 1000, 1),
      events_per_s_at_full_concurrency: Math.round(shape.streams * tokensPerSecond),
    },
    hops,
    not_measured: result.notMeasured,
    gateway_queue: {
      readings: result.gatewayReadings.length,
      missing: Object.fromEntries(
        SERIES.map(([series, pick]): [string, number] => [series, result.gatewayReadings.filter((reading) => pick(reading) === null).length]).filter(
          ([, count]) => count > 0,
        ),
      ),
      queued_max: maxOf(result.gatewayReadings, (reading) => reading.queued),
      queue_wait_count_max: maxOf(result.gatewayReadings, (reading) => reading.queueWaitCount),
      in_flight_max: maxOf(result.gatewayReadings, (reading) => reading.inFlight),
      accept_queue_max: maxOf(result.gatewayReadings, (reading) => reading.acceptQueue),
      listen_overflows: growth(result.gatewayReadings, (reading) => reading.listenOverflows),
    },
    gateway_loop_delay_p99_ms: loopDelay.length === 0 ? null : { median: round(median(loopDelay), 2), max: round(Math.max(...loopDelay), 2) },
    gateway_capacity: Number.isFinite(eventsPerCpuSecond)
      ? { events_per_cpu_second: Math.round(eventsPerCpuSecond), streams_per_core: Math.round(eventsPerCpuSecond / tokensPerSecond) }
      : null,
    load_generator: { held_up: problems.length === 0, problems },
    targets,
  };
}

type Row = [string, string, string, string];

const mark = (met: boolean | null): string => (met === null ? 'not judged' : met ? 'met' : 'MISSED');

/** Rows for the bench's table: figure, then gateway, direct, nginx; a target's row: name, value, limit and verdict. */
export function longStreamRows(summary: LongProfileSummary): Row[] {
  const { shape, hops } = summary;
  const row = (figure: string, pick: (hop: HopSummary) => string): Row => {
    const cell = (name: HopName): string => {
      const hop = hops[name];
      return hop === undefined ? 'not measured' : pick(hop);
    };
    return [figure, cell('gateway'), cell('direct'), cell('nginx')];
  };
  const rows: Row[] = [
    [`(L) ${shape.streams} streams x ${shape.stream_seconds} s, ${shape.tokens_per_s} tokens/s`, 'gateway', 'direct', 'nginx'],
    row('    streams completed', (hop) => `${hop.completed}/${hop.expected}`),
    row('    TTFB p50 / p99 ms', (hop) => `${hop.ttfb_p50_ms} / ${hop.ttfb_p99_ms}`),
    row('    inter-token p50 / p99 / max ms', (hop) => `${hop.gap_p50_ms} / ${hop.gap_p99_ms} / ${hop.gap_max_ms}`),
    row('    added over direct, p99 ms: TTFB; inter-token', (hop) => `${hop.ttfb_p99_added_ms}; ${hop.gap_p99_added_ms}`),
    row(
      '    CPU µs/stream: hop; upstream; client',
      (hop) => `${hop.cpu_us_per_stream.hop ?? '-'}; ${hop.cpu_us_per_stream.upstream}; ${hop.cpu_us_per_stream.client}`,
    ),
    row('    cores used: hop; upstream; client', (hop) => `${hop.cores.hop ?? '-'}; ${hop.cores.upstream}; ${hop.cores.client}`),
    row('    kernel share of CPU: hop; upstream; client', (hop) => `${hop.kernel_share.hop ?? '-'}; ${hop.kernel_share.upstream}; ${hop.kernel_share.client}`),
    row('    RSS peak MiB; KiB per open stream', (hop) => (hop.rss_peak_mib === null ? '-' : `${hop.rss_peak_mib}; ${hop.rss_kib_per_open_stream}`)),
    row('    late p99 ms: upstream; client loop', (hop) => `${hop.upstream_late_p99_ms}; ${hop.client_loop_delay_p99_ms}`),
    row('    machine busy; load average (1 min)', (hop) => `${Math.round(hop.machine_busy * 100)} %; ${hop.load_average[0]}`),
  ];
  const pipe = hops['node-pipe'];
  if (pipe !== undefined)
    rows.push([
      '    bare Node.js pipe: added p99 ms TTFB; inter-token; CPU µs/stream',
      `${pipe.ttfb_p99_added_ms}; ${pipe.gap_p99_added_ms}; ${pipe.cpu_us_per_stream.hop ?? '-'}`,
      '',
      'the least a Node.js hop adds here (bench/node-pipe.ts)',
    ]);
  const loop = summary.gateway_loop_delay_p99_ms;
  if (loop !== null) rows.push(["    gateway's own loop delay p99 ms: median; worst second", `${loop.median}; ${loop.max}`, '', '']);
  const { accept_queue_max: acceptQueue, listen_overflows: overflows } = summary.gateway_queue;
  if (acceptQueue !== null || overflows !== null)
    rows.push([
      "    gateway's accept queue: longest; overflows",
      `${acceptQueue ?? '-'}; ${overflows ?? '-'}`,
      '',
      'connections the kernel held unaccepted; handshakes it dropped (any listener here)',
    ]);
  // Long texts go last, where they widen no column.
  if (summary.load_generator.held_up)
    rows.push(['    load generator', 'held up', '', `upstream and client late p99 <= ${LIMITS.loadGeneratorLateMs} ms, no stream lost`]);
  for (const problem of summary.load_generator.problems) rows.push(['    load generator', 'DISTORTED', '', problem]);
  for (const target of summary.targets) rows.push([`    ${target.name}`, mark(target.met), '', `${target.value}; target ${target.limit}`]);
  for (const [hop, reason] of Object.entries(summary.not_measured)) rows.push([`    ${hop}`, 'not measured', '', reason]);
  return rows;
}
