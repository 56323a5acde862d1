/**
 * A real kube-apiserver + etcd for tests.
 *
 *   const cluster = await startCluster({ crds: true });   // in beforeAll, CLUSTER_START_TIMEOUT_MS
 *   ...
 *   await cluster.stop();                                  // in afterAll
 *
 * The binaries are built (once, cached outside the repo) by
 * test/tools/build-k8s.sh; this module runs that script, which returns at once
 * when the cache is warm. Anything that goes wrong throws: tests fail, they
 * never skip.
 *
 * Each cluster gets its own temp dir and ephemeral ports on 127.0.0.1, so
 * several test files (jest workers) can each run one concurrently.
 *
 * Authentication: static token file (admin token in group system:masters) and
 * service-account tokens (TokenRequest API). Authorization: RBAC.
 * There is no controller-manager: namespaces never finish deleting, no
 * ServiceAccount gets created automatically, no garbage collection, no pods run.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { parseAllDocuments, stringify } from 'yaml';

export interface TestCluster {
  server: string; // https://127.0.0.1:<port>
  kubeconfigPath: string; // admin kubeconfig file (token auth, CA data)
  adminToken: string;
  dir: string; // temp dir of this cluster (deleted by stop())
  kubeConfig(): KubeConfig; // @kubernetes/client-node KubeConfig for admin
  /** Writes a kubeconfig that authenticates with the given bearer token; returns its path. */
  writeKubeconfig(token: string, namespace?: string): string;
  /** Creates a ServiceAccount (if missing) and returns a token for it via the TokenRequest API. */
  serviceAccountToken(namespace: string, name: string): Promise<string>;
  applyCrds(): Promise<void>; // applies every crds/*.yaml of the repo and waits until Established
  stopApiServer(): Promise<void>; // kill kube-apiserver only (etcd keeps data)
  startApiServer(): Promise<void>; // start it again on the SAME port, wait for /readyz
  stop(): Promise<void>; // kill everything, remove dir

  // ---- additions beyond the base API ----
  /** PEM CA bundle that verifies the API server's serving certificate. */
  caData: string;
  /**
   * Raw HTTPS request to the API server (admin token unless opts.token is given).
   * `body` objects are sent as JSON (or as-is if a string). Never throws on HTTP
   * status; `json` is the parsed body when it is JSON.
   */
  request(method: string, urlPath: string, body?: unknown, opts?: RequestOptions): Promise<ApiResponse>;
  /** Creates the namespace if it does not exist. */
  ensureNamespace(name: string): Promise<void>;
  /** Tail of the kube-apiserver / etcd stderr logs (for debugging). */
  logs(): { apiServer: string; etcd: string };
  /** etcd's client URL (its v3 HTTP gateway serves e.g. /v3/kv/compaction). */
  etcdUrl: string;
}

export interface RequestOptions {
  token?: string;
  contentType?: string;
  headers?: Record<string, string>;
  timeoutMs?: number;
}

export interface ApiResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: any;
}

/** Suggested timeout for the beforeAll that calls startCluster (covers a cold build too). */
export const CLUSTER_START_TIMEOUT_MS = 30 * 60_000;

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = path.resolve(here, '..', '..', '..');
const BUILD_SCRIPT = path.join(REPO_ROOT, 'test', 'tools', 'build-k8s.sh');
const CRD_DIR = path.join(REPO_ROOT, 'crds');

// ---------------------------------------------------------------- processes

const children = new Set<ChildProcess>();
const liveDirs = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const c of children) {
      try {
        c.kill('SIGKILL');
      } catch {
        /* already gone */
      }
    }
    for (const d of liveDirs) {
      try {
        fs.rmSync(d, { recursive: true, force: true, maxRetries: 3 });
      } catch {
        /* best effort */
      }
    }
  });
}

/**
 * One per cluster: when this node process disappears without stop() having
 * run (a crashed or killed jest worker — note that inside jest, process.on('exit')
 * registers on jest's copy of `process` and never fires), kill the cluster's
 * processes (pid files in `dir`, checked against /proc/<pid>/cmdline) and
 * remove `dir`. Exits by itself within a second once stop() removed `dir`.
 */
function spawnWatchdog(dir: string): void {
  const script = [
    'D="$1"; P="$2"',
    'while kill -0 "$P" 2>/dev/null && [ -d "$D" ]; do sleep 1; done',
    '[ -d "$D" ] || exit 0',
    'for f in "$D"/*.pid; do',
    '  [ -f "$f" ] || continue',
    '  p=$(cat "$f")',
    '  if [ -n "$p" ] && tr "\\000" " " <"/proc/$p/cmdline" 2>/dev/null | grep -qF -- "$D"; then kill -9 "$p"; fi',
    'done',
    'sleep 0.5',
    'rm -rf "$D"',
  ].join('\n');
  const w = spawn('/bin/sh', ['-c', script, 'api-proxy-k8s-watchdog', dir, String(process.pid)], {
    stdio: 'ignore',
    detached: true,
  });
  w.unref();
}

function tail(file: string, max = 4000): string {
  try {
    const s = fs.readFileSync(file, 'utf8');
    return s.length > max ? '…' + s.slice(-max) : s;
  } catch {
    return '';
  }
}

interface Proc {
  child: ChildProcess;
  exited: Promise<void>;
  exitInfo: () => string | undefined;
}

function startProcess(bin: string, args: string[], logFile: string, pidFile: string): Proc {
  installExitHook();
  const fd = fs.openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd] });
  fs.closeSync(fd);
  let info: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      info = `exited with ${signal ?? `code ${code}`}`;
      children.delete(child);
      fs.rmSync(pidFile, { force: true });
      resolve();
    });
    child.once('error', (err) => {
      info = `failed to start: ${err.message}`;
      children.delete(child);
      resolve();
    });
  });
  children.add(child);
  if (child.pid !== undefined) fs.writeFileSync(pidFile, String(child.pid));
  child.unref();
  return { child, exited, exitInfo: () => info };
}

async function killProcess(p: Proc | undefined, graceMs = 5000): Promise<void> {
  if (!p || p.exitInfo() !== undefined) return;
  p.child.kill('SIGTERM');
  const timer = setTimeout(() => p.child.kill('SIGKILL'), graceMs);
  await p.exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------- helpers

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('no port'));
        return;
      }
      const port = addr.port;
      srv.close(() => resolve(port));
    });
  });
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let binDirPromise: Promise<string> | undefined;

/** Runs test/tools/build-k8s.sh (quick when cached) and returns the binaries' directory. */
export function k8sBinDir(): Promise<string> {
  binDirPromise ??= new Promise<string>((resolve, reject) => {
    execFile(
      'bash',
      [BUILD_SCRIPT],
      // env: explicit, so that changes a test makes to process.env (jest's copy) apply.
      { cwd: REPO_ROOT, env: process.env, maxBuffer: 64 * 1024 * 1024, timeout: CLUSTER_START_TIMEOUT_MS },
      (err, stdout, stderr) => {
        if (err) {
          reject(new Error(`${BUILD_SCRIPT} failed: ${err.message}\n${stderr.slice(-4000)}`));
          return;
        }
        const dir = stdout.trim().split('\n').pop() ?? '';
        for (const b of ['kube-apiserver', 'etcd']) {
          if (!fs.existsSync(path.join(dir, b))) {
            reject(new Error(`${BUILD_SCRIPT} printed '${dir}' but ${b} is not there\n${stderr.slice(-4000)}`));
            return;
          }
        }
        resolve(dir);
      },
    );
  });
  binDirPromise.catch(() => {
    binDirPromise = undefined; // allow a retry
  });
  return binDirPromise;
}

function httpsRequest(
  server: string,
  ca: string | undefined,
  method: string,
  urlPath: string,
  body: unknown,
  token: string,
  opts: RequestOptions = {},
): Promise<ApiResponse> {
  const url = new URL(urlPath, server);
  const payload = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  headers.Authorization = `Bearer ${token}`;
  if (payload !== undefined) {
    headers['Content-Type'] = opts.contentType ?? 'application/json';
    headers['Content-Length'] = String(Buffer.byteLength(payload));
  }
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      {
        method,
        headers,
        ...(ca ? { ca } : { rejectUnauthorized: false }),
        agent: false,
        timeout: opts.timeoutMs ?? 30_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = text ? JSON.parse(text) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout: ${method} ${url.href}`)));
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

// ---------------------------------------------------------------- cluster

export interface StartClusterOptions {
  /** Apply every crds/*.yaml and wait until Established (default false). */
  crds?: boolean;
  /** Take kube-apiserver and etcd from this directory instead of running test/tools/build-k8s.sh. */
  binDir?: string;
  /**
   * Serve watches from etcd instead of the API server's watch cache (default
   * true = cache on). Without the cache, a watch from a compacted
   * resourceVersion gets 410 Gone, as clients see after long disconnects.
   */
  watchCache?: boolean;
}

export async function startCluster(opts: StartClusterOptions = {}): Promise<TestCluster> {
  const binDir = opts.binDir ?? (await k8sBinDir());
  const apiServerBin = path.join(binDir, 'kube-apiserver');
  const etcdBin = path.join(binDir, 'etcd');

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'api-proxy-k8s-'));
  liveDirs.add(dir);
  installExitHook();
  spawnWatchdog(dir);
  const pkiDir = path.join(dir, 'pki');
  fs.mkdirSync(pkiDir);
  const etcdLog = path.join(dir, 'etcd.log');
  const apiLog = path.join(dir, 'kube-apiserver.log');

  const [etcdClientPort, etcdPeerPort, apiPort] = (await distinctFreePorts(3)) as [number, number, number];
  const server = `https://127.0.0.1:${apiPort}`;
  const etcdUrl = `http://127.0.0.1:${etcdClientPort}`;

  const adminToken = randomBytes(24).toString('hex');
  const tokenFile = path.join(dir, 'tokens.csv');
  fs.writeFileSync(tokenFile, `${adminToken},admin,admin-uid,"system:masters"\n`, { mode: 0o600 });

  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const saKey = path.join(pkiDir, 'sa.key');
  const saPub = path.join(pkiDir, 'sa.pub');
  fs.writeFileSync(saKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  fs.writeFileSync(saPub, publicKey.export({ type: 'spki', format: 'pem' }));

  let etcd: Proc | undefined;
  let api: Proc | undefined;
  let caData = '';
  let stopped = false;
  const kubeconfigPath = path.join(dir, 'admin.kubeconfig');
  let kcCounter = 0;

  const fail = (what: string, extra = ''): Error =>
    new Error(
      `${what}${extra ? `: ${extra}` : ''}\n--- kube-apiserver log (${apiLog}) ---\n${tail(apiLog)}\n--- etcd log (${etcdLog}) ---\n${tail(etcdLog, 2000)}`,
    );

  async function cleanup(): Promise<void> {
    await killProcess(api);
    await killProcess(etcd);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
    liveDirs.delete(dir);
  }

  async function startEtcd(): Promise<void> {
    etcd = startProcess(
      etcdBin,
      [
        '--name=default',
        `--data-dir=${path.join(dir, 'etcd-data')}`,
        `--listen-client-urls=${etcdUrl}`,
        `--advertise-client-urls=${etcdUrl}`,
        `--listen-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-advertise-peer-urls=http://127.0.0.1:${etcdPeerPort}`,
        `--initial-cluster=default=http://127.0.0.1:${etcdPeerPort}`,
        '--unsafe-no-fsync=true',
        '--log-level=warn',
      ],
      etcdLog,
      path.join(dir, 'etcd.pid'),
    );
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      const info = etcd.exitInfo();
      if (info) throw fail(`etcd ${info}`);
      try {
        const res = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { health?: string };
        if (res.ok && body.health === 'true') return;
      } catch {
        /* not up yet */
      }
      await sleep(100);
    }
    throw fail('etcd did not become healthy within 60s');
  }

  const apiArgs = [
    `--etcd-servers=${etcdUrl}`,
    '--bind-address=127.0.0.1',
    '--advertise-address=127.0.0.1',
    `--secure-port=${apiPort}`,
    `--cert-dir=${pkiDir}`,
    `--token-auth-file=${tokenFile}`,
    '--authorization-mode=RBAC',
    `--service-account-key-file=${saPub}`,
    `--service-account-signing-key-file=${saKey}`,
    '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
    '--api-audiences=https://kubernetes.default.svc.cluster.local',
    '--service-cluster-ip-range=10.0.0.0/24',
    '--allow-privileged=true',
    // No controller-manager runs: the ServiceAccount admission plugin would
    // reject pods whose (never auto-created) "default" SA is missing.
    '--disable-admission-plugins=ServiceAccount',
    // The endpoint reconciler would keep writing a loopback endpoint for the
    // "kubernetes" service; nothing here routes to it.
    '--endpoint-reconciler-type=none',
    '--profiling=false',
    '--v=1',
    ...(opts.watchCache === false ? ['--watch-cache=false'] : []),
  ];

  async function waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const info = api?.exitInfo();
      if (info) throw fail(`kube-apiserver ${info}`);
      if (!caData) {
        const crt = path.join(pkiDir, 'apiserver.crt');
        if (fs.existsSync(crt)) {
          const pem = fs.readFileSync(crt, 'utf8');
          if (pem.includes('END CERTIFICATE')) caData = pem;
        }
      }
      if (caData) {
        try {
          const res = await httpsRequest(server, caData, 'GET', '/readyz', undefined, adminToken, { timeoutMs: 5000 });
          if (res.status === 200) return;
          last = `readyz ${res.status}: ${res.text.slice(0, 2000)}`;
        } catch (e) {
          last = (e as Error).message;
        }
      }
      await sleep(150);
    }
    throw fail(`kube-apiserver not ready within ${timeoutMs / 1000}s`, last);
  }

  async function startApiServer(): Promise<void> {
    if (api && api.exitInfo() === undefined) throw new Error('kube-apiserver is already running');
    api = startProcess(apiServerBin, apiArgs, apiLog, path.join(dir, 'kube-apiserver.pid'));
    await waitReady(120_000);
  }

  async function stopApiServer(): Promise<void> {
    await killProcess(api);
  }

  const request = (method: string, urlPath: string, body?: unknown, ropts: RequestOptions = {}) =>
    httpsRequest(server, caData, method, urlPath, body, ropts.token ?? adminToken, ropts);

  async function mustRequest(method: string, urlPath: string, body?: unknown, ropts: RequestOptions = {}): Promise<ApiResponse> {
    const res = await request(method, urlPath, body, ropts);
    if (res.status < 200 || res.status > 299) {
      throw new Error(`${method} ${urlPath} -> ${res.status}: ${res.text.slice(0, 2000)}`);
    }
    return res;
  }

  function kubeconfigYaml(user: string, token: string, namespace?: string): string {
    return stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name: 'test',
          cluster: { server, 'certificate-authority-data': Buffer.from(caData).toString('base64') },
        },
      ],
      users: [{ name: user, user: { token } }],
      contexts: [{ name: 'test', context: { cluster: 'test', user, ...(namespace ? { namespace } : {}) } }],
      'current-context': 'test',
      preferences: {},
    });
  }

  function writeKubeconfig(token: string, namespace?: string): string {
    const file = path.join(dir, `kubeconfig-${++kcCounter}.yaml`);
    fs.writeFileSync(file, kubeconfigYaml(`user-${kcCounter}`, token, namespace), { mode: 0o600 });
    return file;
  }

  async function ensureNamespace(name: string): Promise<void> {
    const res = await request('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
    if (res.status !== 201 && res.status !== 409) {
      throw new Error(`create namespace ${name} -> ${res.status}: ${res.text.slice(0, 2000)}`);
    }
  }

  async function serviceAccountToken(namespace: string, name: string): Promise<string> {
    await ensureNamespace(namespace);
    const ns = encodeURIComponent(namespace);
    const sa = encodeURIComponent(name);
    const created = await request('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
      apiVersion: 'v1',
      kind: 'ServiceAccount',
      metadata: { name },
    });
    if (created.status !== 201 && created.status !== 409) {
      throw new Error(`create serviceaccount ${namespace}/${name} -> ${created.status}: ${created.text.slice(0, 2000)}`);
    }
    const res = await mustRequest('POST', `/api/v1/namespaces/${ns}/serviceaccounts/${sa}/token`, {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'TokenRequest',
      spec: { expirationSeconds: 3600 },
    });
    const token = res.json?.status?.token;
    if (typeof token !== 'string' || !token) throw new Error(`TokenRequest returned no token: ${res.text.slice(0, 500)}`);
    return token;
  }

  async function applyCrds(): Promise<void> {
    const files = fs
      .readdirSync(CRD_DIR)
      .filter((f) => f.endsWith('.yaml') || f.endsWith('.yml'))
      .sort();
    const crds: Array<{ name: string; group: string; plural: string; version: string; namespaced: boolean }> = [];
    for (const f of files) {
      const docs = parseAllDocuments(fs.readFileSync(path.join(CRD_DIR, f), 'utf8'));
      for (const doc of docs) {
        if (doc.errors.length > 0) throw new Error(`${f}: ${doc.errors.map((e) => e.message).join('; ')}`);
        const obj = doc.toJS();
        if (!obj) continue;
        if (obj.kind !== 'CustomResourceDefinition') throw new Error(`${f}: not a CustomResourceDefinition (${obj.kind})`);
        const name: string = obj.metadata.name;
        await mustRequest(
          'PATCH',
          `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${encodeURIComponent(name)}?fieldManager=api-proxy-tests&force=true&fieldValidation=Strict`,
          obj,
          { contentType: 'application/apply-patch+yaml' },
        );
        const served = (obj.spec.versions as Array<{ name: string; served: boolean; storage: boolean }>).find((v) => v.storage);
        crds.push({
          name,
          group: obj.spec.group,
          plural: obj.spec.names.plural,
          version: served?.name ?? obj.spec.versions[0].name,
          namespaced: obj.spec.scope === 'Namespaced',
        });
      }
    }
    const deadline = Date.now() + 60_000;
    for (const crd of crds) {
      let last = '';
      for (;;) {
        if (Date.now() > deadline) throw new Error(`CRD ${crd.name} not Established/served within 60s: ${last}`);
        const res = await request('GET', `/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.name}`);
        const conds: Array<{ type: string; status: string; reason?: string; message?: string }> = res.json?.status?.conditions ?? [];
        const established = conds.find((c) => c.type === 'Established')?.status === 'True';
        const badNames = conds.find((c) => c.type === 'NamesAccepted' && c.status === 'False');
        if (badNames) throw new Error(`CRD ${crd.name} names not accepted: ${badNames.reason}: ${badNames.message}`);
        last = JSON.stringify(conds);
        if (established) {
          // Established can precede the REST handler by a moment; wait until it lists.
          const list = await request('GET', `/apis/${crd.group}/${crd.version}/${crd.plural}?limit=1`);
          if (list.status === 200) break;
          last = `list ${list.status}`;
        }
        await sleep(100);
      }
    }
  }

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    await cleanup();
  }

  try {
    await startEtcd();
    await startApiServer();
    fs.writeFileSync(kubeconfigPath, kubeconfigYaml('admin', adminToken), { mode: 0o600 });
  } catch (e) {
    await cleanup().catch(() => undefined);
    throw e;
  }

  const cluster: TestCluster = {
    server,
    etcdUrl,
    kubeconfigPath,
    adminToken,
    dir,
    get caData() {
      return caData;
    },
    kubeConfig() {
      const kc = new KubeConfig();
      kc.loadFromFile(kubeconfigPath);
      return kc;
    },
    writeKubeconfig,
    serviceAccountToken,
    applyCrds,
    stopApiServer,
    startApiServer,
    stop,
    request,
    ensureNamespace,
    logs: () => ({ apiServer: tail(apiLog, 20_000), etcd: tail(etcdLog, 20_000) }),
  };

  if (opts.crds) {
    try {
      await applyCrds();
    } catch (e) {
      await stop().catch(() => undefined);
      throw e;
    }
  }
  return cluster;
}
