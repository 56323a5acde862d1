/**
 * compose.yaml, validated and normalized by compose-go, the library Docker Compose loads files with
 * (test/tools/build-compose.sh): what `docker compose up` would run, and the gateway's config that
 * goes with it. test/container/run.sh starts these services from the image and sends requests.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix, relative, resolve } from 'node:path';
import { loadConfigFile, parseConfigText } from '../../src/config/load-file.js';
import { composeConfigBinary, normalize, REAL_UPSTREAM_MARK, uncommentRealUpstream, type ComposeProject, type ComposeService } from './compose.js';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const composeFile = join(repoRoot, 'compose.yaml');
const composeText = readFileSync(composeFile, 'utf8');
const BUILD_TIMEOUT_MS = 300_000;

let bin: string;
let project: ComposeProject;
let dir: string;

beforeAll(() => {
  bin = composeConfigBinary();
  project = normalize(composeFile, bin);
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-compose-'));
}, BUILD_TIMEOUT_MS);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function service(p: ComposeProject, name: string): ComposeService {
  const found = p.services[name];
  if (found === undefined) throw new Error(`no service ${name}; services: ${Object.keys(p.services).join(', ')}`);
  return found;
}

/** A compose file written to its own directory (relative paths resolve there), normalized. */
function normalizeText(text: string, name: string): { project: ComposeProject; root: string } {
  const root = join(dir, name);
  mkdirSync(root, { recursive: true });
  writeFileSync(join(root, 'compose.yaml'), text);
  return { project: normalize(join(root, 'compose.yaml'), bin), root };
}

/** The image's default CONFIG_PATH, from the Dockerfile's runtime stage. */
function imageConfigPath(): string {
  const match = /^\s*CONFIG_PATH=(\S+)/m.exec(readFileSync(join(repoRoot, 'Dockerfile'), 'utf8'));
  if (match === null) throw new Error('the Dockerfile sets no CONFIG_PATH');
  return match[1]!;
}

/** The host file behind a path in the gateway's container, through its bind mounts, relative to the project's root. */
function hostPath(gateway: ComposeService, root: string, containerPath: string): string {
  const mount = (gateway.volumes ?? []).find((v) => containerPath.startsWith(`${v.target}/`));
  if (mount === undefined) throw new Error(`${containerPath} is in no volume of the gateway`);
  return join(relative(root, mount.source), posix.relative(mount.target, containerPath));
}

/** The gateway's config file in the repo, as the gateway service would read it. */
function gatewayConfig(p: ComposeProject, root: string): { path: string; text: string } {
  const gateway = service(p, 'gateway');
  const inContainer = gateway.environment?.['CONFIG_PATH'] ?? imageConfigPath();
  const path = hostPath(gateway, root, inContainer);
  return { path, text: readFileSync(join(repoRoot, path), 'utf8') };
}

test('two services: the gateway built from the top-level Dockerfile, the example upstream from that same image', () => {
  expect(project.name).toBe('api-proxy');
  expect(Object.keys(project.services).sort()).toEqual(['gateway', 'upstream']);
  const gateway = service(project, 'gateway');
  const upstream = service(project, 'upstream');
  expect(gateway.build).toEqual({ context: repoRoot, dockerfile: 'Dockerfile' });
  expect(upstream.build).toBeUndefined();
  expect(upstream.image).toBe(gateway.image);
  // Compose would otherwise try to pull the gateway's local image name from Docker Hub.
  expect(upstream.pull_policy).toBe('never');
  // The gateway keeps the image's CMD (node dist/main.js); the upstream runs the compiled demo entry.
  expect(gateway.command ?? null).toBeNull();
  expect(upstream.command).toEqual(['node', 'dist/demo/example-upstream-main.js']);
  expect(existsSync(join(repoRoot, 'src', 'demo', 'example-upstream-main.ts'))).toBe(true);
  expect(gateway.depends_on).toEqual({ upstream: { condition: 'service_started', required: true } });
});

test('the gateway publishes 5000, mounts ./config read-only at /app/config, and both restart unless stopped', () => {
  const gateway = service(project, 'gateway');
  expect(gateway.ports).toEqual([{ mode: 'ingress', target: 5000, published: '5000', protocol: 'tcp' }]);
  expect(gateway.volumes).toEqual([{ type: 'bind', source: join(repoRoot, 'config'), target: '/app/config', read_only: true, bind: {} }]);
  expect(gateway.restart).toBe('unless-stopped');
  expect(service(project, 'upstream').restart).toBe('unless-stopped');
  // Nothing secret by default: no secrets, no key in any environment.
  expect(project.secrets).toBeUndefined();
  expect(gateway.environment ?? {}).toEqual({});
});

test("the gateway's config reaches the upstream by its service name and port, with the README's client key", () => {
  const { path, text } = gatewayConfig(project, repoRoot);
  expect(path).toBe(join('config', 'config.json'));
  const config = parseConfigText(text, path);
  const url = new URL(config.upstreams['default']!.url);
  expect(url.hostname).toBe('upstream');
  expect(url.port).toBe(service(project, 'upstream').environment?.['PORT']);
  expect(url.pathname).toBe('/v1');
  expect(config.client_keys).toEqual([{ id: 'demo', key: 'demo-key' }]);
  expect(config.model_redirects).toEqual({ 'gpt-4': 'example-model-v2' });
  // Loads as the gateway loads it (no secret files to read).
  expect(loadConfigFile(join(repoRoot, path), {}).inputs.upstreams.map((u) => u.name)).toEqual(['default']);
});

test('the real-upstream variant, uncommented, is valid: keys are compose secrets under /run/secrets, named by config/openai.yaml', () => {
  const marks = composeText.split('\n').filter((line) => line.trim() === REAL_UPSTREAM_MARK);
  expect(marks).toHaveLength(2);
  const text = uncommentRealUpstream(composeText);
  expect(text).not.toBe(composeText);
  const { project: variant, root } = normalizeText(text, 'real-upstream');
  const gateway = service(variant, 'gateway');

  expect(variant.secrets).toEqual({
    openai_api_key: { name: 'api-proxy_openai_api_key', file: join(root, 'secrets', 'openai_api_key') },
    client_key: { name: 'api-proxy_client_key', file: join(root, 'secrets', 'client_key') },
  });
  expect(gateway.secrets).toEqual([
    { source: 'openai_api_key', target: '/run/secrets/openai_api_key' },
    { source: 'client_key', target: '/run/secrets/client_key' },
  ]);
  expect(gateway.environment).toEqual({ CONFIG_PATH: '/app/config/openai.yaml' });
  // The rest is the default file's.
  expect({ ...gateway, secrets: undefined, environment: undefined, build: undefined, volumes: undefined }).toEqual({
    ...service(project, 'gateway'),
    secrets: undefined,
    environment: undefined,
    build: undefined,
    volumes: undefined,
  });

  const { path, text: configText } = gatewayConfig(variant, root);
  expect(path).toBe(join('config', 'openai.yaml'));
  const config = parseConfigText(configText, path);
  expect(config.upstreams['default']).toMatchObject({ url: 'https://api.openai.com/v1', api_key_file: '/run/secrets/openai_api_key' });
  expect(config.client_keys).toEqual([{ id: 'local', key_file: '/run/secrets/client_key' }]);
  // Never inline: no key value in the config, and none in the compose file.
  expect(config.upstreams['default']!.api_key).toBeUndefined();
  expect(config.upstreams['default']!.api_key_env).toBeUndefined();
  expect(configText).not.toMatch(/sk-/);
  expect(text).not.toMatch(/sk-/);
  for (const s of Object.values(variant.services)) expect(Object.keys(s.environment ?? {}).filter((k) => k !== 'CONFIG_PATH' && k !== 'PORT')).toEqual([]);
});

test('compose-go refuses what Docker Compose refuses: a misspelt key, a wrong type, the variant half uncommented', () => {
  expect(() => normalizeText(composeText.replace('    restart: unless-stopped', '    restat: unless-stopped'), 'misspelt')).toThrow(
    /services\.gateway\.restat/,
  );
  expect(() => normalizeText(composeText.replace('      - "5000:5000"', '      - { target: "five thousand" }'), 'wrong-type')).toThrow(
    /services\.gateway\.ports\.\[\]\.target/,
  );
  // Only the service's block: its secrets are defined nowhere.
  const serviceBlockOnly = uncommentRealUpstream(composeText.replace(/^# \[real upstream\]$/m, '# (left commented)'));
  expect(serviceBlockOnly).toContain('    secrets:\n      - openai_api_key');
  expect(() => normalizeText(serviceBlockOnly, 'half')).toThrow(/refers to undefined secret openai_api_key/);
});

test('./secrets, where the variant keeps its keys, is ignored by git and outside the image build context', () => {
  const ignored = execFileSync('git', ['check-ignore', '-v', 'secrets/openai_api_key'], { cwd: repoRoot, encoding: 'utf8' });
  expect(ignored).toMatch(/^\.gitignore:\d+:secrets\//);
  // .dockerignore excludes everything, then lets in only what the Dockerfile copies.
  const dockerignore = readFileSync(join(repoRoot, '.dockerignore'), 'utf8')
    .split('\n')
    .filter((l) => l !== '' && !l.startsWith('#'));
  expect(dockerignore[0]).toBe('**');
  expect(dockerignore.filter((l) => l.startsWith('!') && /secrets|config\//.test(l))).toEqual([]);
});
