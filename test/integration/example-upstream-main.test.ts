/**
 * `node dist/demo/example-upstream-main.js`, the `upstream` service of compose.yaml, as a process:
 * it listens on every interface at PORT, answers chat completions (plain and streamed), and on
 * SIGTERM finishes the answer in flight and exits 0 at once, although the client (as the gateway
 * does) keeps its connections alive.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { networkInterfaces } from 'node:os';
import { join, resolve } from 'node:path';
import { Agent, request } from 'undici';
import { freePort, waitFor } from '../support/wait.js';

const ROOT = resolve(import.meta.dirname, '..', '..');
const ENTRY = 'dist/demo/example-upstream-main.js';

interface Started {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function start(env: NodeJS.ProcessEnv): Started {
  let output = '';
  const child = spawn(process.execPath, [ENTRY], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (chunk) => (output += String(chunk)));
  child.stderr.on('data', (chunk) => (output += String(chunk)));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done) => child.once('exit', (code, signal) => done({ code, signal })));
  return { child, output: () => output, exited };
}

/** An address of this machine that is not loopback: reachable only when the server listens on all interfaces. */
function externalIPv4(): string {
  for (const addresses of Object.values(networkInterfaces())) {
    const found = (addresses ?? []).find((a) => a.family === 'IPv4' && !a.internal);
    if (found !== undefined) return found.address;
  }
  throw new Error('this machine has no non-loopback IPv4 address to reach the example upstream through');
}

const running: ChildProcess[] = [];

beforeAll(() => {
  execFileSync(join(ROOT, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], { cwd: ROOT });
}, 60_000);

afterAll(() => {
  for (const child of running) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

test('listens on all interfaces at PORT, echoes plain and streamed chat completions, on SIGTERM finishes the stream and exits 0', async () => {
  const port = await freePort();
  const upstream = start({ ...process.env, PORT: String(port) });
  running.push(upstream.child);
  await waitFor(() => upstream.output().includes(`example upstream listening on 0.0.0.0:${port}`), 10_000, 'listening line').catch((error: Error) => {
    throw new Error(`${error.message}; output: ${upstream.output()}`);
  });

  const base = `http://${externalIPv4()}:${port}`;
  const agent = new Agent({ keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json' };
  const plain = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model: 'example-model-v2', messages: [{ role: 'user', content: 'hi' }] }),
    dispatcher: agent,
  });
  expect(plain.statusCode).toBe(200);
  const answer = (await plain.body.json()) as { choices: { message: { content: string } }[] };
  expect(answer.choices[0]!.message.content).toBe('Hello from example-model-v2! You said: hi');

  // SIGTERM while a stream is being answered: the stream completes, then the process exits 0 without
  // waiting for the keep-alive connections the agent holds (one idle, one that just finished the stream).
  const streamed = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ model: 'example-model-v2', stream: true, messages: [{ role: 'user', content: 'stream please' }] }),
    dispatcher: agent,
  });
  expect(streamed.headers['content-type']).toBe('text/event-stream');
  upstream.child.kill('SIGTERM');
  const events = (await streamed.body.text()).split('\n\n').filter((e) => e.startsWith('data: '));
  const streamEnded = Date.now();
  expect(events.pop()).toBe('data: [DONE]');
  const text = events.map((e) => (JSON.parse(e.slice(6)) as { choices: { delta: { content?: string } }[] }).choices[0]!.delta.content ?? '').join('');
  expect(text).toBe('Hello from example-model-v2! You said: stream please');
  expect(await upstream.exited).toEqual({ code: 0, signal: null });
  expect(Date.now() - streamEnded).toBeLessThan(1000);
  await agent.close();
}, 30_000);

test.each([
  ['missing', undefined],
  ['not a number', 'eighty'],
  ['out of range', '70000'],
])('PORT %s: exits 1 and says why', async (_name, value) => {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env['PORT'];
  if (value !== undefined) env['PORT'] = value;
  const upstream = start(env);
  running.push(upstream.child);
  expect(await upstream.exited).toEqual({ code: 1, signal: null });
  expect(upstream.output()).toContain(`example upstream failed: PORT must be a port number, got '${value ?? ''}'`);
});
