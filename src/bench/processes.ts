/** Child processes of the benchmark: the upstream, the gateway, load generators; all killed on exit. */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';

const children = new Set<ChildProcess>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills every child still running (SIGKILL); safe to call from an 'exit' handler. */
export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
  children.clear();
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the child has exited. */
export async function stop(child: ChildProcess, graceMs = 5_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

export interface UpstreamProcess {
  readonly child: ChildProcess;
  readonly url: string;
}

/** Forks dist/bench/upstream.js and waits for its port. */
export async function startUpstream(script: string): Promise<UpstreamProcess> {
  const child = track(fork(script, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve((message as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`bench upstream exited (${code})`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

export interface GatewayProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly pid: number;
}

export interface GatewayLaunch {
  readonly mainScript: string;
  readonly config: unknown;
  readonly configPath: string;
  readonly logPath: string;
  readonly nodeArgs?: readonly string[];
}

/** Starts `node dist/main.js` with a generated config, logs to a file; resolves once /health/ready answers 200. */
export async function startGateway(launch: GatewayLaunch): Promise<GatewayProcess> {
  writeFileSync(launch.configPath, JSON.stringify(launch.config, null, 2));
  const port = await freePort();
  const log = openSync(launch.logPath, 'w');
  const env: NodeJS.ProcessEnv = { ...process.env, CONFIG_PATH: launch.configPath, PORT: String(port) };
  delete env['LOG_LEVEL'];
  const child = track(spawn(process.execPath, [...(launch.nodeArgs ?? []), launch.mainScript], { env, stdio: ['ignore', log, 'inherit'] }));
  closeSync(log);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}; see ${launch.logPath}`);
    try {
      const response = await fetch(`${url}/health/ready`);
      await response.arrayBuffer();
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the gateway did not become ready; see ${launch.logPath}`);
    await delay(50);
  }
  return { child, url, pid: child.pid! };
}

/** Resident set size of a process in bytes (Linux /proc), or NaN where unavailable. */
export function rssOf(pid: number): number {
  const path = `/proc/${pid}/status`;
  if (!existsSync(path)) return Number.NaN;
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(path, 'utf8'));
  return match === null ? Number.NaN : Number(match[1]) * 1024;
}

/** CPU time (user + system) a process has used, in milliseconds (Linux /proc; clock ticks of 10 ms), or NaN. */
export function cpuMsOf(pid: number): number {
  const path = `/proc/${pid}/stat`;
  if (!existsSync(path)) return Number.NaN;
  const text = readFileSync(path, 'utf8');
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15)
}

/** Samples a process's RSS every `everyMs` until stopped; returns the maximum seen. */
export function sampleRss(pid: number, everyMs = 250): { stop(): number } {
  let max = rssOf(pid);
  const timer = setInterval(() => {
    const rss = rssOf(pid);
    if (rss > max) max = rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, rssOf(pid));
    },
  };
}

/** Runs a command to completion, collecting stdout; tracked so it dies with the bench. */
export function run(command: string, args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = track(spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr!.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}
