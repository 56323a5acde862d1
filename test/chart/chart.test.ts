/**
 * The Helm chart, rendered by real helm v3 and v4 binaries: lint --strict, every ci/ values file,
 * and the content that matters (probes, security, RBAC, image wiring, config, shutdown timing).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseConfigText } from '../../src/config/load-file.js';
import {
  HELM_BUILD_TIMEOUT_MS,
  all,
  chartDir,
  ciValuesDir,
  ciValuesFiles,
  gatewayContainer,
  helmBinaries,
  one,
  parseObjects,
  renderedConfig,
  runHelm,
  template,
  type HelmBinaries,
  type K8sObject,
} from './helm.js';

let helm: HelmBinaries;

beforeAll(() => {
  helm = helmBinaries();
}, HELM_BUILD_TIMEOUT_MS);

const ci = (name: string) => path.join(ciValuesDir, name);

const EXPECTED_RULES = [
  { apiGroups: ['apiproxy.io'], resources: ['modelroutes', 'clientpolicies'], verbs: ['get', 'list', 'watch'] },
  { apiGroups: ['apiproxy.io'], resources: ['modelroutes/status', 'clientpolicies/status'], verbs: ['patch', 'update'] },
  { apiGroups: [''], resources: ['secrets'], verbs: ['get', 'list', 'watch'] },
];

/** The status Lease's Role, in the release namespace whatever is watched: the release's own lease only. */
const LEASE_RULES = [
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['create'] },
  { apiGroups: ['coordination.k8s.io'], resources: ['leases'], resourceNames: ['rel-api-proxy-status'], verbs: ['get', 'update'] },
];

/** The lease Role and its binding, checked, and the watch Roles (or bindings) without them. */
function withoutLeaseRole(objs: K8sObject[], kind: 'Role' | 'RoleBinding'): K8sObject[] {
  const lease = all(objs, kind).filter((o) => o.metadata.name === 'rel-api-proxy-lease');
  expect(lease.map((o) => o.metadata.namespace)).toEqual(['apps']);
  if (kind === 'Role') expect(lease[0]!['rules']).toEqual(LEASE_RULES);
  else expect(lease[0]!['roleRef']).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'rel-api-proxy-lease' });
  return all(objs, kind).filter((o) => o !== lease[0]);
}

describe.each(['v3', 'v4'] as const)('helm %s', (version) => {
  const bin = () => helm[version];

  test('lint --strict is clean with default values and with every ci/ values file', () => {
    const runs = [[], ...ciValuesFiles().map((f) => ['-f', f])];
    for (const extra of runs) {
      const res = runHelm(bin(), ['lint', '--strict', chartDir, ...extra]);
      expect({ args: extra, status: res.status, out: res.stdout + res.stderr }).toMatchObject({ status: 0 });
      expect(res.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    }
  });

  test.each([['(defaults)'], ...ciValuesFiles().map((f) => [path.basename(f)])])('template renders valid objects: %s', (name) => {
    const objects = template(bin(), name === '(defaults)' ? [] : ['-f', ci(name)]);
    expect(objects.length).toBeGreaterThanOrEqual(6);
    for (const o of objects) {
      expect(typeof o.apiVersion).toBe('string');
      expect(typeof o.kind).toBe('string');
      expect(o.metadata.name).toMatch(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/);
      expect(o.metadata.name.length).toBeLessThanOrEqual(63);
    }
    // Every object carries the chart's labels.
    for (const o of objects) expect(o.metadata.labels?.['app.kubernetes.io/instance']).toBe('rel');
    // The config the pods get is one the gateway accepts (its own schema, no key files read).
    const cm = all(objects, 'ConfigMap').find((c) => c['data']?.['config.json'] !== undefined)!;
    expect(() => parseConfigText(cm['data']['config.json'], `${name}: config.json`)).not.toThrow();
  });
});

describe('rendered content (helm v3; v4 renders the same, checked below)', () => {
  let objects: K8sObject[];
  beforeAll(() => {
    objects = template(helm.v3);
  });

  test('v3 and v4 render identical manifests for every values file', () => {
    for (const extra of [[], ...ciValuesFiles().map((f) => ['-f', f])]) {
      const a = runHelm(helm.v3, ['template', 'rel', chartDir, '-n', 'apps', ...extra]);
      const b = runHelm(helm.v4, ['template', 'rel', chartDir, '-n', 'apps', ...extra]);
      expect(a.status).toBe(0);
      expect(b.status).toBe(0);
      // Same objects; v4 only differs in blank lines between documents.
      expect(parseObjects(b.stdout)).toEqual(parseObjects(a.stdout));
    }
  });

  test('default objects', () => {
    expect(objects.map((o) => `${o.kind}/${o.metadata.name}`).sort()).toEqual(
      [
        'ConfigMap/rel-api-proxy',
        'Deployment/rel-api-proxy',
        'PodDisruptionBudget/rel-api-proxy',
        'Role/rel-api-proxy',
        'Role/rel-api-proxy-lease',
        'RoleBinding/rel-api-proxy',
        'RoleBinding/rel-api-proxy-lease',
        'Service/rel-api-proxy',
        'ServiceAccount/rel-api-proxy',
        'Pod/rel-api-proxy-test-health',
      ].sort(),
    );
    for (const o of objects) expect(o.metadata.namespace).toBe('apps');
  });

  test('probes: liveness /health, readiness /health/ready, startup /health, on the named port', () => {
    const c = gatewayContainer(objects);
    expect(c.ports).toEqual([{ name: 'http', containerPort: 5000, protocol: 'TCP' }]);
    expect(c.livenessProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(c.readinessProbe.httpGet).toEqual({ path: '/health/ready', port: 'http' });
    expect(c.startupProbe.httpGet).toEqual({ path: '/health', port: 'http' });
    expect(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold).toBeGreaterThanOrEqual(60);
    expect(c.readinessProbe.periodSeconds).toBeLessThan(c.livenessProbe.periodSeconds);
    // A saturated gateway is slow, not dead: it leaves the endpoints (readiness) long before it is restarted.
    expect(c.livenessProbe.timeoutSeconds).toBe(10);
    expect(c.readinessProbe.timeoutSeconds).toBe(2);
    expect(c.livenessProbe.timeoutSeconds * c.livenessProbe.failureThreshold).toBeGreaterThan(
      c.readinessProbe.timeoutSeconds * c.readinessProbe.failureThreshold,
    );
  });

  test('security: non-root 10001, read-only root with an emptyDir /tmp, no capabilities, RuntimeDefault seccomp', () => {
    const pod = one(objects, 'Deployment')['spec'].template.spec;
    expect(pod.securityContext).toEqual({
      runAsNonRoot: true,
      runAsUser: 10001,
      runAsGroup: 10001,
      fsGroup: 10001,
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const c = gatewayContainer(objects);
    expect(c.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      runAsNonRoot: true,
      capabilities: { drop: ['ALL'] },
    });
    const tmp = pod.volumes.find((v: any) => v.name === 'tmp');
    expect(tmp.emptyDir).toEqual({ sizeLimit: '256Mi' }); // tmpSizeLimit: forms held while their model is read
    expect(c.volumeMounts).toContainEqual({ name: 'tmp', mountPath: '/tmp' });
    expect(c.resources.requests).toEqual({ cpu: '100m', memory: '128Mi' });
    expect(c.resources.limits.memory).toBe('512Mi');
  });

  test('env: PORT, CONFIG_PATH and POD_NAMESPACE (downward API)', () => {
    const env = gatewayContainer(objects).env as { name: string; value?: string; valueFrom?: any }[];
    expect(env.find((e) => e.name === 'PORT')?.value).toBe('5000');
    expect(env.find((e) => e.name === 'CONFIG_PATH')?.value).toBe('/app/config/config.json');
    expect(env.find((e) => e.name === 'WORKERS')?.value).toBe('1');
    expect(env.find((e) => e.name === 'POD_NAMESPACE')?.valueFrom).toEqual({ fieldRef: { fieldPath: 'metadata.namespace' } });
  });

  test('workers: a number or "auto" becomes env WORKERS; anything else is refused by the schema', () => {
    const workersEnv = (set: string): string | undefined =>
      (gatewayContainer(template(helm.v3, ['--set-string', set])).env as { name: string; value?: string }[]).find((e) => e.name === 'WORKERS')?.value;
    expect(workersEnv('workers=auto')).toBe('auto');
    expect(
      (gatewayContainer(template(helm.v3, ['--set', 'workers=4'])).env as { name: string; value?: string }[]).find((e) => e.name === 'WORKERS')?.value,
    ).toBe('4');
    for (const bad of ['workers=0', 'workers=65', 'workers=many']) {
      const res = runHelm(helm.v3, ['template', 'rel', chartDir, bad === 'workers=many' ? '--set-string' : '--set', bad]);
      expect(res.status).not.toBe(0);
      expect(res.stderr).toMatch(/workers/);
    }
  });

  test('config is mounted as a directory (no subPath) so ConfigMap updates reach the hot-reloading gateway', () => {
    const c = gatewayContainer(objects);
    const mount = c.volumeMounts.find((m: any) => m.name === 'config');
    expect(mount).toEqual({ name: 'config', mountPath: '/app/config', readOnly: true });
    for (const m of c.volumeMounts) expect(m.subPath).toBeUndefined();
    const pod = one(objects, 'Deployment')['spec'].template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'config').configMap.name).toBe('rel-api-proxy');
  });

  test('only settings hot reload cannot apply roll pods: the kubernetes block, not routes or keys; rollOnSecretChange adds Secrets', () => {
    const annotations = one(objects, 'Deployment')['spec'].template.metadata.annotations ?? {};
    expect(Object.keys(annotations).filter((k) => k.startsWith('checksum/'))).toEqual(['checksum/startup-settings']);
    const startup = (args: string[]) => one(template(helm.v3, args), 'Deployment')['spec'].template.metadata.annotations['checksum/startup-settings'];
    expect(startup(['--set', 'config.modelRedirects.gpt-4=gpt-4o'])).toBe(annotations['checksum/startup-settings']);
    expect(startup(['--set', 'kubernetes.namespaces={team-a}'])).not.toBe(annotations['checksum/startup-settings']);

    const withKey = (key: string) => template(helm.v3, ['--set', 'rollOnSecretChange=true', '--set', `upstreams.default.apiKey.value=${key}`]);
    const a = one(withKey('FAKE-one'), 'Deployment')['spec'].template.metadata.annotations;
    const b = one(withKey('FAKE-two'), 'Deployment')['spec'].template.metadata.annotations;
    expect(a['checksum/upstream-secret']).toMatch(/^[a-f0-9]{64}$/);
    expect(b['checksum/upstream-secret']).not.toBe(a['checksum/upstream-secret']);
    expect(a['checksum/config']).toBeUndefined();
  });

  test('graceful shutdown: preStop sleep and a grace period covering drain + stream deadline', () => {
    const pod = one(objects, 'Deployment')['spec'].template.spec;
    const c = gatewayContainer(objects);
    expect(c.lifecycle.preStop).toEqual({ sleep: { seconds: 5 } });
    // 5 s preStop + 5 s drain + 120 s streams + 10 s slack
    expect(pod.terminationGracePeriodSeconds).toBe(140);

    const old = template(helm.v3, ['--kube-version', '1.29.0']);
    expect(gatewayContainer(old).lifecycle.preStop).toEqual({ exec: { command: ['/bin/sleep', '5'] } });

    const custom = template(helm.v3, [
      '--set',
      'config.shutdown.drainDelayMs=2500',
      '--set',
      'config.shutdown.timeoutMs=600000',
      '--set',
      'lifecycle.preStop=none',
    ]);
    expect(gatewayContainer(custom).lifecycle).toBeUndefined();
    expect(one(custom, 'Deployment')['spec'].template.spec.terminationGracePeriodSeconds).toBe(3 + 600 + 10);
    const fixed = template(helm.v3, ['--set', 'lifecycle.terminationGracePeriodSeconds=42']);
    expect(one(fixed, 'Deployment')['spec'].template.spec.terminationGracePeriodSeconds).toBe(42);
  });

  test('RBAC (default): one Role + RoleBinding in the release namespace with exactly the rules the gateway uses, and the lease Role', () => {
    const [role, ...otherRoles] = withoutLeaseRole(objects, 'Role');
    expect(otherRoles).toEqual([]);
    expect(role!.metadata.namespace).toBe('apps');
    expect(role!['rules']).toEqual(EXPECTED_RULES);
    const [binding] = withoutLeaseRole(objects, 'RoleBinding');
    if (binding === undefined || role === undefined) throw new Error('no watch Role or binding');
    expect(binding.metadata.namespace).toBe('apps');
    expect(binding['roleRef']).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: role.metadata.name });
    expect(binding['subjects']).toEqual([{ kind: 'ServiceAccount', name: 'rel-api-proxy', namespace: 'apps' }]);
    expect(all(objects, 'ClusterRole')).toEqual([]);
    expect(all(objects, 'ClusterRoleBinding')).toEqual([]);
    const pod = one(objects, 'Deployment')['spec'].template.spec;
    expect(pod.serviceAccountName).toBe('rel-api-proxy');
    expect(pod.automountServiceAccountToken).toBe(true);
    expect(one(objects, 'ServiceAccount')['automountServiceAccountToken']).toBe(false);
  });

  test('RBAC (named namespaces): a Role + RoleBinding in each, bound to the release ServiceAccount', () => {
    const objs = template(helm.v3, ['-f', ci('some-namespaces-values.yaml')]);
    const roles = withoutLeaseRole(objs, 'Role');
    expect(roles.map((r) => r.metadata.namespace).sort()).toEqual(['team-a', 'team-b']);
    for (const r of roles) expect(r['rules']).toEqual(EXPECTED_RULES);
    const bindings = withoutLeaseRole(objs, 'RoleBinding');
    expect(bindings.map((b) => b.metadata.namespace).sort()).toEqual(['team-a', 'team-b']);
    for (const b of bindings) {
      expect(b['subjects']).toEqual([{ kind: 'ServiceAccount', name: 'rel-api-proxy', namespace: 'apps' }]);
    }
    expect(all(objs, 'ClusterRole')).toEqual([]);
    expect(renderedConfig(objs).kubernetes.namespaces).toEqual(['team-a', 'team-b']);
  });

  test('RBAC (all namespaces): ClusterRole + ClusterRoleBinding and no Roles but the lease one', () => {
    const objs = template(helm.v3, ['-f', ci('all-namespaces-values.yaml')]);
    expect(withoutLeaseRole(objs, 'Role')).toEqual([]);
    expect(withoutLeaseRole(objs, 'RoleBinding')).toEqual([]);
    const cr = one(objs, 'ClusterRole');
    expect(cr['rules']).toEqual(EXPECTED_RULES);
    expect(cr.metadata.namespace).toBeUndefined();
    const crb = one(objs, 'ClusterRoleBinding');
    expect(crb['roleRef']).toEqual({ apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: cr.metadata.name });
    expect(crb['subjects']).toEqual([{ kind: 'ServiceAccount', name: 'rel-api-proxy', namespace: 'apps' }]);
    expect(renderedConfig(objs).kubernetes.namespaces).toEqual(['*']);
    // Two releases in two namespaces do not collide on the cluster-scoped names.
    const other = one(template(helm.v3, ['-f', ci('all-namespaces-values.yaml')], 'rel', 'other'), 'ClusterRole');
    expect(other.metadata.name).not.toBe(cr.metadata.name);
  });

  test('RBAC: "*" mixed with names is refused', () => {
    const res = runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'kubernetes.namespaces={*,a}']);
    expect(res.status).not.toBe(0);
    expect(res.stderr).toMatch(/"\*" must be the only entry/);
  });

  test('kubernetes disabled: no RBAC, no token, client keys from the chart Secret as files', () => {
    const objs = template(helm.v3, ['-f', ci('kubernetes-disabled-values.yaml')]);
    expect([...all(objs, 'Role'), ...all(objs, 'ClusterRole'), ...all(objs, 'RoleBinding')]).toEqual([]);
    const pod = one(objs, 'Deployment')['spec'].template.spec;
    expect(pod.automountServiceAccountToken).toBe(false);
    const config = renderedConfig(objs);
    expect(config.kubernetes.enabled).toBe(false);
    expect(config.client_keys).toEqual([{ id: 'trial', key_file: '/var/run/secrets/api-proxy/client-keys/trial' }]);
    const secret = one(objs, 'Secret', 'rel-api-proxy-client-keys');
    expect(Buffer.from(secret['data'].trial, 'base64').toString()).toBe('sk-client-FAKE-trial-0000000000000000');
    expect(secret.metadata.labels?.['apiproxy.io/client-keys']).toBeUndefined(); // not discovered twice
    expect(gatewayContainer(objs).lifecycle.preStop.exec.command).toEqual(['/bin/sleep', '5']);
  });

  test('config.json: new (snake_case) form rendered from values', () => {
    expect(renderedConfig(objects)).toEqual({
      upstreams: {
        default: {
          url: 'https://api.openai.com/v1',
          timeouts: { connect_ms: 5000, headers_ms: 600000, idle_ms: 300000 },
          queue_timeout_ms: 10000,
          max_idle_connections: 256,
          tls: { insecure_skip_verify: false },
          retry: { attempts: 2, backoff: { base_ms: 100, max_ms: 2000 }, conditions: ['connect_failure', 429, 502, 503, 504] },
          outlier: { consecutive_failures: 5, ejection_ms: 30000, max_ejection_ms: 300000, max_ejected_percent: 50 },
          http2: 'auto',
        },
      },
      retry_budget_ms: 120000,
      model_redirects: {},
      body_limit: 8388608,
      log_level: 'info',
      access_log: true,
      unknown_models: 'passthrough',
      answer_model: 'requested',
      shutdown: { drain_delay_ms: 5000, timeout_ms: 120000 },
      kubernetes: { enabled: true, namespaces: [], client_key_selector: 'apiproxy.io/client-keys=true', lease_name: 'rel-api-proxy-status' },
      tracing: { enabled: false },
      rate_limits: { fail_open: true },
      usage: { request_stream_usage: true },
    });
  });

  test('rateLimits: a Redis the pods share, its password and CA Secrets mounted as the files the config names, its port opened', () => {
    const objs = template(helm.v3, ['-f', ci('everything-on-values.yaml')]);
    const config = renderedConfig(objs);
    expect(config.rate_limits).toEqual({
      fail_open: false,
      redis: {
        url: 'rediss://redis-master.redis.svc:6379/0',
        username: 'api-proxy',
        password_file: '/var/run/secrets/api-proxy/redis/password',
        tls: { ca_file: '/var/run/secrets/api-proxy/redis-ca/ca.crt', insecure_skip_verify: false },
        timeout_ms: 200,
        key_prefix: 'apiproxy:eu:',
      },
    });
    expect(config.usage).toEqual({ request_stream_usage: false });
    const pod = one(objs, 'Deployment')['spec'].template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'redis-password').secret).toEqual({
      secretName: 'redis',
      items: [{ key: 'redis-password', path: 'password' }],
    });
    expect(pod.volumes.find((v: any) => v.name === 'redis-ca').secret).toEqual({ secretName: 'redis-ca', items: [{ key: 'ca.crt', path: 'ca.crt' }] });
    const mounts = gatewayContainer(objs).volumeMounts.map((m: any) => [m.name, m.mountPath]);
    expect(mounts).toEqual(
      expect.arrayContaining([
        ['redis-password', '/var/run/secrets/api-proxy/redis'],
        ['redis-ca', '/var/run/secrets/api-proxy/redis-ca'],
      ]),
    );
    const egress = one(objs, 'NetworkPolicy')['spec'].egress as { ports: { port: number }[] }[];
    expect(egress.some((rule) => rule.ports.map((p) => p.port).join() === '6379')).toBe(true);
    // Without a URL nothing of Redis is rendered.
    const plain = template(helm.v3, ['--set', 'rateLimits.redis.passwordSecret=redis']);
    expect(renderedConfig(plain).rate_limits).toEqual({ fail_open: true });
    expect(one(plain, 'Deployment')['spec'].template.spec.volumes.some((v: any) => v.name === 'redis-password')).toBe(false);
    expect(runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'rateLimits.redis.url=http://redis:6379']).status).not.toBe(0);
    expect(runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'rateLimits.redis.timeoutMs=0']).status).not.toBe(0);
  });

  test('failover: retry, outlier, the retry budget and route priorities from values, valid for the gateway; bad ones refused', () => {
    const objs = template(helm.v3, [
      '--set',
      'upstreams.default.retry.attempts=3',
      '--set',
      'upstreams.default.retry.conditions={connect_failure,headers_timeout,reset,429,500}',
      '--set',
      'upstreams.default.outlier.consecutiveFailures=0',
      '--set',
      'upstreams.backup.url=http://backup:8000/v1',
      '--set',
      'upstreams.backup.outlier.maxEjectedPercent=100',
      '--set',
      'config.retryBudgetMs=30000',
      '--set-json',
      'config.routes=[{"model":"chat","targets":[{"model":"gpt-4o"},{"model":"gpt-4o","upstream":"backup","priority":1}]}]',
    ]);
    const config = renderedConfig(objs);
    expect(config.upstreams.default.retry).toEqual({
      attempts: 3,
      backoff: { base_ms: 100, max_ms: 2000 },
      conditions: ['connect_failure', 'headers_timeout', 'reset', 429, 500],
    });
    expect(config.upstreams.default.outlier.consecutive_failures).toBe(0);
    expect(config.upstreams.backup).toEqual({ url: 'http://backup:8000/v1', outlier: { max_ejected_percent: 100 } });
    expect(config.retry_budget_ms).toBe(30000);
    expect(config.routes[0].targets[1]).toEqual({ model: 'gpt-4o', upstream: 'backup', priority: 1 });
    const cm = one(objs, 'ConfigMap', 'rel-api-proxy');
    const parsed = parseConfigText(cm['data']['config.json'], 'failover');
    expect(parsed.upstreams['default']!.retry.conditions).toEqual(['connect_failure', 'headers_timeout', 'reset', 429, 500]);
    for (const bad of [
      'upstreams.default.retry.attempts=0',
      'upstreams.default.retry.conditions={timeout}',
      'upstreams.default.retry.conditions={200}',
      'upstreams.default.retry.backoff.baseMs=-1',
      'upstreams.default.retry.tries=2',
      'upstreams.default.outlier.maxEjectedPercent=101',
      'upstreams.default.outlier.ejectionMs=0',
      'config.retryBudgetMs=0',
    ]) {
      expect([bad, runHelm(helm.v3, ['template', 'rel', chartDir, '--set', bad]).status]).not.toEqual([bad, 0]);
    }
    const badPriority = runHelm(helm.v3, ['template', 'rel', chartDir, '--set-json', 'config.routes=[{"model":"m","targets":[{"model":"t","priority":-1}]}]']);
    expect(badPriority.status).not.toBe(0);
  });

  test('answer_model: config.answerModel is the global default; a redirect or a route may set its own; the gateway accepts it', () => {
    const objs = template(helm.v3, [
      '--set',
      'config.answerModel=upstream',
      '--set-json',
      'config.modelRedirects={"gpt-4":"gpt-4o","legacy":{"model":"gpt-3.5-turbo","answer_model":"requested"}}',
      '--set-json',
      'config.routes=[{"model":"r","targets":[{"model":"t"}],"answer_model":"requested"}]',
    ]);
    const config = renderedConfig(objs);
    expect(config.answer_model).toBe('upstream');
    expect(config.model_redirects).toEqual({ 'gpt-4': 'gpt-4o', legacy: { model: 'gpt-3.5-turbo', answer_model: 'requested' } });
    expect(config.routes[0].answer_model).toBe('requested');
    const cm = one(objs, 'ConfigMap', 'rel-api-proxy');
    expect(parseConfigText(cm['data']['config.json'], 'answer_model').answer_model).toBe('upstream');
  });

  test('tracing: values become the tracing block (empty ones left to the OTEL_* variables) and open the collector ports', () => {
    const objs = template(helm.v3, ['-f', ci('everything-on-values.yaml')]);
    expect(renderedConfig(objs).tracing).toEqual({
      enabled: true,
      endpoint: 'http://otel-collector.observability:4318',
      service_name: 'api-proxy-eu',
      sampler: 'parentbased_traceidratio',
      sampler_arg: 0.25,
      max_queue_size: 4096,
    });
    const egress = one(objs, 'NetworkPolicy')['spec'].egress as { ports: { port: number }[] }[];
    expect(egress.some((rule) => rule.ports.map((p) => p.port).join() === '4317,4318')).toBe(true);
    expect(runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'tracing.protocol=udp']).status).not.toBe(0);
    expect(runHelm(helm.v3, ['template', 'rel', chartDir, '--set-json', 'tracing.samplerArg=1.5']).status).not.toBe(0);
  });

  test('upstream tls: a CA Secret mounted as the file the config names, valid for the gateway', () => {
    const objs = template(helm.v3, ['--set', 'upstreams.default.tls.caSecret=private-ca']);
    const config = renderedConfig(objs);
    expect(config.upstreams.default.tls).toEqual({ ca_file: '/var/run/secrets/api-proxy/upstream-ca/default/ca.crt', insecure_skip_verify: false });
    const pod = one(objs, 'Deployment')['spec'].template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'upstream-ca-default').secret).toEqual({
      secretName: 'private-ca',
      items: [{ key: 'ca.crt', path: 'ca.crt' }],
    });
    expect(gatewayContainer(objs).volumeMounts.find((m: any) => m.name === 'upstream-ca-default')).toEqual({
      name: 'upstream-ca-default',
      mountPath: '/var/run/secrets/api-proxy/upstream-ca/default',
      readOnly: true,
    });
    const cm = one(objs, 'ConfigMap', 'rel-api-proxy');
    expect(() => parseConfigText(cm['data']['config.json'], 'tls')).not.toThrow();
    expect(runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'upstreams.default.tls.verify=true']).status).not.toBe(0);
  });

  test('egress proxy, HTTP/2, servername, client certificate: Secrets mounted as the files the config names, valid for the gateway', () => {
    const objs = template(helm.v3, ['-f', ci('egress-proxy-values.yaml')]);
    const config = renderedConfig(objs);
    expect(config.upstreams.default.proxy).toEqual({
      url: 'http://proxy.corp.example:3128',
      username: 'api-proxy',
      password_file: '/var/run/secrets/api-proxy/upstream-proxy/default/password',
    });
    expect(config.upstreams.vllm.http2).toBe('on');
    expect(config.upstreams.vllm.tls).toEqual({
      insecure_skip_verify: false,
      ca_file: '/var/run/secrets/api-proxy/upstream-ca/vllm/ca.crt',
      servername: 'vllm.inference.internal',
      client_cert_file: '/var/run/secrets/api-proxy/upstream-client-cert/vllm/tls.crt',
      client_key_file: '/var/run/secrets/api-proxy/upstream-client-cert/vllm/tls.key',
    });
    const pod = one(objs, 'Deployment')['spec'].template.spec;
    expect(pod.volumes.find((v: any) => v.name === 'upstream-proxy-default').secret).toEqual({
      secretName: 'egress-proxy',
      items: [{ key: 'pw', path: 'password' }],
    });
    expect(pod.volumes.find((v: any) => v.name === 'upstream-client-cert-vllm').secret).toEqual({
      secretName: 'api-proxy-mtls',
      items: [
        { key: 'tls.crt', path: 'tls.crt' },
        { key: 'tls.key', path: 'tls.key' },
      ],
    });
    const mounts = gatewayContainer(objs).volumeMounts;
    expect(mounts.find((m: any) => m.name === 'upstream-proxy-default').mountPath).toBe('/var/run/secrets/api-proxy/upstream-proxy/default');
    expect(mounts.find((m: any) => m.name === 'upstream-client-cert-vllm').mountPath).toBe('/var/run/secrets/api-proxy/upstream-client-cert/vllm');
    const env = gatewayContainer(objs).env;
    expect(env.filter((e: any) => /PROXY$/.test(e.name))).toEqual([
      { name: 'HTTPS_PROXY', value: 'http://proxy.corp.example:3128' },
      { name: 'NO_PROXY', value: '.svc,.cluster.local' },
    ]);
    // The gateway's own schema accepts what the chart renders.
    const cm = one(objs, 'ConfigMap', 'rel-api-proxy');
    expect(() => parseConfigText(cm['data']['config.json'], 'egress')).not.toThrow();
    // Defaults: no proxy variables, nothing mounted for either.
    expect(gatewayContainer(objects).env.filter((e: any) => /PROXY$/.test(e.name))).toEqual([]);
    expect(renderedConfig(objects).upstreams.default.proxy).toBeUndefined();
  });

  test('a proxy password Secret without a user name, or credentials without a URL, fail the render', () => {
    const noUser = runHelm(helm.v3, [
      'template',
      'rel',
      chartDir,
      '--set',
      'upstreams.default.proxy.url=http://p:3128',
      '--set',
      'upstreams.default.proxy.passwordSecret=s',
    ]);
    expect(noUser.status).not.toBe(0);
    expect(noUser.stderr).toMatch(/passwordSecret needs proxy.username/);
    const noUrl = runHelm(helm.v3, ['template', 'rel', chartDir, '--set', 'upstreams.default.proxy.username=u']);
    expect(noUrl.status).not.toBe(0);
    expect(noUrl.stderr).toMatch(/need proxy.url/);
  });

  test('upstream keys: existing Secret or chart Secret, mounted as the file the config names', () => {
    const objs = template(helm.v3, ['-f', ci('everything-on-values.yaml')]);
    const config = renderedConfig(objs);
    const pod = one(objs, 'Deployment')['spec'].template.spec;
    const c = gatewayContainer(objs);
    const volumeFor = (file: string) => {
      const mount = c.volumeMounts.find((m: any) => path.dirname(file) === m.mountPath);
      expect(mount).toBeDefined();
      expect(mount.readOnly).toBe(true);
      return pod.volumes.find((v: any) => v.name === mount.name);
    };
    const def = volumeFor(config.upstreams.default.api_key_file);
    expect(def.secret).toEqual({ secretName: 'openai-upstream', items: [{ key: 'api-key', path: 'api-key' }] });
    const local = volumeFor(config.upstreams.local.api_key_file);
    expect(local.secret).toEqual({ secretName: 'rel-api-proxy-upstream', items: [{ key: 'local', path: 'api-key' }] });
    expect(path.basename(config.upstreams.local.api_key_file)).toBe('api-key');
    const secret = one(objs, 'Secret', 'rel-api-proxy-upstream');
    expect(Object.keys(secret['data'])).toEqual(['local']);
    expect(Buffer.from(secret['data'].local, 'base64').toString()).toBe('FAKE-local-upstream-key');
    expect(config.upstreams.default.timeouts).toEqual({ connect_ms: 3000, headers_ms: 60000, idle_ms: 90000 });
    expect(config.model_redirects).toEqual({ 'gpt-4': 'gpt-4o' });

    const existing = template(helm.v3, ['-f', ci('existing-secret-values.yaml')]);
    expect(all(existing, 'Secret')).toEqual([]);
    const both = runHelm(helm.v3, ['template', 'rel', chartDir, '-f', ci('existing-secret-values.yaml'), '--set', 'upstreams.default.apiKey.value=x']);
    expect(both.status).not.toBe(0);
    expect(both.stderr).toMatch(/set existingSecret or value, not both/);
  });

  test('image: repository:tag (tag defaults to appVersion), digest pins the image', () => {
    expect(gatewayContainer(objects).image).toBe('ghcr.io/example/api-proxy:0.1.0');
    const digest = 'sha256:' + 'ab'.repeat(32);
    const pinned = template(helm.v3, ['--set', 'image.repository=reg.local/api-proxy', '--set', 'image.tag=abc123', '--set', `image.digest=${digest}`]);
    expect(gatewayContainer(pinned).image).toBe(`reg.local/api-proxy:abc123@${digest}`);
    // skaffold's wiring for an image that was not pushed: empty digest.
    const local = template(helm.v3, ['--set', 'image.repository=api-proxy', '--set', 'image.tag=deadbeef', '--set', 'image.digest=']);
    expect(gatewayContainer(local).image).toBe('api-proxy:deadbeef');
    const everything = template(helm.v3, ['-f', ci('everything-on-values.yaml')]);
    expect(gatewayContainer(everything).image).toBe(
      'registry.example.com/platform/api-proxy:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
    );
    // The helm test pod uses the same image (its node calls /health).
    expect(one(everything, 'Pod')['spec'].containers[0].image).toBe(gatewayContainer(everything).image);
  });

  test('Service, PDB and helm test hook', () => {
    const svc = one(objects, 'Service');
    expect(svc['spec'].ports).toEqual([{ name: 'http', port: 80, targetPort: 'http', protocol: 'TCP' }]);
    expect(svc['spec'].selector).toEqual(one(objects, 'Deployment')['spec'].selector.matchLabels);
    expect(one(objects, 'PodDisruptionBudget')['spec'].maxUnavailable).toBe(1);
    const test = one(objects, 'Pod');
    expect(test.metadata.annotations?.['helm.sh/hook']).toBe('test');
    expect(test['spec'].restartPolicy).toBe('Never');
    const cmd = test['spec'].containers[0].command as string[];
    expect(cmd[0]).toBe('node');
    expect(cmd.at(-1)).toBe('http://rel-api-proxy.apps.svc:80/health');
    expect(test['spec'].containers[0].securityContext.readOnlyRootFilesystem).toBe(true);
  });

  test('everything-on: HPA, ServiceMonitor, NetworkPolicy, dashboard, PDB minAvailable', () => {
    const objs = template(helm.v3, ['-f', ci('everything-on-values.yaml')]);
    const deployment = one(objs, 'Deployment');
    expect(deployment['spec'].replicas).toBeUndefined(); // the HPA owns it
    const hpa = one(objs, 'HorizontalPodAutoscaler');
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa['spec'].scaleTargetRef).toEqual({ apiVersion: 'apps/v1', kind: 'Deployment', name: deployment.metadata.name });
    expect(hpa['spec'].minReplicas).toBe(3);
    expect(hpa['spec'].metrics.map((m: any) => m.resource.name)).toEqual(['cpu', 'memory']);
    const sm = one(objs, 'ServiceMonitor');
    expect(sm['spec'].endpoints[0]).toMatchObject({ port: 'http', path: '/metrics' });
    expect(sm.metadata.labels?.['release']).toBe('kube-prometheus-stack');
    const np = one(objs, 'NetworkPolicy');
    expect(np['spec'].policyTypes).toEqual(['Ingress', 'Egress']);
    expect(np['spec'].ingress[0].ports).toEqual([{ port: 'http', protocol: 'TCP' }]);
    expect(np['spec'].egress.length).toBe(5); // DNS, Kubernetes API, the trace collector, Redis, upstreams
    expect(one(objs, 'PodDisruptionBudget')['spec']).toMatchObject({ minAvailable: 2 });
    expect(gatewayContainer(objs).lifecycle.preStop).toEqual({ sleep: { seconds: 8 } });
    expect(deployment['spec'].template.spec.terminationGracePeriodSeconds).toBe(8 + 10 + 300 + 10);

    const dash = one(objs, 'ConfigMap', 'rel-api-proxy-dashboard');
    expect(dash.metadata.labels?.['grafana_dashboard']).toBe('1');
    expect(dash.metadata.annotations?.['grafana_folder']).toBe('api-proxy');
    const json = JSON.parse(dash['data']['api-proxy.json']);
    const exprs = JSON.stringify(json.panels.flatMap((p: any) => p.targets.map((t: any) => t.expr)));
    for (const metric of [
      'apiproxy_requests_total',
      'apiproxy_request_duration_seconds_bucket',
      'apiproxy_upstream_ttfb_seconds_bucket',
      'apiproxy_active_requests',
      'apiproxy_active_streams',
      'apiproxy_config_reloads_total',
      'apiproxy_upstream_errors_total',
      'apiproxy_tokens_total',
      'apiproxy_rate_limited_total',
      'apiproxy_rate_limit_store_up',
      'apiproxy_rate_limit_store_bypassed_total',
      'apiproxy_usage_unknown_total',
    ]) {
      expect(exprs).toContain(metric);
    }
    expect(json.uid).toBe('api-proxy');
  });
});

describe('values.schema.json rejects unknown and mistyped values (helm exits non-zero)', () => {
  const cases: [string, string[], RegExp][] = [
    ['unknown top-level key', ['--set', 'replicas=3'], /additional properties 'replicas' not allowed/i],
    ['unknown nested key', ['--set', 'upstreams.default.apiKey.secretName=x'], /additional properties 'secretName' not allowed/i],
    ['unknown key in a ci-style values file', ['--set', 'metrics.serviceMonitor.enable=true'], /additional properties 'enable' not allowed/i],
    ['string for an integer', ['--set-string', 'replicaCount=two'], /replicaCount/],
    ['string for a boolean', ['--set-string', 'kubernetes.enabled=yes'], /kubernetes/],
    ['bad enum', ['--set', 'image.pullPolicy=Sometimes'], /pullPolicy/],
    ['bad digest', ['--set', 'image.digest=latest'], /digest/],
    ['bad upstream name', ['--set', 'upstreams.Bad_Name.url=https://x'], /Bad_Name/],
    ['non-http upstream URL', ['--set', 'upstreams.default.url=ftp://x'], /url/],
    ['credentials in a proxy URL', ['--set', 'upstreams.default.proxy.url=http://user:pw@p:3128'], /proxy/],
    ['a proxy URL with a path', ['--set', 'upstreams.default.proxy.url=http://p:3128/x'], /proxy/],
    ['an unknown http2 mode', ['--set', 'upstreams.default.http2=maybe'], /http2/],
    ['a servername with a space', ['--set', 'upstreams.default.tls.servername=a b'], /servername/],
    ['credentials in egressProxy', ['--set', 'egressProxy.httpsProxy=http://user:pw@p:3128'], /httpsProxy/],
    ['bad answerModel', ['--set', 'config.answerModel=alias'], /answerModel/],
    ['bad answer_model in a redirect', ['--set-json', 'config.modelRedirects={"a":{"model":"b","answer_model":"alias"}}'], /modelRedirects/],
    ['a /tmp size without a unit', ['--set', 'tmpSizeLimit=256'], /tmpSizeLimit/],
  ];
  test.each(cases)('%s', (_name, args, message) => {
    for (const bin of [helm.v3, helm.v4]) {
      const res = runHelm(bin, ['template', 'rel', chartDir, ...args]);
      expect(res.status).not.toBe(0);
      expect(res.stderr).toMatch(message);
    }
  });

  test('every object with declared properties in the schema sets additionalProperties: false', () => {
    const schema = JSON.parse(fs.readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8'));
    const walk = (node: any, where: string) => {
      if (node?.type === 'object' && node.properties) {
        expect({ where, additionalProperties: node.additionalProperties }).toEqual({ where, additionalProperties: false });
        for (const [k, v] of Object.entries(node.properties)) walk(v, `${where}.${k}`);
      }
      if (node?.patternProperties) for (const v of Object.values(node.patternProperties)) walk(v, `${where}.*`);
      if (node?.items) walk(node.items, `${where}[]`);
    };
    walk(schema, '$');
  });
});

test('the chart ships the CRDs (ModelRoute, ClientPolicy) byte-identical to crds/', () => {
  const files = ['clientpolicies.apiproxy.io.yaml', 'modelroutes.apiproxy.io.yaml'];
  for (const file of files) {
    const source = fs.readFileSync(path.join(chartDir, '..', '..', 'crds', file));
    const shipped = fs.readFileSync(path.join(chartDir, 'crds', file));
    expect({ file, same: shipped.equals(source) }).toEqual({ file, same: true });
  }
  expect(fs.readdirSync(path.join(chartDir, 'crds')).sort()).toEqual(files);
  expect(fs.readdirSync(path.join(chartDir, '..', '..', 'crds')).sort()).toEqual(files);
});
