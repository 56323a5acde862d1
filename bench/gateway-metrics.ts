/**
 * What the long-stream profile reads from the gateway's Prometheus text
 * (`GET /metrics`, `Accept: text/plain`). The one parser on npm
 * (parse-prometheus-text-format) folds a labelled histogram into one
 * unlabelled sample, losing the per-upstream `_count` read here; this reads
 * sample lines, scanned by hand (no pattern over the text).
 */

/** One reading of the gateway's metrics for one upstream; null where a series is missing (for the queue, a failure, never a zero). */
export interface GatewayReading {
  /** `apiproxy_upstream_queued{upstream}`: requests waiting for a slot now. */
  readonly queued: number | null;
  /** `apiproxy_upstream_queue_wait_seconds_count{upstream}`: requests that ever waited. */
  readonly queueWaitCount: number | null;
  /** `apiproxy_upstream_in_flight{upstream}`. */
  readonly inFlight: number | null;
  /** `apiproxy_active_streams`: event streams being relayed. */
  readonly activeStreams: number | null;
  /** `apiproxy_listen_queue_connections`: connections the kernel holds for the gateway, not yet accepted. */
  readonly acceptQueue: number | null;
  /** `apiproxy_listen_overflows_total`: handshakes dropped on a full accept queue, in the whole network namespace. */
  readonly listenOverflows: number | null;
  /** `nodejs_eventloop_lag_p99_seconds` (since the last scrape) less prom-client's 10 ms sampling period, in ms: how late the gateway's own loop ran. */
  readonly loopDelayP99Ms: number | null;
}

/** prom-client samples the event loop every 10 ms; its histogram holds whole periods. */
const PROM_CLIENT_LOOP_SAMPLE_MS = 10;

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

const ESCAPES: Readonly<Record<string, string>> = { n: '\n', '"': '"', '\\': '\\' };

/** The sample on one line of the text format; null for a comment, a blank or a malformed line. */
export function parseSampleLine(line: string): Sample | null {
  if (line === '' || line.startsWith('#')) return null;
  let at = 0;
  while (at < line.length && line[at] !== '{' && line[at] !== ' ') at++;
  const name = line.slice(0, at);
  const labels: Record<string, string> = {};
  if (line[at] === '{') {
    at++;
    for (;;) {
      while (line[at] === ' ' || line[at] === ',') at++;
      if (line[at] === '}') {
        at++;
        break;
      }
      const equals = line.indexOf('=', at);
      if (equals === -1 || line[equals + 1] !== '"') return null;
      const label = line.slice(at, equals).trim();
      let value = '';
      at = equals + 2;
      for (;;) {
        const quote = line.indexOf('"', at);
        const slash = line.indexOf('\\', at);
        if (quote === -1) return null;
        if (slash !== -1 && slash < quote) {
          value += line.slice(at, slash) + (ESCAPES[line[slash + 1] ?? ''] ?? `\\${line[slash + 1] ?? ''}`);
          at = slash + 2;
          continue;
        }
        value += line.slice(at, quote);
        at = quote + 1;
        break;
      }
      labels[label] = value;
    }
  }
  const rest = line.slice(at).trim();
  const space = rest.indexOf(' ');
  const text = space === -1 ? rest : rest.slice(0, space); // a timestamp may follow
  const value = text === '+Inf' ? Number.POSITIVE_INFINITY : text === '-Inf' ? Number.NEGATIVE_INFINITY : Number(text);
  return name === '' || text === '' || (Number.isNaN(value) && text !== 'NaN') ? null : { name, labels, value };
}

/** The value of the first sample named `name` whose labels include `labels`; null when there is none. */
export function sampleValue(text: string, name: string, labels: Readonly<Record<string, string>> = {}): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const sample = parseSampleLine(line);
    if (sample?.name === name && Object.entries(labels).every(([label, value]) => sample.labels[label] === value)) return sample.value;
  }
  return null;
}

export function readGatewaySeries(text: string, upstream: string): GatewayReading {
  const labels = { upstream };
  const lag = sampleValue(text, 'nodejs_eventloop_lag_p99_seconds');
  return {
    queued: sampleValue(text, 'apiproxy_upstream_queued', labels),
    queueWaitCount: sampleValue(text, 'apiproxy_upstream_queue_wait_seconds_count', labels),
    inFlight: sampleValue(text, 'apiproxy_upstream_in_flight', labels),
    activeStreams: sampleValue(text, 'apiproxy_active_streams'),
    acceptQueue: sampleValue(text, 'apiproxy_listen_queue_connections'),
    listenOverflows: sampleValue(text, 'apiproxy_listen_overflows_total'),
    loopDelayP99Ms: lag === null ? null : Math.max(0, lag * 1000 - PROM_CLIENT_LOOP_SAMPLE_MS),
  };
}

/** Fetches and reads the gateway's metrics for `upstream`. */
export async function fetchGatewaySeries(gatewayUrl: string, upstream: string): Promise<GatewayReading> {
  const response = await fetch(`${gatewayUrl}/metrics`, { headers: { accept: 'text/plain' } });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`GET /metrics answered ${response.status}`);
  return readGatewaySeries(text, upstream);
}
