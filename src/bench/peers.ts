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
}

export function naivePeer(script: string, upstreamUrl: string): Promise<Peer> {
  return startUpstream(script, [upstreamUrl]).then((process) => ({
    name: 'naive Koa + undici',
    note: 'src/bench/naive-proxy.ts: one process, body parsed and model redirected, nothing else',
    process,
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

/** nginx as a plain reverse proxy (no body rewrite), its defaults otherwise: a worker per CPU, access log on. */
export async function nginxPeer(dir: string, upstreamUrl: string): Promise<Peer> {
  mkdirSync(join(dir, 'logs'), { recursive: true });
  const port = await freePort();
  const upstream = new URL(upstreamUrl);
  const conf = join(dir, 'nginx.conf');
  writeFileSync(
    conf,
    `worker_processes auto;
error_log ${join(dir, 'logs', 'error.log')};
pid ${join(dir, 'nginx.pid')};
events { worker_connections 4096; }
http {
  access_log ${join(dir, 'logs', 'access.log')};
  upstream bench { server ${upstream.host}; keepalive 256; }
  server {
    listen 127.0.0.1:${port};
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
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
  return { name: 'nginx', note: 'plain reverse proxy, no body rewrite, worker_processes auto, access log on', process: { child, url } };
}
