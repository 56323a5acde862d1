/** Config scale: snapshot rebuild time and per-request lookup cost at 10,000 routes and 100,000 keys. */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyDigest } from '../src/config/key-digest.js';
import { loadConfigFile } from '../src/config/load-file.js';
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

/** Writes a config file of `routeCount` redirects (model-i to target-i) and a client key for each of `keys`. */
function writeConfig(path: string, routeCount: number, keys: readonly string[]): void {
  writeFileSync(
    path,
    JSON.stringify({
      upstreams: { default: { url: 'http://127.0.0.1:1/v1', api_key: 'sk-x' } },
      model_redirects: Object.fromEntries(Array.from({ length: routeCount }, (_, i) => [`model-${i}`, `target-${i}`])),
      client_keys: keys.map((key, i) => ({ id: `key-${i}`, key })),
    }),
  );
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
  const smallKeys = keys.slice(0, 10);
  const dir = mkdtempSync(join(tmpdir(), 'api-proxy-bench-'));
  let fileReloadMs: number;
  let snapshot!: RoutingSnapshot;
  let small: RoutingSnapshot;
  const rebuilds: number[] = [];
  try {
    const path = join(dir, 'config.json');
    writeConfig(path, routeCount, keys);
    // The file's parse, validation and key hashing, then the snapshot built from it.
    const start = performance.now();
    const big = loadConfigFile(path, {}).inputs;
    buildSnapshot({ file: big, kube: null, namespace: 'default', version: 1 });
    fileReloadMs = performance.now() - start;
    for (let i = 0; i < repeats; i++) {
      const rebuildStart = performance.now();
      snapshot = buildSnapshot({ file: big, kube: null, namespace: 'default', version: i + 2 });
      rebuilds.push(performance.now() - rebuildStart);
    }
    const smallPath = join(dir, 'small.json');
    writeConfig(smallPath, 10, smallKeys);
    small = buildSnapshot({ file: loadConfigFile(smallPath, {}).inputs, kube: null, namespace: 'default', version: 1 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

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
