/**
 * A real Jaeger v2 (built from the Go module proxy by test/tools/build-jaeger.sh, cached outside the
 * repo) on free loopback ports: OTLP over HTTP and gRPC in, in-memory storage, the query API out.
 *
 *   const jaeger = await startJaeger();                 // in beforeAll, JAEGER_START_TIMEOUT_MS
 *   exporter url: `${jaeger.otlpHttpUrl}/v1/traces`
 *   const trace = await jaeger.trace(traceId);          // polls GET /api/traces/<id>
 *   await jaeger.stop();
 */
import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { freePort, sleep } from '../wait.js';
import { RealPartError, canConnect, makeWorkDir, removeWorkDir, startManaged, tailOf, waitReady, withPortRetry } from './process.js';

/** For the beforeAll that calls startJaeger: covers a cold build (about 3 min on 2 cores) too. */
export const JAEGER_START_TIMEOUT_MS = 15 * 60_000;

const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '..', '..', '..');
const BUILD_SCRIPT = join(REPO_ROOT, 'test', 'tools', 'build-jaeger.sh');

export interface JaegerOptions {
  startTimeoutMs?: number;
}

/** A span as the query API (GET /api/traces/<id>) returns it; ids are lower-case hex. */
export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  startTime: number; // µs since the epoch
  duration: number; // µs
  tags: { key: string; type: string; value: unknown }[];
  /** Span events: `fields` holds `event` (the name) and the event's attributes. */
  logs: { timestamp: number; fields: { key: string; type: string; value: unknown }[] }[];
  processID: string;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: { key: string; type: string; value: unknown }[] }>;
}

export interface JaegerHandle {
  /** http://127.0.0.1:port: POST OTLP to `${otlpHttpUrl}/v1/traces`. */
  readonly otlpHttpUrl: string;
  /** http://127.0.0.1:port: an OTLP gRPC endpoint (plain text). */
  readonly otlpGrpcUrl: string;
  /** http://127.0.0.1:port: the query API (/api/traces/<id>, /api/services). */
  readonly queryUrl: string;
  /** SIGTERM and wait; removes the temp dir. */
  stop(): Promise<void>;
  /**
   * The trace with this id (32 hex digits), polled from the query API until it has at least
   * `minSpans` spans (default 1); throws after `timeoutMs` (default 10 s).
   */
  trace(traceId: string, options?: { minSpans?: number; timeoutMs?: number }): Promise<JaegerTrace>;
  /** Jaeger's own log. */
  log(): string;
}

let binaryPromise: Promise<string> | undefined;

/** Runs test/tools/build-jaeger.sh (instant when cached; jest's global setup ran it) for the binary's path. */
export function jaegerBinary(): Promise<string> {
  binaryPromise ??= new Promise<string>((resolvePath, reject) => {
    // env: explicit, so that changes a test makes to process.env (jest's copy) apply.
    execFile('bash', [BUILD_SCRIPT], { env: process.env, timeout: JAEGER_START_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const bin = stdout.trim().split('\n').pop() ?? '';
      if (err || !existsSync(bin)) {
        const why = err ? err.message : `it printed '${bin}', which does not exist`;
        reject(
          new RealPartError(
            'REAL_PART_MISSING',
            `jaeger not found and test/tools/build-jaeger.sh could not build it (needs Go and the Go module proxy; .ci/run runs it through jest's global setup): ${why}\n${stderr.slice(-3000)}`,
          ),
        );
        return;
      }
      resolvePath(bin);
    });
  });
  binaryPromise.catch(() => {
    binaryPromise = undefined; // the next call tries again
  });
  return binaryPromise;
}

interface JaegerPorts {
  otlpGrpc: number;
  otlpHttp: number;
  query: number;
  queryGrpc: number;
}

/** Four distinct free ports (freePort() could hand out the same one twice in a row). */
async function freeJaegerPorts(): Promise<JaegerPorts> {
  const ports = new Set<number>();
  while (ports.size < 4) ports.add(await freePort());
  const [otlpGrpc = 0, otlpHttp = 0, query = 0, queryGrpc = 0] = [...ports];
  return { otlpGrpc, otlpHttp, query, queryGrpc };
}

export async function startJaeger(options: JaegerOptions = {}): Promise<JaegerHandle> {
  const bin = await jaegerBinary();
  const dir = makeWorkDir('jaeger');
  try {
    const logFile = join(dir, 'jaeger.log');
    const confFile = join(dir, 'config.yaml');
    let ports: JaegerPorts = { otlpGrpc: 0, otlpHttp: 0, query: 0, queryGrpc: 0 };

    const managed = await withPortRetry(async () => {
      ports = await freeJaegerPorts();
      const { otlpGrpc, otlpHttp, query } = ports;
      writeFileSync(confFile, stringify(jaegerConfig(ports)));
      const started = startManaged(bin, ['--config', confFile], logFile);
      const queryUrl = `http://127.0.0.1:${query}`;
      // Extensions (the query API) start before the pipeline's receivers: wait for both.
      const ready = async (): Promise<boolean> => (await fetch(`${queryUrl}/api/services`)).ok && (await canConnect(otlpHttp)) && (await canConnect(otlpGrpc));
      await waitReady(`jaeger (query port ${query})`, started, logFile, ready, options.startTimeoutMs ?? 30_000);
      return started;
    });

    const queryUrl = `http://127.0.0.1:${ports.query}`;
    return {
      otlpHttpUrl: `http://127.0.0.1:${ports.otlpHttp}`,
      otlpGrpcUrl: `http://127.0.0.1:${ports.otlpGrpc}`,
      queryUrl,
      async stop() {
        await managed.stop();
        removeWorkDir(dir);
      },
      trace: (traceId, traceOptions = {}) => pollTrace(queryUrl, traceId, traceOptions.minSpans ?? 1, traceOptions.timeoutMs ?? 10_000),
      log: () => tailOf(logFile, 20_000),
    };
  } catch (err) {
    removeWorkDir(dir);
    throw err;
  }
}

/**
 * Jaeger v2 is an OpenTelemetry collector distribution: OTLP receivers -> the jaeger_storage
 * exporter -> in-memory storage, read by the jaeger_query extension. No batch processor, so a span
 * is stored as soon as it is received. The collector's own metrics are off (they would bind 8888),
 * and so are the query extension's own traces (on by default in v2: sent by OTLP to 127.0.0.1:4317,
 * whose retries also hold up shutdown after the first query).
 */
function jaegerConfig(ports: JaegerPorts): object {
  return {
    service: {
      extensions: ['jaeger_storage', 'jaeger_query'],
      pipelines: { traces: { receivers: ['otlp'], exporters: ['jaeger_storage_exporter'] } },
      telemetry: { metrics: { level: 'none' }, logs: { level: 'info' } },
    },
    extensions: {
      jaeger_storage: { backends: { memstore: { memory: { max_traces: 100_000 } } } },
      jaeger_query: {
        storage: { traces: 'memstore' },
        enable_tracing: false,
        http: { endpoint: `127.0.0.1:${ports.query}` },
        grpc: { endpoint: `127.0.0.1:${ports.queryGrpc}` },
      },
    },
    receivers: {
      otlp: {
        protocols: {
          grpc: { endpoint: `127.0.0.1:${ports.otlpGrpc}` },
          http: { endpoint: `127.0.0.1:${ports.otlpHttp}` },
        },
      },
    },
    exporters: { jaeger_storage_exporter: { trace_storage: 'memstore' } },
  };
}

async function pollTrace(queryUrl: string, traceId: string, minSpans: number, timeoutMs: number): Promise<JaegerTrace> {
  const deadline = Date.now() + timeoutMs;
  let last: string;
  for (;;) {
    try {
      const res = await fetch(`${queryUrl}/api/traces/${encodeURIComponent(traceId)}`);
      const body = await res.text();
      last = `HTTP ${res.status} ${body.slice(0, 300)}`;
      if (res.ok) {
        const trace = (JSON.parse(body) as { data?: JaegerTrace[] }).data?.[0];
        if (trace && trace.spans.length >= minSpans) return trace;
      }
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() > deadline) {
      throw new RealPartError('REAL_PART_NO_TRACE', `trace ${traceId} with ${minSpans}+ span(s) not in Jaeger within ${timeoutMs} ms (last: ${last})`);
    }
    await sleep(100);
  }
}
