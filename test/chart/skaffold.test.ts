/**
 * skaffold.yaml against skaffold's published JSON schema for skaffold/v4beta14 (shared/schemas,
 * beside the repo: never copied in), and its wiring against the real chart and Dockerfile.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Ajv } from 'ajv';
import { parse } from 'yaml';
import { HELM_BUILD_TIMEOUT_MS, chartDir, gatewayContainer, helmBinaries, one, repoRoot, template } from './helm.js';

const schemaPath = path.resolve(repoRoot, '..', 'shared', 'schemas', 'skaffold-v4beta14.json');
const skaffold = parse(fs.readFileSync(path.join(repoRoot, 'skaffold.yaml'), 'utf8'));
const chartValues = parse(fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8'));

function validator() {
  const schema = JSON.parse(fs.readFileSync(schemaPath, 'utf8'));
  expect(schema.$schema).toBe('http://json-schema.org/draft-07/schema#');
  // strict: false: the schema carries skaffold's own annotation keywords (preferredOrder, x-intellij-*).
  const ajv = new Ajv({ strict: false, allErrors: true });
  return ajv.compile(schema);
}

/** Every helm release of skaffold.yaml, the top-level one and those of profiles. */
function releases(): { where: string; release: any }[] {
  const out: { where: string; release: any }[] = [];
  (skaffold.deploy?.helm?.releases ?? []).forEach((r: any) => out.push({ where: 'deploy', release: r }));
  for (const profile of skaffold.profiles ?? []) {
    (profile.deploy?.helm?.releases ?? []).forEach((r: any) => out.push({ where: `profile ${profile.name}`, release: r }));
  }
  return out;
}

function hasValuePath(values: any, dotted: string): boolean {
  let node = values;
  for (const part of dotted.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return false;
    node = node[part];
  }
  return true;
}

test('skaffold.yaml is valid against the published skaffold/v4beta14 schema', () => {
  const validate = validator();
  expect(skaffold.apiVersion).toBe('skaffold/v4beta14');
  const ok = validate(skaffold);
  expect(validate.errors ?? []).toEqual([]);
  expect(ok).toBe(true);
});

test('the validator is strict: an unknown field or a wrong type is rejected', () => {
  const validate = validator();
  const unknownField = structuredClone(skaffold);
  unknownField.deploy.helm.releases[0].chart = 'charts/api-proxy';
  expect(validate(unknownField)).toBe(false);
  const wrongType = structuredClone(skaffold);
  wrongType.portForward[0].localPort = 'eighty';
  expect(validate(wrongType)).toBe(false);
});

test('setValueTemplates wire the built image (repository, tag, digest) into real chart values', () => {
  const artifacts = skaffold.build.artifacts as { image: string }[];
  expect(artifacts.map((a) => a.image)).toEqual(['api-proxy']);
  const suffix = 'api_proxy'; // skaffold: image name with non-alphanumerics as "_"
  const rels = releases();
  expect(rels.length).toBeGreaterThanOrEqual(1);
  for (const { where, release } of rels) {
    expect({ where, chartPath: release.chartPath }).toEqual({ where, chartPath: 'charts/api-proxy' });
    expect(release.setValueTemplates).toEqual({
      'image.repository': `{{.IMAGE_REPO_${suffix}}}`,
      'image.tag': `{{.IMAGE_TAG_${suffix}}}`,
      'image.digest': `{{.IMAGE_DIGEST_${suffix}}}`,
    });
    for (const key of [...Object.keys(release.setValueTemplates ?? {}), ...Object.keys(release.setValues ?? {})]) {
      expect({ where, key, inValuesYaml: hasValuePath(chartValues, key) }).toEqual({ where, key, inValuesYaml: true });
    }
    for (const file of release.valuesFiles ?? []) expect(fs.existsSync(path.join(repoRoot, file))).toBe(true);
  }
});

describe('what skaffold would deploy', () => {
  let helm3: string;
  beforeAll(() => {
    helm3 = helmBinaries().v3;
  }, HELM_BUILD_TIMEOUT_MS);

  test.each([
    ['a pushed image', 'registry.local/api-proxy', 'v1-abc', 'sha256:' + '0f'.repeat(32), `registry.local/api-proxy:v1-abc@sha256:${'0f'.repeat(32)}`],
    ['a local image (no digest)', 'api-proxy', 'c0ffee', '', 'api-proxy:c0ffee'],
  ])('%s', (_name, repo, tag, digest, image) => {
    for (const { release } of releases()) {
      const args: string[] = [];
      for (const file of release.valuesFiles ?? []) args.push('-f', path.join(repoRoot, file));
      for (const [k, v] of Object.entries(release.setValues ?? {})) args.push('--set', `${k}=${String(v)}`);
      args.push('--set', `image.repository=${repo}`, '--set', `image.tag=${tag}`, '--set', `image.digest=${digest}`);
      const objects = template(helm3, args, release.name, release.namespace);
      expect(gatewayContainer(objects).image).toBe(image);
      // portForward points at the Service this release creates, on its port.
      const svc = one(objects, 'Service');
      for (const pf of skaffold.portForward) {
        expect(pf).toMatchObject({ resourceType: 'service', resourceName: svc.metadata.name, namespace: release.namespace });
        expect(svc['spec'].ports.map((p: any) => p.port)).toContain(pf.port);
      }
    }
  });
});

test('the sync profile targets the Dockerfile build stage and syncs TypeScript into its WORKDIR', () => {
  const profile = (skaffold.profiles as any[]).find((p) => p.name === 'sync');
  const patches = profile.patches as { op: string; path: string; value: any }[];
  expect(patches).toContainEqual({ op: 'add', path: '/build/artifacts/0/docker/target', value: 'build' });
  const sync = patches.find((p) => p.path === '/build/artifacts/0/sync')!.value;
  expect(sync.manual).toEqual([{ src: 'src/**/*.ts', dest: '/app' }]);
  const dockerfile = fs.readFileSync(path.join(repoRoot, 'Dockerfile'), 'utf8');
  const stage = dockerfile.slice(dockerfile.indexOf(' AS build'));
  expect(stage).toMatch(/^WORKDIR \/app$/m);
  expect(stage).toMatch(/^COPY src \.\/src$/m);
});

/** Minimal RFC 6902 add/remove/replace, enough for skaffold profile patches. */
function applyPatch(doc: any, patch: { op: string; path: string; value?: unknown }): void {
  const parts = patch.path
    .split('/')
    .slice(1)
    .map((p) => p.replaceAll('~1', '/').replaceAll('~0', '~'));
  const last = parts.pop()!;
  let parent = doc;
  for (const part of parts) {
    parent = parent[Array.isArray(parent) ? Number(part) : part];
    if (parent === undefined) throw new Error(`patch path ${patch.path} does not exist`);
  }
  const key = Array.isArray(parent) ? (last === '-' ? parent.length : Number(last)) : last;
  if (patch.op === 'remove') {
    if (!(key in parent)) throw new Error(`remove: ${patch.path} does not exist`);
    if (Array.isArray(parent)) parent.splice(key as number, 1);
    else delete parent[key];
  } else if (patch.op === 'add' || patch.op === 'replace') {
    if (patch.op === 'replace' && !(key in parent)) throw new Error(`replace: ${patch.path} does not exist`);
    if (Array.isArray(parent) && patch.op === 'add') parent.splice(key as number, 0, patch.value);
    else parent[key] = patch.value;
  } else {
    throw new Error(`unsupported op ${patch.op}`);
  }
}

test('every profile, once its patches are applied, is still a valid skaffold config', () => {
  const validate = validator();
  for (const profile of skaffold.profiles as any[]) {
    const effective = structuredClone(skaffold);
    delete effective.profiles;
    for (const patch of profile.patches ?? []) applyPatch(effective, patch);
    for (const field of ['build', 'deploy', 'portForward', 'manifests', 'test']) {
      if (profile[field] !== undefined) effective[field] = profile[field];
    }
    const ok = validate(effective);
    expect({ profile: profile.name, errors: validate.errors ?? [] }).toEqual({ profile: profile.name, errors: [] });
    expect(ok).toBe(true);
  }
  // The buildah profile builds the same Dockerfile with a custom command.
  const buildah = (skaffold.profiles as any[]).find((p) => p.name === 'buildah');
  const effective = structuredClone(skaffold);
  for (const patch of buildah.patches) applyPatch(effective, patch);
  expect(effective.build.artifacts[0].docker).toBeUndefined();
  expect(effective.build.artifacts[0].custom.buildCommand).toMatch(/^buildah bud .*-f Dockerfile -t "\$IMAGE"/);
});
