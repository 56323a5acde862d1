/** Shared by the reliability and security tests: raw sockets, metrics readers, polling. */
import { connect } from 'node:net';
import { request } from 'undici';
import { waitFor, waitForPlateau } from '../support/wait.js';

export { waitFor, waitForPlateau };

export interface RawResult {
  /** Everything the server sent. */
  text: string;
  /** The server closed the connection (rather than us giving up waiting). */
  closed: boolean;
  /** Status codes of every response in `text`, in order. */
  statuses: number[];
}

/**
 * Writes `data` (a string or a list of pieces) on a fresh TCP connection and
 * collects the answer until the server closes, or `quietMs` passes without
 * new bytes after some arrived, or `timeoutMs`.
 */
export function rawRequest(
  url: string,
  data: string | Buffer | readonly (string | Buffer)[],
  options: { quietMs?: number; timeoutMs?: number } = {},
): Promise<RawResult> {
  const { port, hostname } = new URL(url);
  const quietMs = options.quietMs ?? 300;
  const timeoutMs = options.timeoutMs ?? 5000;
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname);
    const received: Buffer[] = [];
    let quiet: NodeJS.Timeout | null = null;
    let closed = false;
    const finish = (): void => {
      clearTimeout(overall);
      if (quiet !== null) clearTimeout(quiet);
      socket.destroy();
      const text = Buffer.concat(received).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));
      resolve({ text, closed, statuses });
    };
    const overall = setTimeout(finish, timeoutMs);
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      if (quiet !== null) clearTimeout(quiet);
      quiet = setTimeout(finish, quietMs);
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('connect', () => {
      for (const piece of Array.isArray(data) ? data : [data]) socket.write(piece);
    });
  });
}

/** The body of the last response in a raw answer. */
export function lastBody(raw: RawResult): string {
  const at = raw.text.lastIndexOf('\r\n\r\n');
  return at === -1 ? '' : raw.text.slice(at + 4);
}

export async function prometheus(url: string): Promise<string> {
  const res = await request(`${url}/metrics`, { headers: { accept: 'text/plain' } });
  return res.body.text();
}

export async function metricsJson(url: string): Promise<Record<string, number>> {
  const res = await request(`${url}/metrics`);
  return (await res.body.json()) as Record<string, number>;
}

/** The value of one Prometheus sample; throws when the series is absent (a missing series is a failure, not a zero). */
export function series(text: string, name: string, labels: Record<string, string> = {}): number {
  const value = findSample(text, name, labels);
  if (value === undefined) throw new Error(`no series ${name}${JSON.stringify(labels)} in the metrics`);
  return value;
}

/**
 * How a counter moved between two readings: its growth, or 'unchanged' (the
 * same value, or still absent: a labelled counter's series appears with its
 * first event). A series that was there and is gone is a failure.
 */
export function movement(before: string, after: string, name: string, labels: Record<string, string> = {}): number | 'unchanged' {
  const was = findSample(before, name, labels);
  const now = findSample(after, name, labels);
  if (now === was) return 'unchanged';
  if (now === undefined) throw new Error(`the series ${name}${JSON.stringify(labels)} was in the metrics and is gone`);
  return now - (was ?? 0);
}

function findSample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    const braces = /^[^{ ]+(?:\{(.*)\})? (\S+)$/.exec(line);
    if (braces === null) continue;
    const found = Object.fromEntries([...(braces[1] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([key, value]) => found[key] === value) && Object.keys(found).length === Object.keys(labels).length) {
      return Number(braces[2]);
    }
  }
  return undefined;
}

/** Snapshot of the counters a fault must move: upstream errors by code, requests by route/status, JSON error_count. */
export async function counters(url: string): Promise<{ prom: string; json: Record<string, number> }> {
  return { prom: await prometheus(url), json: await metricsJson(url) };
}

/** The gateway is healthy: /health 200, nothing in flight (the /metrics call itself is the one active request). */
export async function expectIdleAndHealthy(url: string): Promise<void> {
  await waitFor(
    async () => {
      const json = await metricsJson(url);
      return json['active_requests'] === 1 && json['active_streams'] === 0;
    },
    3000,
    'active_requests and active_streams back to 0',
  );
  const health = await request(`${url}/health`);
  expect(health.statusCode).toBe(200);
  await health.body.text();
}
