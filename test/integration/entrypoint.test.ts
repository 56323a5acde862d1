/**
 * `node dist/main.js` as users and the image run it: config from CONFIG_PATH,
 * port from PORT, access lines on stdout within a second even when traffic is
 * low, exit 0 after draining on SIGTERM.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { request } from 'undici';
import { startFakeUpstream, type FakeUpstream } from '../support/fake-upstream.js';
import { baseConfig, CLIENT_KEY } from '../support/gateway-harness.js';
import { freePort, waitFor as waitUntil } from '../support/wait.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
let upstream: FakeUpstream;
let gateway: ChildProcess;
let dir: string;
let output = '';

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<number> {
  return waitUntil(check, timeoutMs, 'gateway').catch((error: Error) => {
    throw new Error(`${error.message}; output:\n${output.slice(-2000)}`);
  });
}

beforeAll(async () => {
  execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: ROOT });
  upstream = await startFakeUpstream();
  dir = mkdtempSync(join(tmpdir(), 'api-proxy-main-'));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(baseConfig(upstream.url, { shutdown: { drain_delay_ms: 300, timeout_ms: 5000 } })));
}, 60_000);

afterAll(async () => {
  if (gateway !== undefined && gateway.exitCode === null) gateway.kill('SIGKILL');
  await upstream.close();
  rmSync(dir, { recursive: true, force: true });
});

test('serves, logs each request promptly, drains and exits 0 on SIGTERM', async () => {
  const port = await freePort();
  gateway = spawn(process.execPath, ['dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, CONFIG_PATH: join(dir, 'config.json'), PORT: String(port), LOG_LEVEL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  gateway.stdout!.on('data', (chunk) => (output += String(chunk)));
  gateway.stderr!.on('data', (chunk) => (output += String(chunk)));
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await request(`${url}/health/ready`)).statusCode === 200, 10_000);

  const res = await request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: '{"model":"gpt-4"}',
  });
  expect(res.headers['x-apiproxy-upstream-model']).toBe('gpt-4o-2024-08-06');
  expect(((await res.body.json()) as { model: string }).model).toBe('gpt-4');
  const accessLine = () => output.split('\n').find((line) => line.includes('"msg":"request"') && line.includes('/v1/chat/completions'));
  expect(await waitFor(() => accessLine() !== undefined, 1500)).toBeLessThan(1500);
  expect(JSON.parse(accessLine()!)).toMatchObject({ level: 'info', key_id: 'team-a', status: 200, target_model: 'gpt-4o-2024-08-06' });

  const exited = new Promise<number | null>((done) => gateway.once('exit', (code) => done(code)));
  gateway.kill('SIGTERM');
  await waitFor(async () => (await request(`${url}/health/ready`)).statusCode === 503, 1000);
  expect(await exited).toBe(0);
  expect(output).toContain('"msg":"stopped"');
}, 30_000);

test('SIGTERM the moment it first answers ready (its start may not have returned yet): it drains and exits 0, not killed by the signal', async () => {
  const port = await freePort();
  let early = '';
  const child = spawn(process.execPath, ['dist/main.js'], {
    cwd: ROOT,
    env: { ...process.env, CONFIG_PATH: join(dir, 'config.json'), PORT: String(port), LOG_LEVEL: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk) => (early += String(chunk)));
  child.stderr.on('data', (chunk) => (early += String(chunk)));
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((done) => child.once('exit', (code, signal) => done([code, signal])));
  try {
    // Polled back to back, not every 10 ms: the first 200 can come while the gateway is still starting.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const status = await request(`http://127.0.0.1:${port}/health/ready`).then(
        async (res) => (await res.body.dump(), res.statusCode),
        () => 0,
      );
      if (status === 200) break;
      if (Date.now() > deadline) throw new Error(`not ready within 10 s; output:\n${early.slice(-2000)}`);
    }
    child.kill('SIGTERM');
    expect(await exited).toEqual([0, null]);
    expect(early).toContain('"msg":"stopped"');
  } finally {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}, 30_000);

test("without PORT it listens on the config file's port", async () => {
  const port = await freePort();
  writeFileSync(join(dir, 'port.json'), JSON.stringify(baseConfig(upstream.url, { port, shutdown: { drain_delay_ms: 0, timeout_ms: 1000 } })));
  const env: NodeJS.ProcessEnv = { ...process.env, CONFIG_PATH: join(dir, 'port.json') };
  delete env['PORT'];
  const child = spawn(process.execPath, ['dist/main.js'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk) => (output += String(chunk)));
  child.stderr.on('data', (chunk) => (output += String(chunk)));
  try {
    await waitFor(async () => (await request(`http://127.0.0.1:${port}/health`)).statusCode === 200, 10_000);
  } finally {
    child.kill('SIGKILL');
  }
}, 30_000);
