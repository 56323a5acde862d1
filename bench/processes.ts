/**
 * Child processes of the benchmark: the upstream, the gateway (one process,
 * or a cluster primary and the workers it forks), load generators; all killed
 * on exit.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseMachineCpu, parseProcStat, type MachineCpu, type ProcStat } from './stats.js';

const children = new Set<ChildProcess>();
/**
 * Descendants of our children seen so far (cluster workers), pid → start
 * time: killAll reaches them even if their parent is already gone, and never
 * a process that merely reused the pid.
 */
const descendants = new Map<number, number>();

export function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

/** Kills every child still running and every descendant of theirs (SIGKILL); safe to call from an 'exit' handler. */
export function killAll(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      if (child.pid !== undefined) processTree(child.pid); // remember its workers before the primary goes
      child.kill('SIGKILL');
    }
  }
  children.clear();
  killDescendants([...descendants.keys()]);
}

/** SIGKILLs those of `pids` that are still the descendants we saw (same start time, not a zombie); returns them. */
function killDescendants(pids: readonly number[]): number[] {
  const killed: number[] = [];
  for (const pid of pids) {
    const started = descendants.get(pid);
    if (started === undefined) continue;
    const stat = procStat(pid);
    if (stat !== null && stat.starttime === started && stat.state !== 'Z') {
      try {
        process.kill(pid, 'SIGKILL');
        killed.push(pid);
      } catch {
        // gone meanwhile
      }
    }
    descendants.delete(pid);
  }
  return killed;
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

/** Forks dist-bench/bench/upstream.js and waits for its port. */
export async function startUpstream(script: string, args: readonly string[] = []): Promise<UpstreamProcess> {
  const child = track(fork(script, args, { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve((message as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

/** How late the upstream's deadline-paced chunks left (bench/upstream.ts), in ms; NaN when none was sent. */
export interface PacingReport {
  readonly chunks: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

/** Asks the bench upstream how late its paced chunks left since the last time it was asked (the count starts again). */
export function upstreamPacing(upstream: UpstreamProcess, timeoutMs = 5_000): Promise<PacingReport> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      upstream.child.off('message', onMessage);
      reject(new Error('the bench upstream did not report its pacing'));
    }, timeoutMs);
    const onMessage = (message: { pacing?: PacingReport }): void => {
      if (message.pacing === undefined) return;
      clearTimeout(timer);
      upstream.child.off('message', onMessage);
      resolve(message.pacing);
    };
    upstream.child.on('message', onMessage);
    upstream.child.send({ lateness: true });
  });
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
  /** Set only for a cluster launch: `WORKERS` for the gateway; otherwise `WORKERS` is removed from its environment. */
  readonly workers?: number;
  /** More environment for the gateway (e.g. the diagnostic API_PROXY_TRANSPORT). */
  readonly env?: Readonly<Record<string, string>>;
}

/** The image's Dockerfile (this file runs from dist-bench/bench/). */
const DOCKERFILE = join(resolve(dirname(fileURLToPath(import.meta.url)), '..', '..'), 'Dockerfile');

/**
 * The node flags the image starts the gateway with: those between `node` and
 * the script in the Dockerfile's `CMD ["node", ..., "dist/main.js"]`. The
 * bench's gateway runs with them, so it measures what ships.
 */
export function shippedNodeFlags(dockerfile = readFileSync(DOCKERFILE, 'utf8')): string[] {
  const cmd = dockerfile
    .split('\n')
    .filter((line) => line.startsWith('CMD '))
    .at(-1);
  const words: unknown = cmd === undefined ? null : JSON.parse(cmd.slice(4));
  if (!Array.isArray(words) || words[0] !== 'node' || words.length < 2 || !words.every((word) => typeof word === 'string'))
    throw new Error(`the Dockerfile has no CMD ["node", ..., script] (found: ${cmd ?? 'none'})`);
  return words.slice(1, -1);
}

/**
 * Starts `node <the image's flags> dist/main.js` with a generated config, logs to a file;
 * resolves once /health/ready answers 200 and, for a cluster, once every
 * worker answers the primary's metrics collection (else wrk's connections,
 * made at its start, could all land on the first worker up).
 */
export async function startGateway(launch: GatewayLaunch): Promise<GatewayProcess> {
  writeFileSync(launch.configPath, JSON.stringify(launch.config, null, 2));
  const port = await freePort();
  const log = openSync(launch.logPath, 'w');
  const env: NodeJS.ProcessEnv = { ...process.env, CONFIG_PATH: launch.configPath, PORT: String(port) };
  delete env['LOG_LEVEL'];
  delete env['WORKERS'];
  // The gateway is measured without a proxy between it and the upstream, and on the client the run asks for.
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'no_proxy', 'API_PROXY_TRANSPORT']) delete env[name];
  Object.assign(env, launch.env);
  if (launch.workers !== undefined) env['WORKERS'] = String(launch.workers);
  const child = track(
    spawn(process.execPath, [...shippedNodeFlags(), ...(launch.nodeArgs ?? []), launch.mainScript], { env, stdio: ['ignore', log, 'inherit'] }),
  );
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
  if (launch.workers !== undefined && launch.workers > 1) {
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the gateway exited with ${String(child.exitCode)}; see ${launch.logPath}`);
      try {
        const response = await fetch(`${url}/metrics`);
        const json = (await response.json()) as { workers?: number };
        if (json.workers === launch.workers && processTree(child.pid!).length === launch.workers + 1) break;
      } catch {
        // a worker still starting
      }
      if (Date.now() > deadline) throw new Error(`not all ${launch.workers} gateway workers became ready; see ${launch.logPath}`);
      await delay(100);
    }
  }
  return { child, url, pid: child.pid! };
}

/**
 * Stops a gateway and, for a cluster, checks its workers went with it: SIGTERM
 * to the primary (which drains its workers), SIGKILL after `graceMs`; then
 * waits up to `graceMs` for the workers seen before the stop, SIGKILLs any
 * still there and returns their pids (empty when the tree stopped cleanly).
 */
export async function stopTree(child: ChildProcess, graceMs = 5_000): Promise<number[]> {
  const workers = child.pid === undefined ? [] : processTree(child.pid).slice(1);
  await stop(child, graceMs);
  const deadline = Date.now() + graceMs;
  const alive = (): number[] =>
    workers.filter((pid) => {
      const stat = procStat(pid);
      return stat !== null && stat.starttime === descendants.get(pid) && stat.state !== 'Z';
    });
  while (alive().length > 0 && Date.now() < deadline) await delay(50);
  const left = alive();
  killDescendants(workers);
  return left;
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
  const stat = procStat(pid);
  return stat === null ? Number.NaN : (stat.utime + stat.stime) * 10;
}

/** CPU time a process and its descendants have used, in milliseconds: all of it, and the part spent in the kernel (Linux /proc), or NaN. */
export function cpuOfTree(pid: number): { totalMs: number; systemMs: number } {
  let totalMs = 0;
  let systemMs = 0;
  for (const at of processTree(pid)) {
    const stat = procStat(at);
    if (stat === null) continue;
    totalMs += (stat.utime + stat.stime) * 10;
    systemMs += stat.stime * 10;
  }
  return totalMs === 0 && procStat(pid) === null ? { totalMs: Number.NaN, systemMs: Number.NaN } : { totalMs, systemMs };
}

function procStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** The machine's CPU counters (/proc/stat), to tell how busy the cores were over a stretch (machineShares). */
export function machineCpu(): MachineCpu {
  return parseMachineCpu(readFileSync('/proc/stat', 'utf8'));
}

/** Direct children of `pid`: the `children` file of each of its threads, or a scan of /proc where that file is missing. */
function childrenOf(pid: number): number[] {
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
  if (existsSync(`/proc/${pid}/task/${pid}/children`)) {
    const found = new Set<number>();
    for (const task of tasks) {
      try {
        for (const word of readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(/\s+/)) if (word !== '') found.add(Number(word));
      } catch {
        // the thread ended
      }
    }
    return [...found].filter((child) => Number.isInteger(child) && child > 0);
  }
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((candidate) => procStat(candidate)?.ppid === pid);
}

/**
 * `pid` first, then its descendants, recursively (Linux /proc); zombies left
 * out. Every descendant is remembered so that killAll also reaches it.
 */
export function processTree(pid: number): number[] {
  const tree: number[] = [];
  const visit = (at: number, root: boolean): void => {
    const stat = procStat(at);
    if (stat === null || stat.state === 'Z') return;
    tree.push(at);
    if (!root) descendants.set(at, stat.starttime);
    for (const child of childrenOf(at)) visit(child, false);
  };
  visit(pid, true);
  return tree;
}

/** CPU milliseconds (user + system) of each process of `pid`'s tree, `pid` first. */
export function cpuMsByProcess(pid: number): Map<number, number> {
  const cpu = new Map<number, number>();
  for (const at of processTree(pid)) {
    const ms = cpuMsOf(at);
    if (!Number.isNaN(ms)) cpu.set(at, ms);
  }
  return cpu;
}

/** RSS in bytes of `pid` and all its descendants, summed (shared pages count once per process, as in `ps`), or NaN. */
export function rssOfTree(pid: number): number {
  const tree = processTree(pid);
  return tree.length === 0 ? Number.NaN : tree.reduce((sum, at) => sum + (rssOf(at) || 0), 0);
}

/**
 * Proportional set size in bytes of `pid` and all its descendants (Linux
 * smaps_rollup: each shared page divided among the processes that map it, so
 * the node binary and shared libraries count once), or NaN where unavailable.
 */
export function pssOfTree(pid: number): number {
  let total = 0;
  for (const at of processTree(pid)) {
    try {
      const match = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${at}/smaps_rollup`, 'utf8'));
      if (match === null) return Number.NaN;
      total += Number(match[1]) * 1024;
    } catch {
      return Number.NaN;
    }
  }
  return total;
}

/** Samples a process's RSS (or, with `measure`, any size) every `everyMs` until stopped; returns the maximum seen. */
export function sampleRss(pid: number, everyMs = 250, measure: (pid: number) => number = rssOf): { stop(): number } {
  let max = measure(pid);
  const timer = setInterval(() => {
    const rss = measure(pid);
    if (rss > max) max = rss;
  }, everyMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(max, measure(pid));
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
