/**
 * Same-run reference points in front of the bench upstream: a naive Node
 * proxy, nginx where installed, and any proxy described in a peer file.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { freePort, startUpstream, track, type UpstreamProcess } from './processes.js';

export interface Peer {
  readonly name: string;
  readonly note: string;
  readonly process: UpstreamProcess;
  /** Relays an event stream as it comes (the naive proxy holds the whole answer). */
  readonly streams: boolean;
}

/** A peer before it runs: named already, so that a start that fails can be reported under its name. */
export interface PeerLauncher {
  readonly name: string;
  start(): Promise<Peer>;
}

/** A peer that is one of the bench's own scripts, forked with the upstream's URL; it reports its port. */
function scriptPeer(name: string, note: string, streams: boolean, script: string, upstreamUrl: string): PeerLauncher {
  return { name, start: () => startUpstream(script, [upstreamUrl]).then((process) => ({ name, note, process, streams })) };
}

export function naivePeer(script: string, upstreamUrl: string): PeerLauncher {
  return scriptPeer('naive Koa + undici', 'bench/naive-proxy.ts: one process, body parsed and model redirected, nothing else', false, script, upstreamUrl);
}

/** bench/node-pipe.ts: bytes copied between sockets, what a Node.js process adds at the least. */
export function nodePipePeer(script: string, upstreamUrl: string): PeerLauncher {
  return scriptPeer('bare Node.js pipe', 'bench/node-pipe.ts: one process, a TCP pipe per client connection, no HTTP parsing', true, script, upstreamUrl);
}

export function hasNginx(): boolean {
  try {
    execFileSync('nginx', ['-v'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/**
 * nginx as a plain reverse proxy (no body rewrite), access log on, its
 * defaults otherwise except `proxy_buffering off`, the usual setting in
 * front of event streams. `workers`: 'auto' is a worker per CPU.
 * `connections`: worker_connections (a stream holds two: client and upstream).
 */
export function nginxPeer(dir: string, upstreamUrl: string, workers: 'auto' | 1, connections = 4096): PeerLauncher {
  const name = workers === 'auto' ? 'nginx, a worker per CPU' : 'nginx, 1 worker';
  return { name, start: () => startNginx(name, dir, upstreamUrl, workers, connections) };
}

/** nginx.conf of a peer: see nginxPeer. */
export function nginxConfig(dir: string, port: number, upstreamHost: string, workers: 'auto' | 1, connections: number): string {
  // Past the usual 4096, the worker needs its descriptor limit raised with its connections.
  return `worker_processes ${workers};
${connections > 4096 ? `worker_rlimit_nofile ${connections + 1024};\n` : ''}error_log ${join(dir, 'logs', 'error.log')};
pid ${join(dir, 'nginx.pid')};
events { worker_connections ${connections}; }
http {
  access_log ${join(dir, 'logs', 'access.log')};
  upstream bench { server ${upstreamHost}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`;
}

async function startNginx(name: string, dir: string, upstreamUrl: string, workers: 'auto' | 1, connections: number): Promise<Peer> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const conf = join(dir, 'nginx.conf');
  writeFileSync(conf, nginxConfig(dir, port, new URL(upstreamUrl).host, workers, connections));
  const child = track(spawn('nginx', ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  const url = `http://127.0.0.1:${port}`;
  await waitForListening(child, url, `nginx (see ${join(dir, 'logs', 'error.log')})`, 10_000);
  const note = `plain reverse proxy, no body rewrite, worker_processes ${workers}, proxy_buffering off, access log on`;
  return { name, note, process: { child, url }, streams: true };
}

/** A proxy of your own to measure beside the gateway: `--peer=FILE`, a JSON file of this shape. */
const PeerFileSchema = z
  .object({
    name: z.string().min(1),
    /** Where the proxy listens once started. */
    url: z.url({ protocol: /^http$/ }),
    /** Program and arguments; relative paths are taken from the file's directory, which is also the working directory. */
    command: z.array(z.string().min(1)).min(1),
    note: z.string().default('a peer file'),
    /** false when the proxy holds whole answers: its 500-stream row is skipped. */
    streams: z.boolean().default(true),
  })
  .strict();

export type PeerFile = z.infer<typeof PeerFileSchema> & { readonly dir: string };

/** What a peer's command is told about the bench, in its environment. */
export interface PeerContext {
  /** The bench upstream's origin, e.g. http://127.0.0.1:41279 (chat completions at /v1/chat/completions). */
  readonly upstreamUrl: string;
  readonly clientKey: string;
  /** The redirect the gateway applies, `gpt-4=bench-model`. */
  readonly modelRedirect: string;
}

export function readPeerFile(path: string): PeerFile {
  let data: unknown;
  try {
    data = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new Error(`--peer ${path}: ${(error as Error).message}`, { cause: error });
  }
  const parsed = PeerFileSchema.safeParse(data);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(file)'}: ${issue.message}`).join('; ');
    throw new Error(`--peer ${path}: ${problems}`);
  }
  return { ...parsed.data, dir: dirname(resolve(path)) };
}

/**
 * A peer file's command, started with BENCH_UPSTREAM_URL, BENCH_CLIENT_KEY and
 * BENCH_MODEL_REDIRECT in its environment; ready once its url answers.
 */
export function filePeer(file: PeerFile, context: PeerContext, waitMs = 10_000): PeerLauncher {
  return { name: file.name, start: () => startFilePeer(file, context, waitMs) };
}

async function startFilePeer(file: PeerFile, context: PeerContext, waitMs: number): Promise<Peer> {
  const [program, ...args] = file.command as [string, ...string[]];
  const env = {
    ...process.env,
    BENCH_UPSTREAM_URL: context.upstreamUrl,
    BENCH_CLIENT_KEY: context.clientKey,
    BENCH_MODEL_REDIRECT: context.modelRedirect,
  };
  const executable = program.startsWith('.') ? resolve(file.dir, program) : program;
  const child = track(spawn(executable, args, { cwd: file.dir, env, stdio: ['ignore', 'ignore', 'inherit'] }));
  let failed: Error | null = null;
  child.once('error', (error) => (failed = error));
  const url = file.url.replace(/\/$/, '');
  await waitForListening(child, url, `peer '${file.name}'`, waitMs, () => failed);
  return { name: file.name, note: file.note, process: { child, url }, streams: file.streams };
}

/** Resolves once `url` answers any HTTP request; throws if the child exits first, or kills it and throws after `waitMs`. */
async function waitForListening(child: ChildProcess, url: string, what: string, waitMs: number, spawnError: () => Error | null = () => null): Promise<void> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const error = spawnError();
    if (error !== null) throw new Error(`${what} could not be started: ${error.message}`);
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${what} exited (${child.exitCode ?? child.signalCode})`);
    try {
      await (await fetch(`${url}/health-of-nothing`)).arrayBuffer();
      return;
    } catch {
      if (Date.now() > deadline) {
        child.kill('SIGKILL'); // it would otherwise take CPU from the rest of the run
        throw new Error(`${what} did not start listening on ${url}`);
      }
      await delay(50);
    }
  }
}
