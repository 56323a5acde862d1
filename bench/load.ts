/** Load generators: wrk (or autocannon), a fixed-rate client, slow streams held open, a sequential big-body client (concurrent streams: stream-client.ts). */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { Agent, request, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { Pool } from 'undici';
import { run } from './processes.js';
import { parseWrkOutput, percentile, type WrkResult } from './stats.js';

export interface Target {
  /** Origin, e.g. http://127.0.0.1:1234. */
  readonly url: string;
  readonly headers: Record<string, string>;
}

export const CHAT_PATH = '/v1/chat/completions';

export function hasWrk(): boolean {
  try {
    execFileSync('wrk', ['--version'], { stdio: 'ignore' });
    return true;
  } catch (error) {
    // wrk --version exits 1 after printing its version; only ENOENT means it is missing.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

function luaString(text: string): string {
  return `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n')}"`;
}

/** Closed-loop load at `connections` for `seconds` with wrk (1 thread) or autocannon. */
export async function closedLoop(
  tool: 'wrk' | 'autocannon',
  target: Target,
  body: string,
  connections: number,
  seconds: number,
  scriptPath: string,
): Promise<WrkResult> {
  if (tool === 'wrk') {
    const lines = [`wrk.method = "POST"`, `wrk.body = ${luaString(body)}`];
    for (const [name, value] of Object.entries(target.headers)) lines.push(`wrk.headers[${luaString(name)}] = ${luaString(value)}`);
    writeFileSync(scriptPath, lines.join('\n') + '\n');
    const result = await run('wrk', ['-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', scriptPath, target.url + CHAT_PATH]);
    if (result.code !== 0) throw new Error(`wrk failed: ${result.stderr || result.stdout}`);
    return parseWrkOutput(result.stdout);
  }
  const moduleName = 'autocannon'; // a dev dependency without types, loaded only when wrk is missing
  const { default: autocannon } = (await import(moduleName)) as { default: (options: object) => Promise<AutocannonResult> };
  const result = await autocannon({ url: target.url + CHAT_PATH, method: 'POST', headers: target.headers, body, connections, duration: seconds });
  return {
    requestsPerSecond: result.requests.average,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests: result.requests.total,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

interface AutocannonResult {
  requests: { average: number; total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

export interface PacedResult {
  sent: number;
  ok: number;
  errors: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Open-loop load: `rate` requests/s for `seconds`, latency to the last body byte with microsecond resolution;
 * `onAnswer` hears each 200's headers and latency (e.g. to split them by a header).
 */
export async function paced(
  target: Target,
  body: string,
  rate: number,
  seconds: number,
  onAnswer?: (headers: IncomingHttpHeaders, ms: number) => void,
): Promise<PacedResult> {
  const pool = new Pool(target.url, { connections: 64, pipelining: 1 });
  const latencies: number[] = [];
  let sent = 0;
  let ok = 0;
  let errors = 0;
  const inflight = new Set<Promise<void>>();
  const one = async (): Promise<void> => {
    const start = performance.now();
    try {
      const response = await pool.request({ method: 'POST', path: CHAT_PATH, headers: target.headers, body });
      await response.body.arrayBuffer();
      if (response.statusCode === 200) {
        ok++;
        const ms = performance.now() - start;
        latencies.push(ms);
        onAnswer?.(response.headers, ms);
      } else errors++;
    } catch {
      errors++;
    }
  };
  const begin = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = (performance.now() - begin) / 1000;
      if (elapsed >= seconds) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor(elapsed * rate);
      while (sent < due) {
        sent++;
        const promise = one();
        inflight.add(promise);
        void promise.finally(() => inflight.delete(promise));
      }
    }, 1);
  });
  await Promise.all(inflight);
  await pool.close();
  return { sent, ok, errors, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) };
}

export interface StreamsResult {
  concurrency: number;
  seconds: number;
  completed: number;
  errors: number;
  ttfbP50Ms: number;
  ttfbP99Ms: number;
}

/** Opens `count` slow streams and resolves once each has received its first event; `close()` aborts them all. */
export async function openSlowStreams(target: Target, body: string, count: number, timeoutMs: number): Promise<{ open: number; close(): void }> {
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const headers = { ...target.headers, 'x-bench-chunks': '100000', 'x-bench-interval': '1000', 'content-length': String(Buffer.byteLength(body)) };
  const requests: ClientRequest[] = [];
  let open = 0;
  const batch = 250;
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < count && Date.now() < deadline; i += batch) {
    const started: Promise<void>[] = [];
    for (let j = i; j < Math.min(count, i + batch); j++) {
      started.push(
        new Promise<void>((resolve) => {
          const req = request(target.url + CHAT_PATH, { method: 'POST', agent, headers }, (res) => {
            res.once('data', () => {
              open++;
              resolve();
            });
            res.on('data', () => undefined);
            res.once('error', () => resolve());
          });
          req.once('error', () => resolve());
          req.end(body);
          requests.push(req);
        }),
      );
    }
    await Promise.race([Promise.all(started), new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now())))]);
  }
  return {
    open,
    close() {
      for (const req of requests) req.destroy();
      agent.destroy();
    },
  };
}

/** `count` uploads of `body` one after another on one connection, to `path`; latency of each in ms. */
export async function sequentialUploads(target: Target, path: string, body: Buffer, contentType: string, count: number): Promise<number[]> {
  const pool = new Pool(target.url, { connections: 1 });
  const headers = { ...target.headers, 'content-type': contentType };
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    const response = await pool.request({ method: 'POST', path, headers, body });
    await response.body.arrayBuffer();
    if (response.statusCode !== 200) throw new Error(`upload answered ${response.statusCode}`);
    latencies.push(performance.now() - start);
  }
  await pool.close();
  return latencies;
}

/** Sequential requests with a large body on one keep-alive connection; latency per request. */
export async function sequential(target: Target, body: string, count: number): Promise<number[]> {
  const pool = new Pool(target.url, { connections: 1 });
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const start = performance.now();
    const response = await pool.request({ method: 'POST', path: CHAT_PATH, headers: target.headers, body });
    await response.body.arrayBuffer();
    if (response.statusCode !== 200) throw new Error(`big-body request answered ${response.statusCode}`);
    latencies.push(performance.now() - start);
  }
  await pool.close();
  return latencies;
}
