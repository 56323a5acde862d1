/**
 * The bench's peers section takes proxies of one's own (`--peer=FILE`): the
 * file is checked before anything starts, the command gets the bench's
 * upstream, key and redirect in its environment, and a command that fails is
 * reported, never waited on. The bench upstream streams on `"stream":true`
 * alone, so that a peer which drops unknown headers still gets a stream.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { filePeer, nginxConfig, nodePipePeer, readPeerFile, type PeerFile } from '../../bench/peers.js';
import { freePort, stop } from '../../bench/processes.js';
import { createBenchUpstream } from '../../bench/upstream-server.js';
import { waitFor } from '../support/wait.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'bench-peer-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function peerFile(content: unknown): string {
  const path = join(dir, 'peer.json');
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}

describe('readPeerFile', () => {
  test('a valid file, with defaults and its directory', () => {
    const file = readPeerFile(peerFile({ name: 'mine', url: 'http://127.0.0.1:5000/', command: ['./run.sh', '--fast'] }));
    expect(file).toEqual({ name: 'mine', url: 'http://127.0.0.1:5000/', command: ['./run.sh', '--fast'], note: 'a peer file', streams: true, dir });
  });

  test.each([
    ['not JSON', '{"name":', /--peer .*peer\.json: .*JSON/],
    ['no name', { url: 'http://127.0.0.1:5000', command: ['x'] }, /--peer .*peer\.json: name: /],
    ['an https url', { name: 'a', url: 'https://127.0.0.1:5000', command: ['x'] }, /url: /],
    ['an empty command', { name: 'a', url: 'http://127.0.0.1:5000', command: [] }, /command: /],
    ['an unknown field', { name: 'a', url: 'http://127.0.0.1:5000', command: ['x'], port: 1 }, /\(file\): .*port/],
  ])('refused with the file and the field named: %s', (_, content, message) => {
    expect(() => readPeerFile(peerFile(content))).toThrow(message);
  });
});

describe('filePeer', () => {
  const context = { upstreamUrl: 'http://127.0.0.1:9', clientKey: 'bench-key', modelRedirect: 'gpt-4=bench-model' };

  test('runs the command in the file directory with the bench in its environment, once it answers', async () => {
    const port = await freePort();
    writeFileSync(
      join(dir, 'peer.mjs'),
      `import { createServer } from 'node:http';
const seen = { upstream: process.env.BENCH_UPSTREAM_URL, key: process.env.BENCH_CLIENT_KEY, redirect: process.env.BENCH_MODEL_REDIRECT, cwd: process.cwd() };
setTimeout(() => createServer((req, res) => res.end(JSON.stringify(seen))).listen(${port}, '127.0.0.1'), 200);`,
    );
    const file: PeerFile = readPeerFile(peerFile({ name: 'echo', url: `http://127.0.0.1:${port}`, command: [process.execPath, 'peer.mjs'], streams: false }));
    const peer = await filePeer(file, context).start();
    try {
      expect(peer).toMatchObject({ name: 'echo', note: 'a peer file', streams: false, process: { url: `http://127.0.0.1:${port}` } });
      const seen = await (await fetch(`${peer.process.url}/anything`)).json();
      expect(seen).toEqual({ upstream: 'http://127.0.0.1:9', key: 'bench-key', redirect: 'gpt-4=bench-model', cwd: dir });
    } finally {
      await stop(peer.process.child);
    }
  });

  test('a command that exits before it listens is reported', async () => {
    const port = await freePort();
    const file = readPeerFile(peerFile({ name: 'quitter', url: `http://127.0.0.1:${port}`, command: [process.execPath, '-e', 'process.exit(3)'] }));
    await expect(filePeer(file, context).start()).rejects.toThrow("peer 'quitter' exited (3)");
  });

  test('a command that never answers is stopped and reported', async () => {
    const port = await freePort();
    writeFileSync(join(dir, 'pid.mjs'), `import { writeFileSync } from 'node:fs'; writeFileSync('pid', String(process.pid)); setInterval(() => {}, 1000);`);
    const file = readPeerFile(peerFile({ name: 'mute', url: `http://127.0.0.1:${port}`, command: [process.execPath, 'pid.mjs'] }));
    await expect(filePeer(file, context, 500).start()).rejects.toThrow(`peer 'mute' did not start listening on http://127.0.0.1:${port}`);
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    const alive = (): boolean => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let waited = 0; alive() && waited < 2_000; waited += 50) await new Promise((resolve) => setTimeout(resolve, 50));
    const stillAlive = alive();
    if (stillAlive) process.kill(pid, 'SIGKILL'); // so that a failure does not keep jest waiting
    expect(stillAlive).toBe(false);
  });

  test('a program that does not exist is reported', async () => {
    const port = await freePort();
    const file = readPeerFile(peerFile({ name: 'ghost', url: `http://127.0.0.1:${port}`, command: ['./no-such-program'] }));
    await expect(filePeer(file, context).start()).rejects.toThrow(/peer 'ghost' could not be started: .*ENOENT/);
  });
});

describe('the bench upstream', () => {
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createBenchUpstream();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const post = (body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const events = (text: string): string[] => text.split('\n\n').filter((event) => event !== '');

  test('"stream":true in the body alone: 20 events and [DONE]', async () => {
    const res = await post({ model: 'm', stream: true, messages: [] }, { 'x-bench-interval': '1' });
    expect(res.headers.get('content-type')).toBe('text/event-stream');
    const received = events(await res.text());
    expect(received).toHaveLength(21);
    expect(received.at(-1)).toBe('data: [DONE]');
  });

  test('x-bench-chunks sets the count', async () => {
    const res = await post({ model: 'm', stream: true, messages: [] }, { 'x-bench-chunks': '3', 'x-bench-interval': '1' });
    expect(events(await res.text())).toHaveLength(4);
  });

  test('anything else: one chat.completion', async () => {
    const res = await post({ model: 'm', stream: false, messages: [] });
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(((await res.json()) as { object: string }).object).toBe('chat.completion');
  });
});

describe('the bare Node.js pipe', () => {
  test('relays requests and event streams byte for byte, several on one connection, and follows the client out', async () => {
    const server = createBenchUpstream();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const upstreamUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // The script the bench forks: its build, which imports the gateway's own write batching.
    const root = join(import.meta.dirname, '../..');
    execFileSync(join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'bench/tsconfig.json'], { cwd: root });
    const pipe = await nodePipePeer(join(root, 'dist-bench/bench/node-pipe.js'), upstreamUrl).start();
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const post = async (url: string, body: unknown): Promise<{ text: string; socket: unknown }> =>
      new Promise((resolve, reject) => {
        const req = request(
          `${url}/v1/chat/completions`,
          { method: 'POST', agent, headers: { 'content-type': 'application/json', 'x-bench-interval': '1' } },
          (res) => {
            let text = '';
            res.setEncoding('latin1').on('data', (chunk: string) => (text += chunk));
            res.on('end', () => resolve({ text, socket: req.socket }));
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify(body));
      });
    try {
      expect(pipe).toMatchObject({ name: 'bare Node.js pipe', streams: true });
      const stream = { model: 'm', stream: true, messages: [] };
      const first = await post(pipe.process.url, stream);
      const second = await post(pipe.process.url, { model: 'm', messages: [] });
      expect(second.socket).toBe(first.socket);
      expect(first.text).toBe((await post(upstreamUrl, stream)).text);
      expect(first.text.split('\n\n').filter((event) => event !== '')).toHaveLength(21);
      expect(JSON.parse(second.text)).toMatchObject({ object: 'chat.completion' });
      agent.destroy();
      // The upstream connection goes with the client's.
      const upstreamConnections = (): Promise<number> => new Promise((resolve) => server.getConnections((_, count) => resolve(count)));
      await waitFor(async () => (await upstreamConnections()) === 0, 3000, 'the upstream connection closed');
    } finally {
      agent.destroy();
      await stop(pipe.process.child);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

describe('nginxConfig', () => {
  test('the usual 4,096 connections a worker, and more with a descriptor limit to match when asked', () => {
    const usual = nginxConfig('/run/nginx', 8080, '127.0.0.1:4000', 1, 4096);
    expect(usual).toContain('events { worker_connections 4096; }');
    expect(usual).not.toContain('worker_rlimit_nofile');
    expect(usual).toContain('upstream bench { server 127.0.0.1:4000; keepalive 256; }');
    expect(usual).toContain('proxy_buffering off;');
    const many = nginxConfig('/run/nginx', 8080, '127.0.0.1:4000', 1, 5024);
    expect(many).toContain('events { worker_connections 5024; }');
    expect(many).toMatch(/^worker_processes 1;\nworker_rlimit_nofile 6048;\n/);
  });
});
