/**
 * Helpers for the chart tests: the helm binaries (built by test/tools/build-helm.sh, cached
 * outside the repo), `helm template` into parsed objects, and small finders.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repoRoot = path.resolve(here, '..', '..');
export const chartDir = path.join(repoRoot, 'charts', 'api-proxy');
export const ciValuesDir = path.join(chartDir, 'ci');

/** Suggested beforeAll timeout: a cold helm build (both versions) takes ~6 min on 2 cores. */
export const HELM_BUILD_TIMEOUT_MS = 20 * 60_000;

export interface HelmBinaries {
  v3: string;
  v4: string;
}

let cached: HelmBinaries | undefined;

/** Runs build-helm.sh (returns at once when both binaries are cached); throws if it fails. */
export function helmBinaries(): HelmBinaries {
  if (cached) return cached;
  const out = execFileSync('bash', [path.join(repoRoot, 'test', 'tools', 'build-helm.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: HELM_BUILD_TIMEOUT_MS,
  });
  const lines = out.trim().split('\n');
  const v3 = lines.find((l) => l.includes('/helm-v3.'));
  const v4 = lines.find((l) => l.includes('/helm-v4.'));
  if (!v3 || !v4) throw new Error(`build-helm.sh did not print both helm paths:\n${out}`);
  cached = { v3, v4 };
  return cached;
}

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs helm; never throws on a non-zero exit (the caller asserts on status). */
export function runHelm(helm: string, args: string[], env: NodeJS.ProcessEnv = {}): HelmResult {
  const res = spawnSync(helm, args, {
    encoding: 'utf8',
    cwd: repoRoot,
    timeout: 120_000,
    // Keep helm away from the user's own helm/kube config.
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: process.env['HOME'] ?? '/tmp',
      HELM_CACHE_HOME: path.join(process.env['TMPDIR'] ?? '/tmp', 'api-proxy-helm-cache'),
      HELM_CONFIG_HOME: path.join(process.env['TMPDIR'] ?? '/tmp', 'api-proxy-helm-config'),
      HELM_DATA_HOME: path.join(process.env['TMPDIR'] ?? '/tmp', 'api-proxy-helm-data'),
      KUBECONFIG: '/nonexistent/kubeconfig',
      ...env,
    },
  });
  if (res.error) throw res.error;
  return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
}

export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  [key: string]: any;
}

/** `helm template` → parsed objects. Throws with helm's stderr when rendering fails. */
export function template(helm: string, args: string[] = [], release = 'rel', namespace = 'apps'): K8sObject[] {
  const res = runHelm(helm, ['template', release, chartDir, '--namespace', namespace, ...args]);
  if (res.status !== 0) throw new Error(`helm template ${args.join(' ')} failed (${res.status}):\n${res.stderr}`);
  return parseObjects(res.stdout);
}

export function parseObjects(text: string): K8sObject[] {
  const objects: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`invalid YAML from helm: ${doc.errors.map((e) => e.message).join('; ')}`);
    const value = doc.toJS() as K8sObject | null;
    if (value !== null && value !== undefined) objects.push(value);
  }
  return objects;
}

export function all(objects: K8sObject[], kind: string): K8sObject[] {
  return objects.filter((o) => o.kind === kind);
}

export function one(objects: K8sObject[], kind: string, name?: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) {
    throw new Error(`expected exactly one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  }
  return found[0]!;
}

export function ciValuesFiles(): string[] {
  return fs
    .readdirSync(ciValuesDir)
    .filter((f) => f.endsWith('.yaml'))
    .sort()
    .map((f) => path.join(ciValuesDir, f));
}

/** The gateway container of the chart's Deployment. */
export function gatewayContainer(objects: K8sObject[]): any {
  const deployment = one(objects, 'Deployment');
  const container = deployment['spec'].template.spec.containers.find((c: { name: string }) => c.name === 'api-proxy');
  if (!container) throw new Error('no api-proxy container');
  return container;
}

/** The rendered config.json of the chart's ConfigMap, parsed. */
export function renderedConfig(objects: K8sObject[]): any {
  const cm = all(objects, 'ConfigMap').find((c) => c['data']?.['config.json'] !== undefined);
  if (!cm) throw new Error('no ConfigMap with config.json');
  return JSON.parse(cm['data']['config.json'] as string);
}
