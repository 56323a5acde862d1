/** Config scale: snapshot rebuild time and per-request lookup cost at 10,000 routes and 100,000 keys. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyDigest } from '../src/config/key-digest.js';
import { loadConfigFile } from '../src/config/load-file.js';
import type { FileInputs } from '../src/config/model.js';
import { buildSnapshot, type RoutingSnapshot } from '../src/config/snapshot.js';
import { median } from './stats.js';

export interface ConfigScaleResult {
  routes: number;
  keys: number;
  /** buildSnapshot alone (what a reload costs once sources have parsed and hashed). */
  rebuildMs: number;
  /** loadConfigFile + buildSnapshot on a JSON file of that size (parse, validate, hash keys, build). */
  fileReloadMs: number;
  /** keys.get(keyDigest(key)) + routes.get(model), per request. */
  lookupNs: number;
  /** The same lookup in a 10-route, 10-key snapshot: equal within noise means O(1). */
  lookupSmallNs: number;
  /** keyDigest alone: the part of the lookup that does not touch the maps. */
  digestNs: number;
}

function inputs(routeCount: number, keys: readonly string[]): FileInputs {
  return {
    settings: {
      bodyLimit: 8 * 1024 * 1024,
      unknownModels: 'passthrough',
      answerModel: 'requested',
      logLevel: 'info',
      accessLog: true,
      port: null,
      drainDelayMs: 0,
      shutdownTimeoutMs: 1000,
      defaultUpstream: 'default',
      retryBudgetMs: 120_000,
    },
    kubernetes: { enabled: false, namespaces: [], clientKeySelector: 'x=y', watchTimeoutSeconds: 300, leaseName: 'api-proxy' },
    tracing: {
      enabled: false,
      endpoint: null,
      protocol: null,
      timeoutMs: null,
      serviceName: null,
      sampler: null,
      samplerArg: null,
      maxQueueSize: null,
      maxExportBatchSize: null,
      scheduleDelayMs: null,
      exportTimeoutMs: null,
    },
    rateLimits: { redis: null, failOpen: true },
    usage: { requestStreamUsage: true },
    upstreams: [
      {
        name: 'default',
        origin: 'http://127.0.0.1:1',
        basePath: '/v1',
        apiKey: 'sk-x',
        apiKeySecret: null,
        connectTimeoutMs: 1000,
        headersTimeoutMs: 1000,
        idleTimeoutMs: 1000,
        maxConnections: 8,
        queueTimeoutMs: 10_000,
        maxIdleConnections: 8,
        tlsCa: null,
        tlsInsecureSkipVerify: false,
        tlsServername: null,
        tlsClientCert: null,
        tlsClientCertSecret: null,
        http2: 'auto',
        proxy: null,
        envProxy: null,
        retry: { attempts: 2, backoffBaseMs: 100, backoffMaxMs: 2000, conditions: ['connect_failure', 429, 502, 503, 504] },
        outlier: { consecutiveFailures: 5, ejectionMs: 30_000, maxEjectionMs: 300_000, maxEjectedPercent: 50 },
      },
    ],
    routes: Array.from({ length: routeCount }, (_, i) => ({
      model: `model-${i}`,
      source: 'file',
      targets: [{ model: `target-${i}`, upstream: null, weight: 1, priority: 0 }],
      answerModel: null,
    })),
    clientKeys: keys.map((key, i) => ({ id: `key-${i}`, digest: keyDigest(key) })),
    consumers: [],
  };
}

function lookupCost(snapshot: RoutingSnapshot, keys: readonly string[], models: readonly string[], iterations: number): number {
  let found = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) {
    if (snapshot.keys.get(keyDigest(keys[i % keys.length]!)) !== undefined) found++;
    if (snapshot.routes.get(models[(i * 7) % models.length]!) !== undefined) found++;
  }
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  if (found !== iterations * 2) throw new Error(`lookup missed ${iterations * 2 - found} times`);
  return ns;
}

export function configScale(routeCount: number, keyCount: number, repeats: number): ConfigScaleResult {
  const keys = Array.from({ length: keyCount }, () => randomBytes(24).toString('base64url'));
  const models = Array.from({ length: routeCount }, (_, i) => `model-${i}`);
  const big = inputs(routeCount, keys);
  const rebuilds: number[] = [];
  let snapshot!: RoutingSnapshot;
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    snapshot = buildSnapshot({ file: big, kube: null, namespace: 'default', version: i + 1 });
    rebuilds.push(performance.now() - start);
  }

  const dir = mkdtempSync(join(tmpdir(), 'api-proxy-bench-'));
  let fileReloadMs: number;
  try {
    const path = join(dir, 'config.json');
    writeFileSync(
      path,
      JSON.stringify({
        upstreams: { default: { url: 'http://127.0.0.1:1/v1', api_key: 'sk-x' } },
        model_redirects: Object.fromEntries(models.map((model, i) => [model, `target-${i}`])),
        client_keys: keys.map((key, i) => ({ id: `key-${i}`, key })),
      }),
    );
    const start = performance.now();
    const loaded = loadConfigFile(path, {});
    buildSnapshot({ file: loaded.inputs, kube: null, namespace: 'default', version: 1 });
    fileReloadMs = performance.now() - start;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const smallKeys = keys.slice(0, 10);
  const small = buildSnapshot({ file: inputs(10, smallKeys), kube: null, namespace: 'default', version: 1 });
  const iterations = 500_000;
  lookupCost(snapshot, keys, models, 50_000); // warm up
  lookupCost(small, smallKeys, models.slice(0, 10), 50_000);
  const lookupNs = median([1, 2, 3].map(() => lookupCost(snapshot, keys, models, iterations)));
  const lookupSmallNs = median([1, 2, 3].map(() => lookupCost(small, smallKeys, models.slice(0, 10), iterations)));
  let sink = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) sink += keyDigest(keys[i % keys.length]!).length;
  const digestNs = Number(process.hrtime.bigint() - start) / iterations;
  if (sink === 0) throw new Error('unreachable');
  return { routes: routeCount, keys: keyCount, rebuildMs: median(rebuilds), fileReloadMs, lookupNs, lookupSmallNs, digestNs };
}
