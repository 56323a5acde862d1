/** Same-run reference points in front of the bench upstream: a naive Node proxy, and nginx where installed. */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort, startUpstream, track, type UpstreamProcess } from './processes.js';

export interface Peer {
  readonly name: string;
  readonly note: string;
  readonly process: UpstreamProcess;
  /** Relays an event stream as it comes (the naive proxy holds the whole answer). */
  readonly streams: boolean;
}

export function naivePeer(script: string, upstreamUrl: string): Promise<Peer> {
  return startUpstream(script, [upstreamUrl]).then((process) => ({
    name: 'naive Koa + undici',
    note: 'src/bench/naive-proxy.ts: one process, body parsed and model redirected, nothing else',
    process,
    streams: false,
  }));
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
 */
export async function nginxPeer(dir: string, upstreamUrl: string, workers: 'auto' | 1): Promise<Peer> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const upstream = new URL(upstreamUrl);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes ${workers};
error_log ${join(dir, 'logs', 'error.log')};
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  access_log ${join(dir, 'logs', 'access.log')};
  upstream bench { server ${upstream.host}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
`,
  );
  const child = track(spawn('nginx', ['-p', dir, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nginx exited (${child.exitCode}); see ${join(dir, 'logs', 'error.log')}`);
    try {
      await (await fetch(`${url}/health-of-nothing`)).arrayBuffer();
      break;
    } catch {
      if (Date.now() > deadline) throw new Error('nginx did not start listening');
      await delay(50);
    }
  }
  const name = workers === 'auto' ? 'nginx, a worker per CPU' : 'nginx, 1 worker';
  const note = `plain reverse proxy, no body rewrite, worker_processes ${workers}, proxy_buffering off, access log on`;
  return { name, note, process: { child, url }, streams: true };
}
