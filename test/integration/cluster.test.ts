/**
 * `WORKERS=2 node dist/main.js`: a node:cluster primary and two workers on one
 * port. Both workers serve and log (whole JSON lines on the shared stdout);
 * /metrics on either adds up both; a killed worker is replaced; SIGTERM drains
 * an open stream and leaves no process behind; a bad WORKERS or a taken port
 * exits 1 instead of restarting forever.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client, request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY } from '../support/gateway-harness.js';
import { waitFor as waitUntil } from '../support/wait.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const ROUTES = { 'gpt-4': 'gpt-4o-2024-08-06', small: 'gpt-4o-mini', embed: 'text-embedding-3-small' };

let upstream: FakeUpstream;
let dir: string;
let configPath: string;
/** Every process the tests started or found (primaries and workers), so none outlives the file. */
const started = new Set<number>();

beforeAll(async () => {
  execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: ROOT });
  upstream = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-cluster-'));
  configPath = join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(baseConfig(upstream.url, { model_redirects: ROUTES, shutdown: { drain_delay_ms: 100, timeout_ms: 5000 } })));
}, 60_000);

afterAll(async () => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Cluster {
  child: ChildProcess;
  pid: number;
  /** Complete stdout lines so far. */
  lines(): string[];
  entries(): Record<string, unknown>[];
  output(): string;
  exited: Promise<number | null>;
}

function startCluster(env: Record<string, string>): Cluster {
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, CONFIG_PATH: configPath, LOG_LEVEL: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child.pid!);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += String(chunk)));
  child.stderr.on('data', (chunk) => (stderr += String(chunk)));
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const lines = (): string[] => stdout.split('\n').slice(0, -1);
  return {
    child,
    pid: child.pid!,
    lines,
    entries: () => lines().map((line) => JSON.parse(line) as Record<string, unknown>),
    output: () => `stdout:\n${stdout.slice(-3000)}\nstderr:\n${stderr.slice(-2000)}`,
    exited,
  };
}

/** waitFor that shows the cluster's output when it gives up. */
function waitFor(cluster: Cluster, check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  return waitUntil(check, timeoutMs, what).catch((error: Error) => {
    throw new Error(`${error.message}\n${cluster.output()}`);
  });
}

/** The worker processes: children of the primary (`/proc/<pid>/task/<tid>/children`). */
function workerPids(primary: number): number[] {
  const pids = readdirSync(`/proc/${primary}/task`).flatMap((task) =>
    readFileSync(`/proc/${primary}/task/${task}/children`, 'utf8')
      .split(' ')
      .filter((pid) => pid.trim() !== '')
      .map(Number),
  );
  for (const pid of pids) started.add(pid);
  return pids.sort((a, b) => a - b);
}

function alive(pid: number): boolean {
  // An exited process not yet reaped (a zombie) still has a /proc entry: it counts as gone.
  return existsSync(`/proc/${pid}`) && !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
}

const listening = (cluster: Cluster): Record<string, unknown>[] => cluster.entries().filter((entry) => entry['msg'] === 'api-proxy listening');

async function chat(client: Client, body = '{"model":"gpt-4"}'): Promise<number> {
  const res = await client.request({ path: '/v1/chat/completions', method: 'POST', headers: auth, body });
  const parsed = (await res.body.json()) as { model?: string };
  // Routed: sent upstream as the redirect's target, answered under the name asked for. A 200 that was not is -1.
  const routed = res.headers['x-apiproxy-upstream-model'] === ROUTES['gpt-4'] && parsed.model === 'gpt-4';
  return res.statusCode === 200 && !routed ? -1 : res.statusCode;
}

/** `count` chat requests spread over `connections` fresh connections (round-robin hands out connections, not requests). */
async function chats(origin: string, connections: number, count: number): Promise<number[]> {
  const statuses: number[] = [];
  await Promise.all(
    Array.from({ length: connections }, async (_, index) => {
      const client = new Client(origin);
      try {
        for (let sent = index; sent < count; sent += connections) statuses.push(await chat(client));
      } finally {
        await client.close();
      }
    }),
  );
  return statuses;
}

async function metricsJson(origin: string): Promise<Record<string, number>> {
  const client = new Client(origin); // a fresh connection, so either worker may answer
  try {
    const res = await client.request({ path: '/metrics', method: 'GET' });
    expect(res.statusCode).toBe(200);
    return (await res.body.json()) as Record<string, number>;
  } finally {
    await client.close();
  }
}

describe('WORKERS=2 with PORT=0', () => {
  let cluster: Cluster;
  let origin: string;

  beforeAll(async () => {
    cluster = startCluster({ WORKERS: '2', PORT: '0' });
    await waitFor(cluster, () => listening(cluster).length === 2, 10_000, 'both workers listening');
    const ports = listening(cluster).map((entry) => entry['port']);
    // PORT=0 in a cluster: the primary picks one port and both workers share it.
    expect(ports[0]).toEqual(ports[1]);
    expect(ports[0]).toBeGreaterThan(0);
    origin = `http://127.0.0.1:${String(ports[0])}`;
  }, 20_000);

  afterAll(() => {
    if (cluster.child.exitCode === null && cluster.child.signalCode === null) {
      workerPids(cluster.pid);
      cluster.child.kill('SIGKILL');
    }
  });

  test('both workers serve and log, in whole JSON lines on the shared stdout', async () => {
    expect(workerPids(cluster.pid)).toHaveLength(2);
    const statuses = await chats(origin, 8, 200);
    expect(statuses).toEqual(Array(200).fill(200));

    const accessLines = (): Record<string, unknown>[] =>
      cluster.entries().filter((entry) => entry['msg'] === 'request' && entry['path'] === '/v1/chat/completions');
    await waitFor(cluster, () => accessLines().length === 200, 5000, '200 access lines');
    const perWorker = new Map<unknown, number>();
    for (const entry of accessLines()) perWorker.set(entry['worker'], (perWorker.get(entry['worker']) ?? 0) + 1);
    expect([...perWorker.keys()].sort()).toEqual([0, 1]);
    expect(accessLines().every((entry) => entry['status'] === 200 && entry['service'] === 'api-proxy')).toBe(true);

    const entries = cluster.entries(); // throws on a line that is not JSON
    expect(entries.filter((entry) => entry['process'] === 'primary').map((entry) => entry['msg'])).toContain('api-proxy cluster primary started');
    for (const entry of entries) expect(entry['process'] === 'primary' || entry['worker'] === 0 || entry['worker'] === 1).toBe(true);
  });

  test('/metrics on any worker adds up both; shared figures are not doubled', async () => {
    const routes = cluster.entries().filter((entry) => entry['msg'] === 'config loaded');
    expect(routes.map((entry) => entry['routes'])).toEqual([3, 3]);

    // Two scrapes on fresh connections (round-robin: each worker likely answers one); each sees the whole cluster.
    const first = await metricsJson(origin);
    const second = await metricsJson(origin);
    // The 200 chats, plus each scrape itself (counted when it arrives).
    expect(first).toMatchObject({ workers: 2, total_requests: 201, active_requests: 1, error_count: 0, model_redirects: 3, active_streams: 0 });
    expect(second).toMatchObject({ workers: 2, total_requests: 202, model_redirects: 3 });

    const res = await request(`${origin}/metrics`, { headers: { accept: 'text/plain' } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text = await res.body.text();
    expect(text).toMatch(/^apiproxy_requests_total\{route="chat_completions",status="200"\} 200$/m);
    expect(text).toMatch(/^apiproxy_requests_total\{route="metrics",status="200"\} 2$/m);
    expect(text).toMatch(/^apiproxy_model_routes 3$/m);
    expect(text).toMatch(/^apiproxy_request_duration_seconds_count\{route="chat_completions"\} 200$/m);
    // The kernel's figures for the one listening port, read by each worker: reported once, not summed.
    const port = new URL(origin).port;
    const limit = Math.min(511, Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1').trim()));
    expect(text).toMatch(new RegExp(`^apiproxy_listen_queue_limit\\{port="${port}"\\} ${limit}$`, 'm'));
    expect(text).toMatch(new RegExp(`^apiproxy_listen_queue_connections\\{port="${port}"\\} 0$`, 'm'));
  });

  test('a killed worker is replaced in its slot while the other keeps serving', async () => {
    const before = workerPids(cluster.pid);
    expect(before).toHaveLength(2);
    const victim = before[0]!;
    process.kill(victim, 'SIGKILL');
    const exitedLine = (): Record<string, unknown> | undefined => cluster.entries().find((entry) => entry['msg'] === 'worker exited; restarting it');
    await waitFor(cluster, () => exitedLine() !== undefined, 5000, 'the primary seeing the worker exit');
    const slot = exitedLine()!['worker'];
    expect(exitedLine()).toMatchObject({ process: 'primary', signal: 'SIGKILL' });

    // One worker left: every new connection goes to it.
    expect(await chats(origin, 5, 20)).toEqual(Array(20).fill(200));

    await waitFor(cluster, () => listening(cluster).length === 3, 8000, 'a replacement worker listening');
    expect(listening(cluster).at(-1)).toMatchObject({ worker: slot });
    const after = workerPids(cluster.pid);
    expect(after).toHaveLength(2);
    expect(after).not.toContain(victim);
    expect(after).toContain(before[1]);
    expect(await chats(origin, 4, 20)).toEqual(Array(20).fill(200));
    expect(await metricsJson(origin)).toMatchObject({ workers: 2, model_redirects: 3 });
  }, 20_000);

  test('SIGTERM drains: an open stream completes, the primary exits 0, no worker is left', async () => {
    const workers = workerPids(cluster.pid);
    expect(workers).toHaveLength(2);
    const client = new Client(origin);
    const res = await client.request({
      path: '/v1/chat/completions',
      method: 'POST',
      headers: { ...auth, 'x-fake-chunks': '10', 'x-fake-interval': '100' },
      body: '{"model":"gpt-4","stream":true}',
    });
    expect(res.statusCode).toBe(200);
    const body = res.body.text();
    cluster.child.kill('SIGTERM');

    const text = await body;
    await client.close();
    expect(text.match(/^data: \{/gm)).toHaveLength(10);
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true);
    expect(await cluster.exited).toBe(0);
    await waitFor(cluster, () => workers.every((pid) => !alive(pid)), 2000, 'no worker left');

    const entries = cluster.entries(); // all whole JSON lines, also the ones written at exit
    expect(
      entries
        .filter((entry) => entry['msg'] === 'stopped')
        .map((entry) => entry['worker'])
        .sort(),
    ).toEqual([0, 1]);
    expect(entries.at(-1)).toMatchObject({ process: 'primary', msg: 'all workers stopped', exit_code: 0 });
    expect(entries.find((entry) => entry['msg'] === 'request' && entry['stream'] === true)).toMatchObject({ status: 200, path: '/v1/chat/completions' });
  }, 20_000);
});

describe('exits instead of serving', () => {
  test('WORKERS=abc exits 1 naming WORKERS', async () => {
    const cluster = startCluster({ WORKERS: 'abc', PORT: '0' });
    expect(await cluster.exited).toBe(1);
    expect(cluster.output()).toMatch(/WORKERS must be .*got 'abc'/);
  });

  test('a taken port makes the cluster exit 1 within seconds instead of restarting forever', async () => {
    const taken: Server = createServer();
    await new Promise<void>((done) => taken.listen(0, '0.0.0.0', done));
    try {
      const port = (taken.address() as { port: number }).port;
      const cluster = startCluster({ WORKERS: '2', PORT: String(port) });
      const code = await Promise.race([cluster.exited, new Promise<string>((done) => setTimeout(() => done('still running'), 8000).unref())]);
      if (code === 'still running') throw new Error(`the cluster did not exit within 8 s\n${cluster.output()}`);
      expect(code).toBe(1);
      expect(cluster.entries().find((entry) => entry['level'] === 'fatal')).toMatchObject({ process: 'primary', msg: 'worker failed to start; stopping' });
      expect(cluster.output()).toContain('EADDRINUSE');
      expect(cluster.entries().filter((entry) => entry['msg'] === 'worker exited; restarting it')).toEqual([]);
    } finally {
      await new Promise((done) => taken.close(done));
    }
  }, 15_000);

  test('SIGTERM while the workers are still starting: they stop once up, the primary exits 0', async () => {
    const cluster = startCluster({ WORKERS: '2', PORT: '0' });
    await waitFor(cluster, () => cluster.lines().some((line) => line.includes('api-proxy cluster primary started')), 10_000, 'the primary');
    const workers = workerPids(cluster.pid);
    cluster.child.kill('SIGTERM');
    const code = await Promise.race([cluster.exited, new Promise<string>((done) => setTimeout(() => done('still running'), 8000).unref())]);
    if (code === 'still running') throw new Error(`the cluster did not exit within 8 s of SIGTERM\n${cluster.output()}`);
    expect(code).toBe(0);
    await waitFor(cluster, () => workers.every((pid) => !alive(pid)), 2000, 'no worker left');
  }, 15_000);
});
