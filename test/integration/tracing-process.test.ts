/**
 * Tracing in the gateway as users run it (`node main.js`, built here), configured by the spec's
 * environment variables, against a real Jaeger; and, with tracing off, proof that no OpenTelemetry
 * SDK module is even loaded (a module hook records every `@opentelemetry/*` import).
 */
import { jest } from '@jest/globals';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY } from '../support/gateway-harness.js';
import { JAEGER_START_TIMEOUT_MS, startJaeger, type JaegerHandle } from '../support/real/jaeger.js';
import { freePort, waitFor } from '../support/wait.js';

jest.setTimeout(60_000);

const ROOT = resolve(import.meta.dirname, '..', '..');
const HOOK = `import { registerHooks } from 'node:module';
import { appendFileSync } from 'node:fs';
registerHooks({
  resolve(specifier, context, next) {
    if (specifier.startsWith('@opentelemetry/')) appendFileSync(process.env.IMPORT_LOG, specifier + '\\n');
    return next(specifier, context);
  },
});
`;

let jaeger: JaegerHandle;
let upstream: FakeUpstream;
let dir: string;
/** Its own build, outside the repo (never racing another test's build of dist/, never linted), beside a link to node_modules. */
let OUT: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-tracing-'));
  OUT = join(dir, 'dist');
  execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json', '--outDir', OUT], { cwd: ROOT });
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ type: 'module' }));
  jaeger = await startJaeger();
  upstream = await startFakeUpstream();
  writeFileSync(join(dir, 'hook.mjs'), HOOK);
}, JAEGER_START_TIMEOUT_MS);

afterAll(async () => {
  await upstream?.close();
  await jaeger?.stop();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  /** Every @opentelemetry/* specifier the process resolved. */
  imports(): string[];
  output(): string;
  url: string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

async function runGateway(name: string, config: object, env: Record<string, string>): Promise<Run> {
  const configPath = join(dir, `${name}.json`);
  const importLog = join(dir, `${name}.imports`);
  writeFileSync(configPath, JSON.stringify(config));
  writeFileSync(importLog, '');
  const port = await freePort();
  let output = '';
  const child: ChildProcess = spawn(process.execPath, ['--import', join(dir, 'hook.mjs'), join(OUT, 'main.js')], {
    cwd: ROOT,
    env: { PATH: process.env['PATH'] ?? '', CONFIG_PATH: configPath, PORT: String(port), IMPORT_LOG: importLog, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (chunk) => (output += String(chunk)));
  child.stderr!.on('data', (chunk) => (output += String(chunk)));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await request(`${url}/health/ready`).catch(() => null))?.statusCode === 200, 10_000, `gateway ${name}`).catch((error: Error) => {
    child.kill('SIGKILL');
    throw new Error(`${error.message}\n${output}`);
  });
  return {
    url,
    imports: () =>
      existsSync(importLog)
        ? readFileSync(importLog, 'utf8')
            .split('\n')
            .filter((line) => line !== '')
        : [],
    output: () => output,
    stop: () =>
      new Promise((resolveExit) => {
        child.once('exit', (code) => resolveExit(code));
        child.kill('SIGTERM');
      }),
  };
}

async function chat(url: string, headers: Record<string, string>): Promise<number> {
  const res = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ model: 'gpt-4', messages: [] }),
  });
  await res.body.dump();
  return res.statusCode;
}

const quickShutdown = { shutdown: { drain_delay_ms: 0, timeout_ms: 5000 } };

test('tracing off: no OpenTelemetry SDK module is loaded, not even after a request', async () => {
  const run = await runGateway('off', baseConfig(upstream.url, quickShutdown), {});
  try {
    expect(await chat(run.url, { traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` })).toBe(200);
  } finally {
    expect(await run.stop()).toBe(0);
  }
  // prom-client requires the OpenTelemetry API for its exemplars whatever the gateway does: the SDK is what tracing adds.
  expect(run.imports().filter((specifier) => specifier !== '@opentelemetry/api')).toEqual([]);
});

test('tracing on, pointed at the collector by OTEL_* variables: the trace arrives, named and attributed as the environment says', async () => {
  const run = await runGateway('on', baseConfig(upstream.url, { ...quickShutdown, tracing: { enabled: true } }), {
    OTEL_EXPORTER_OTLP_ENDPOINT: jaeger.otlpHttpUrl,
    OTEL_SERVICE_NAME: 'api-proxy-process',
    OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,service.namespace=platform',
    // Long enough that only the flush at shutdown can deliver the spans.
    OTEL_BSP_SCHEDULE_DELAY: '600000',
  });
  const traceId = randomBytes(16).toString('hex');
  try {
    expect(await chat(run.url, { traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` })).toBe(200);
  } finally {
    expect(await run.stop()).toBe(0);
  }
  const trace = await jaeger.trace(traceId, { minSpans: 2, timeoutMs: 5000 });
  const processes = Object.values(trace.processes);
  expect(processes.map((p) => p.serviceName)).toEqual(['api-proxy-process']);
  const tags = Object.fromEntries(processes[0]!.tags.map((t) => [t.key, t.value]));
  expect(tags).toMatchObject({ 'deployment.environment.name': 'test', 'service.namespace': 'platform', 'telemetry.sdk.language': 'nodejs' });
  // Only the exporter of the protocol in use is loaded.
  expect(run.imports()).toContain('@opentelemetry/sdk-trace');
  expect(run.imports()).toContain('@opentelemetry/exporter-trace-otlp-proto');
  expect(run.imports()).not.toContain('@opentelemetry/exporter-trace-otlp-grpc');
  expect(run.output()).toContain('"msg":"tracing on"');
});
