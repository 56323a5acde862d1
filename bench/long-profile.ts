/**
 * The long-stream profile (`--only=longstreams`): thousands of concurrent
 * event streams of many seconds each, paced per stream, through four hops
 * in one run: direct to the upstream, through the gateway at its shipped
 * defaults, through nginx (one worker) as a plain hop, and through a bare
 * Node.js pipe (node-pipe.ts), what any Node.js hop adds at the least. Each hop runs
 * alone, against the same upstream process (paced-upstream.ts). What each
 * process spent (CPU from /proc, the gateway's and nginx's RSS), how late
 * the upstream's chunks left and how late the client's event loop ran are
 * recorded with the figures, so a load generator that could not keep up is
 * seen. The gateway's queue series are read during and after its hop.
 */
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fetchGatewaySeries, type GatewayReading } from './gateway-metrics.js';
import type { Target } from './load.js';
import { longStreams, type LongStreamShape, type LongStreamsResult } from './long-streams.js';
import { hasNginx, nginxPeer, nodePipePeer } from './peers.js';
import {
  cpuOfTree,
  machineCpu,
  rssOfTree,
  startGateway,
  startUpstream,
  stop,
  upstreamPacing,
  type GatewayProcess,
  type PacingReport,
  type UpstreamProcess,
} from './processes.js';
import { machineShares } from './stats.js';

export type HopName = 'direct' | 'gateway' | 'nginx' | 'node-pipe';

/** CPU milliseconds used over a hop, and the part of them in the kernel. */
export interface CpuUse {
  readonly totalMs: number;
  readonly systemMs: number;
}

const used = (before: CpuUse, after: CpuUse): CpuUse => ({ totalMs: after.totalMs - before.totalMs, systemMs: after.systemMs - before.systemMs });

export interface LongProfileSetup {
  readonly shape: LongStreamShape;
  /** Where configs and logs go (bench-results/run). */
  readonly workDir: string;
  /** dist-bench/bench/upstream.js (started with --paced). */
  readonly upstreamScript: string;
  /** dist/main.js. */
  readonly gatewayScript: string;
  /** dist-bench/bench/node-pipe.js. */
  readonly nodePipeScript: string;
  readonly gatewayNodeArgs: readonly string[];
  readonly clientKey: string;
  readonly modelRedirect: { readonly from: string; readonly to: string };
  /** The request body (a chat completion with "stream": true). */
  readonly body: string;
  readonly log: (text: string) => void;
}

export interface HopMeasurement {
  readonly hop: HopName;
  readonly client: LongStreamsResult;
  readonly wallSeconds: number;
  readonly upstreamCpu: CpuUse;
  /** The hop's own process tree (gateway, nginx master + worker); null direct. */
  readonly proxyCpu: CpuUse | null;
  /** RSS of the hop's process tree: warm and idle before the hop, the most seen during it, with the most streams open. */
  readonly proxyRss: { readonly idleBytes: number; readonly peakBytes: number; readonly peakOpen: number } | null;
  readonly pacing: PacingReport;
  /** Share of the machine's CPU time busy (anyone's) and stolen by the hypervisor during the hop. */
  readonly machine: { readonly busy: number; readonly steal: number };
  readonly loadAverage: readonly number[];
}

export interface LongProfileResult {
  readonly shape: LongStreamShape;
  readonly hops: readonly HopMeasurement[];
  /** The gateway's queue series for upstream "default", read every second of its hop and once after it. */
  readonly gatewayReadings: readonly GatewayReading[];
  /** Hops that could not be run, and why. */
  readonly notMeasured: Readonly<Partial<Record<HopName, string>>>;
}

/** The gateway config of the profile: the shipped defaults, but for what the bench must set (where, keys, the redirect), and a quick stop. */
export function shippedDefaultsConfig(upstreamUrl: string, clientKey: string, redirect: { readonly from: string; readonly to: string }): unknown {
  return {
    upstreams: { default: { url: `${upstreamUrl}/v1`, api_key: 'sk-bench-upstream' } },
    client_keys: [{ id: 'bench', key: clientKey }],
    model_redirects: { [redirect.from]: redirect.to },
    shutdown: { drain_delay_ms: 0, timeout_ms: 2000 },
  };
}

interface HopProcess {
  readonly target: Target;
  /** The hop's process tree root; null direct. */
  readonly pid: number | null;
  /** Read every second during the hop (the gateway's queue series). */
  readonly sample?: () => Promise<void>;
}

export async function runLongProfile(setup: LongProfileSetup): Promise<LongProfileResult> {
  const { shape, log } = setup;
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${setup.clientKey}` };
  const upstream = await startUpstream(setup.upstreamScript, ['--paced']);
  const hops: HopMeasurement[] = [];
  const gatewayReadings: GatewayReading[] = [];
  const notMeasured: Partial<Record<HopName, string>> = {};
  let gateway: GatewayProcess | null = null;
  try {
    hops.push(await measureHop('direct', upstream, { target: { url: upstream.url, headers }, pid: null }, setup));

    gateway = await startGateway({
      mainScript: setup.gatewayScript,
      config: shippedDefaultsConfig(upstream.url, setup.clientKey, setup.modelRedirect),
      configPath: join(setup.workDir, 'gateway-long.json'),
      logPath: join(setup.workDir, 'gateway-long.log'),
      nodeArgs: setup.gatewayNodeArgs,
    });
    const gatewayUrl = gateway.url;
    log(`(L) gateway at its shipped defaults (no max_connections): pid ${gateway.pid}, ${gatewayUrl}`);
    const read = async (): Promise<void> => {
      gatewayReadings.push(await fetchGatewaySeries(gatewayUrl, 'default'));
    };
    hops.push(await measureHop('gateway', upstream, { target: { url: gatewayUrl, headers }, pid: gateway.pid, sample: read }, setup));
    await delay(1000);
    await read(); // after the run: nothing may be left queued, and nothing may ever have waited
    await stop(gateway.child);
    gateway = null;

    if (hasNginx()) {
      // A stream holds a client and an upstream connection in nginx.
      const peer = await nginxPeer(join(setup.workDir, 'nginx-long'), upstream.url, 1, 2 * shape.streams + 1024).start();
      try {
        hops.push(await measureHop('nginx', upstream, { target: { url: peer.process.url, headers }, pid: peer.process.child.pid! }, setup));
      } finally {
        await stop(peer.process.child);
      }
    } else notMeasured.nginx = 'nginx is not installed (Debian: apt-get install -y nginx)';

    const pipe = await nodePipePeer(setup.nodePipeScript, upstream.url).start();
    try {
      hops.push(await measureHop('node-pipe', upstream, { target: { url: pipe.process.url, headers }, pid: pipe.process.child.pid! }, setup));
    } finally {
      await stop(pipe.process.child);
    }
  } finally {
    if (gateway !== null) await stop(gateway.child);
    await stop(upstream.child);
  }
  return { shape, hops, gatewayReadings, notMeasured };
}

async function measureHop(hop: HopName, upstream: UpstreamProcess, hopProcess: HopProcess, setup: LongProfileSetup): Promise<HopMeasurement> {
  const { shape, log } = setup;
  // JIT and connection pools warm on every hop alike; the upstream's lateness counts start after it.
  const warm = await longStreams(hopProcess.target, setup.body, {
    streams: Math.min(100, shape.streams),
    tokens: 10,
    intervalMs: shape.intervalMs,
    rampMs: 500,
    perConnection: 1,
  }).done;
  if (warm.errors > 0) throw new Error(`${hop}: ${warm.errors} of ${warm.expected} warm-up streams failed`);
  await delay(1000);
  await upstreamPacing(upstream);
  const idleRss = hopProcess.pid === null ? Number.NaN : rssOfTree(hopProcess.pid);
  const cpuUpstream = cpuOfTree(upstream.child.pid!);
  const cpuProxy = hopProcess.pid === null ? null : cpuOfTree(hopProcess.pid);
  const machineBefore = machineCpu();
  const begin = performance.now();
  log(
    `(L) ${hop}: ${shape.streams} streams of ${shape.tokens} tokens ${shape.intervalMs} ms apart, ${shape.perConnection} per connection, opened over ${(shape.rampMs / 1000).toFixed(1)} s`,
  );

  const run = longStreams(hopProcess.target, setup.body, shape);
  let peakRss = idleRss;
  let peakOpen = 0;
  let sampling = Promise.resolve();
  let sampleError: Error | null = null;
  const sampler = setInterval(() => {
    if (hopProcess.pid !== null) peakRss = Math.max(peakRss, rssOfTree(hopProcess.pid));
    peakOpen = Math.max(peakOpen, run.open);
    if (hopProcess.sample !== undefined) {
      sampling = sampling.then(hopProcess.sample).catch((error: unknown) => {
        sampleError ??= error as Error;
      });
    }
  }, 1000);
  const client = await run.done;
  clearInterval(sampler);
  await sampling;
  if (sampleError !== null) throw new Error(`${hop}: reading the gateway's metrics failed: ${(sampleError as Error).message}`);
  const wallSeconds = (performance.now() - begin) / 1000;
  const machine = machineShares(machineBefore, machineCpu());
  const measurement: HopMeasurement = {
    hop,
    client,
    wallSeconds,
    upstreamCpu: used(cpuUpstream, cpuOfTree(upstream.child.pid!)),
    proxyCpu: hopProcess.pid === null || cpuProxy === null ? null : used(cpuProxy, cpuOfTree(hopProcess.pid)),
    proxyRss: hopProcess.pid === null ? null : { idleBytes: idleRss, peakBytes: peakRss, peakOpen: Math.max(peakOpen, client.peakOpen) },
    pacing: await upstreamPacing(upstream),
    machine,
    loadAverage: loadavg(),
  };
  log(
    `    ${hop}: ${client.completed}/${client.expected} streams, ${client.errors} errors, TTFB p50 ${client.ttfb.p50Ms.toFixed(2)} p99 ${client.ttfb.p99Ms.toFixed(2)} ms, ` +
      `gap p50 ${client.gaps.p50Ms.toFixed(2)} p99 ${client.gaps.p99Ms.toFixed(2)} ms; CPU s: client ${(client.clientCpu.totalMs / 1000).toFixed(1)}, upstream ${(measurement.upstreamCpu.totalMs / 1000).toFixed(1)}` +
      `${measurement.proxyCpu === null ? '' : `, ${hop} ${(measurement.proxyCpu.totalMs / 1000).toFixed(1)}`} in ${wallSeconds.toFixed(1)} s; ` +
      `upstream late p99 ${measurement.pacing.p99Ms.toFixed(2)} ms, client loop delay p99 ${client.clientLoopDelay.p99Ms.toFixed(2)} ms; machine busy ${(machine.busy * 100).toFixed(0)} %, stolen ${(machine.steal * 100).toFixed(0)} %`,
  );
  await delay(2000);
  return measurement;
}
