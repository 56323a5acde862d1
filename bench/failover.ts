/**
 * The bench's failover section (--only=failover): a route split between the
 * bench upstream and a second one (`/flaky/`, answering 503 one time in five,
 * bench/upstream-server.ts), driven at a fixed rate; each answer's
 * `x-apiproxy-attempts` says whether it fell back, so the added latency of a
 * fallback is measured on the requests that paid it.
 */
import { paced, type Target } from './load.js';
import { percentile } from './stats.js';

/** The model of the route whose second target fails 20 %. */
export const FAILOVER_MODEL = 'failover';

/**
 * `base` (the bench's gateway config) plus the `/flaky/` upstream and the
 * route splitting FAILOVER_MODEL evenly between both, to `model`; ejection
 * off, so that every failure is a fallback, measured.
 */
export function failoverConfig(base: unknown, upstreamUrl: string, model: string): unknown {
  const config = base as { upstreams: Record<string, Record<string, unknown>> };
  const noEjection = { consecutive_failures: 0 };
  return {
    ...config,
    upstreams: {
      default: { ...config.upstreams['default'], outlier: noEjection },
      flaky: { ...config.upstreams['default'], url: `${upstreamUrl}/flaky/v1`, outlier: noEjection },
    },
    routes: [
      {
        model: FAILOVER_MODEL,
        targets: [
          { model, upstream: 'flaky', weight: 1 },
          { model, weight: 1 },
        ],
      },
    ],
  };
}

export interface FailoverPaced {
  sent: number;
  /** Answers other than 200, and requests that failed. */
  errors: number;
  p50Ms: number;
  p99Ms: number;
  /** Latency to the last byte of the requests answered at the first attempt, and of those that took two. */
  firstTry: { count: number; p50Ms: number };
  fellBack: { count: number; p50Ms: number };
}

/** Open-loop load: `rate` requests/s for `seconds`, latencies split by the answer's `x-apiproxy-attempts`. */
export async function pacedByAttempts(target: Target, body: string, rate: number, seconds: number): Promise<FailoverPaced> {
  const byAttempts = new Map<string, number[]>();
  const result = await paced(target, body, rate, seconds, (headers, ms) => {
    const attempts = String(headers['x-apiproxy-attempts'] ?? '?');
    let list = byAttempts.get(attempts);
    if (list === undefined) byAttempts.set(attempts, (list = []));
    list.push(ms);
  });
  const first = byAttempts.get('1') ?? [];
  const second = byAttempts.get('2') ?? [];
  return {
    sent: result.sent,
    errors: result.errors,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    firstTry: { count: first.length, p50Ms: percentile(first, 50) },
    fellBack: { count: second.length, p50Ms: percentile(second, 50) },
  };
}

/** The gateway's attempts at the flaky upstream (all, and failed with a 5xx) and its fallbacks, from its Prometheus text. */
export async function attemptCounts(url: string): Promise<{ flaky: number; flakyFailed: number; fallbacks: number }> {
  const text = await (await fetch(`${url}/metrics`, { headers: { accept: 'text/plain' } })).text();
  let flaky = 0;
  let flakyFailed = 0;
  let fallbacks = 0;
  for (const line of text.split('\n')) {
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (line.startsWith('apiproxy_upstream_attempts_total{') && line.includes('upstream="flaky"')) {
      flaky += value;
      if (line.includes('outcome="server_error"')) flakyFailed += value;
    } else if (line.startsWith('apiproxy_fallbacks_total{')) {
      fallbacks += value;
    }
  }
  return { flaky, flakyFailed, fallbacks };
}
