/**
 * `npm run bench`: the gateway (node dist/main.js, its own process) in front
 * of a fast fake upstream (its own process), driven on loopback by wrk (or
 * autocannon) and by Node clients in this process. Gateway and direct runs
 * interleave; medians and ratios are quoted. Prints a table and writes
 * bench-results/latest.json. `--quick` for a short smoke run.
 *
 * Flags: --quick, --rounds=N, --seconds=N, --only=throughput,streams,clients,memory,body,upload,config,nolog,cluster,peers,longstreams,tracing,answermodel,redaction,duplicates,
 *        failover,policy, --baseline=FILE (the tracing, failover and policy sections also measure this build's main.js, e.g. main's,
 *        beside their variants: for failover tracing off, nothing failing, interleaved with this build),
 *        --workers=N (the cluster section's WORKERS, default 2; `auto` is one per CPU),
 *        --profile (the gateway writes a .cpuprofile to bench-results/profiles), --out=FILE,
 *        --peer=FILE[,FILE...] (more proxies for the peers section: see PeerFile in peers.ts),
 *        --long-streams=N (default 2000, --quick 200), --long-seconds=S (each stream's length, default 10, --quick 3),
 *        --long-rate=R (tokens per second of each stream, default 20): the long-stream profile (long-profile.ts).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { answerModelCost } from './answer-model-cost.js';
import { configScale, type ConfigScaleResult } from './config-scale.js';
import { duplicateModelCost, summarizeDuplicateModel } from './duplicate-model.js';
import { longStreamRows, summarizeLongProfile, type LongProfileSummary } from './long-report.js';
import { runLongProfile } from './long-profile.js';
import { closedLoop, hasWrk, openSlowStreams, paced, sequential, sequentialUploads, type PacedResult, type StreamsResult, type Target } from './load.js';
import { parseBenchArgs, type Options } from './options.js';
import { startOtlpSink } from './otlp-sink.js';
import { filePeer, hasNginx, naivePeer, nginxPeer, type Peer, type PeerLauncher } from './peers.js';
import { hasRedis, startBenchRedis } from './redis.js';
import { REDACTED_KEY, redactionAB, summarizeRedaction, UNREDACTED_KEY } from './redaction.js';
import { rawStreams } from './stream-client.js';
import { measureVariants, type VariantRun } from './variants.js';
import {
  cpuMsByProcess,
  cpuMsOf,
  killAll,
  processTree,
  pssOfTree,
  rssOf,
  rssOfTree,
  sampleRss,
  startGateway,
  startUpstream,
  stop,
  stopTree,
  type GatewayProcess,
} from './processes.js';
import { median, round, shares, type WrkResult } from './stats.js';
import { attemptCounts, FAILOVER_MODEL, failoverConfig, pacedByAttempts, type FailoverPaced } from './failover.js';

/** This file runs from dist-bench/bench/; the gateway it measures is the product build in dist/. */
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const dist = join(root, 'dist');

const BODY = JSON.stringify({
  model: 'gpt-4',
  messages: [
    { role: 'system', content: 'You are a helpful assistant.' },
    { role: 'user', content: 'Say hello in one short sentence.' },
  ],
  temperature: 0.2,
  max_tokens: 64,
});
const STREAM_BODY = JSON.stringify({ ...(JSON.parse(BODY) as object), stream: true });
const UPLOAD_BOUNDARY = 'bench-form-boundary-q8W3xZ';
const UPLOAD_SIZE = 10 * 1024 * 1024;

/** A 10 MiB transcription form, its model (routed, so rewritten) before or after the file. */
function uploadForm(modelFirst: boolean): Buffer {
  const model = Buffer.from(`--${UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name="model"\r\n\r\n${MODEL_REDIRECT.from}\r\n`);
  const fileHead = Buffer.from(`--${UPLOAD_BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="speech.wav"\r\nContent-Type: audio/wav\r\n\r\n`);
  // Bytes that never spell the boundary (or the bench upstream's stream flag).
  const audio = Buffer.alloc(UPLOAD_SIZE, 'RIFF\x00\x01\x7f\xfe', 'latin1');
  const file = Buffer.concat([fileHead, audio, Buffer.from('\r\n')]);
  const end = Buffer.from(`--${UPLOAD_BOUNDARY}--\r\n`);
  return Buffer.concat(modelFirst ? [model, file, end] : [file, model, end]);
}

const BIG_BODY = JSON.stringify({ model: 'gpt-4', messages: [{ role: 'user', content: 'x'.repeat(1024 * 1024 - 60) }] });
const CLIENT_KEY = 'bench-client-key-0123456789';
/** The one redirect the requests above go through: the model they ask for, and the one the upstream gets. */
const MODEL_REDIRECT = { from: 'gpt-4', to: 'bench-model' } as const;

/** The bench gateway's config; `extra`'s keys are added, or replace the defaults (a policy's keys replace `client_keys`). */
function gatewayConfig(upstreamUrl: string, accessLog: boolean, extra: Record<string, unknown> = {}, apiKey = REDACTED_KEY): unknown {
  return {
    upstreams: { default: { url: `${upstreamUrl}/v1`, api_key: apiKey, max_connections: 8192 } },
    client_keys: [{ id: 'bench', key: CLIENT_KEY }],
    model_redirects: { [MODEL_REDIRECT.from]: MODEL_REDIRECT.to },
    access_log: accessLog,
    body_limit: '16MiB', // the upload section's 10 MiB forms
    log_level: 'info',
    shutdown: { drain_delay_ms: 0, timeout_ms: 2000 },
    ...extra,
  };
}

const FAILOVER_BODY = JSON.stringify({ ...(JSON.parse(BODY) as object), model: FAILOVER_MODEL });

const log = (text: string): void => {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${text}\n`);
};

interface Pair<T> {
  gateway: T[];
  direct: T[];
}

/** Runs `fn` against gateway and direct, alternating which goes first each round. */
async function interleave<T>(
  rounds: number,
  gateway: Target,
  direct: Target,
  fn: (target: Target, which: 'gateway' | 'direct') => Promise<T>,
): Promise<Pair<T>> {
  const pair: Pair<T> = { gateway: [], direct: [] };
  for (let round = 0; round < rounds; round++) {
    const order: ('gateway' | 'direct')[] = round % 2 === 0 ? ['gateway', 'direct'] : ['direct', 'gateway'];
    for (const which of order) pair[which].push(await fn(which === 'gateway' ? gateway : direct, which));
  }
  return pair;
}

const med = <T>(values: readonly T[], pick: (value: T) => number): number => median(values.map(pick));

/** Runs `fn` on every target each round, the order rotating by one each round; results by target. */
async function rotate<K extends string, T>(rounds: number, targets: Record<K, Target>, fn: (target: Target, which: K) => Promise<T>): Promise<Record<K, T[]>> {
  const names = Object.keys(targets) as K[];
  const results = Object.fromEntries(names.map((name) => [name, [] as T[]])) as Record<K, T[]>;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + round) % names.length]!;
      results[name].push(await fn(targets[name], name));
    }
  }
  return results;
}

/** Section (7): each client's throughput and 500-stream figures against direct, from the same rotated rounds. */
function summarizeClients(
  loop: Record<'native' | 'undici' | 'direct', (LoopResult & { cpuUs: number })[]>,
  streams: Record<'native' | 'undici' | 'direct', StreamsResult[]>,
): Record<string, number> {
  const rps = (which: 'native' | 'undici' | 'direct'): number => med(loop[which], (r) => r.requestsPerSecond);
  const done = (which: 'native' | 'undici' | 'direct'): number => med(streams[which], (r) => r.completed / r.seconds);
  const ttfb = (which: 'native' | 'undici' | 'direct'): number => med(streams[which], (r) => r.ttfbP50Ms);
  return {
    native_rps: Math.round(rps('native')),
    undici_rps: Math.round(rps('undici')),
    direct_rps: Math.round(rps('direct')),
    native_ratio: round(rps('native') / rps('direct'), 3),
    undici_ratio: round(rps('undici') / rps('direct'), 3),
    native_cpu_us_per_request: round(
      med(loop.native, (r) => r.cpuUs),
      1,
    ),
    undici_cpu_us_per_request: round(
      med(loop.undici, (r) => r.cpuUs),
      1,
    ),
    native_p99_ms: round(
      med(loop.native, (r) => r.p99Ms),
      2,
    ),
    undici_p99_ms: round(
      med(loop.undici, (r) => r.p99Ms),
      2,
    ),
    errors: [...loop.native, ...loop.undici, ...loop.direct].reduce((sum, r) => sum + r.errors, 0),
    native_streams_done_ratio: round(done('native') / done('direct'), 3),
    undici_streams_done_ratio: round(done('undici') / done('direct'), 3),
    native_ttfb_p50_ms: round(ttfb('native'), 2),
    undici_ttfb_p50_ms: round(ttfb('undici'), 2),
    direct_ttfb_p50_ms: round(ttfb('direct'), 2),
    native_added_ttfb_p50_ms: round(ttfb('native') - ttfb('direct'), 2),
    undici_added_ttfb_p50_ms: round(ttfb('undici') - ttfb('direct'), 2),
    stream_errors: [...streams.native, ...streams.undici, ...streams.direct].reduce((sum, r) => sum + r.errors, 0),
  };
}

/** `concurrency` streams of 20 events 5 ms apart, interleaved through `via` and direct; `viaLabel` names `via` in the log. */
function streamRounds(rounds: number, seconds: number, via: Target, direct: Target, concurrency: number, viaLabel = 'gateway'): Promise<Pair<StreamsResult>> {
  return interleave(rounds, via, direct, async (target, which) => {
    const result = await rawStreams(target, STREAM_BODY, concurrency, seconds, 20, 5);
    log(
      `  ${(which === 'gateway' ? viaLabel : which).padEnd(7)} completed ${result.completed} in ${result.seconds.toFixed(1)} s, TTFB p50 ${result.ttfbP50Ms.toFixed(2)} ms p99 ${result.ttfbP99Ms.toFixed(2)} ms, errors ${result.errors}`,
    );
    return result;
  });
}

async function main(): Promise<void> {
  const options = parseBenchArgs(process.argv.slice(2), root);
  armWatchdog(options);
  const wants = (section: string): boolean => options.only === null || options.only.has(section);
  const work = join(root, 'bench-results', 'run');
  mkdirSync(work, { recursive: true });
  const profileDir = join(root, 'bench-results', 'profiles');
  if (options.profile) mkdirSync(profileDir, { recursive: true });

  const tool = hasWrk() ? 'wrk' : 'autocannon';
  if (tool === 'autocannon')
    log('wrk is not installed (Debian: apt-get install -y wrk); using autocannon, which costs more CPU: figures are lower and not comparable to wrk runs');
  const loadStart = os.loadavg();
  log(
    `${options.quick ? 'quick' : 'full'} run: ${options.rounds} round(s) of ${options.seconds} s, load generator ${tool}, ${os.availableParallelism()} CPUs, load average ${loadStart.map((n) => n.toFixed(2)).join(' ')}`,
  );

  const upstream = await startUpstream(join(here, 'upstream.js'));
  let gatewayIndex = 0;
  /** `workers` only for the cluster section: the other launches run without WORKERS (one process). */
  const launch = (
    accessLog: boolean,
    workers?: number,
    extra: Record<string, unknown> = {},
    mainScript = join(dist, 'main.js'),
    { apiKey = REDACTED_KEY, env }: { apiKey?: string; env?: Record<string, string> } = {},
  ): Promise<GatewayProcess> =>
    startGateway({
      mainScript,
      config: gatewayConfig(upstream.url, accessLog, extra, apiKey),
      configPath: join(work, `gateway-${gatewayIndex}.json`),
      logPath: join(work, `gateway-${gatewayIndex++}.log`),
      nodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      ...(workers === undefined ? {} : { workers }),
      ...(env === undefined ? {} : { env }),
    });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` };
  const direct: Target = { url: upstream.url, headers };
  const lua = join(work, 'post.lua');
  const results: Record<string, unknown> = {};
  const variantRun: Omit<VariantRun, 'label'> = {
    tool,
    rounds: options.rounds,
    seconds: options.seconds,
    lua,
    headers,
    body: BODY,
    streamBody: STREAM_BODY,
    streams: 500,
    log,
  };

  let gateway = await launch(true);
  await delay(500);
  const rssIdleFirst = rssOf(gateway.pid);
  let via: Target = { url: gateway.url, headers };
  log(`upstream ${upstream.url}, gateway ${gateway.url} (pid ${gateway.pid}), idle RSS ${mib(rssIdleFirst)} MiB`);

  // Warm up both sides (JIT, connection pools).
  await closedLoop(tool, via, BODY, 64, 1, lua);
  await closedLoop(tool, direct, BODY, 64, 1, lua);

  let rssUnderLoad = Number.NaN;
  if (wants('throughput')) {
    log('(1) non-streaming, 64 connections');
    const loop = await interleave(options.rounds, via, direct, async (target, which) => {
      const sampler = which === 'gateway' ? sampleRss(gateway.pid) : null;
      const cpu = [cpuMsOf(gateway.pid), cpuMsOf(upstream.child.pid!)];
      const result = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
      const gatewayCpu = ((cpuMsOf(gateway.pid) - cpu[0]!) * 1000) / result.requests;
      const upstreamCpu = ((cpuMsOf(upstream.child.pid!) - cpu[1]!) * 1000) / result.requests;
      if (sampler !== null) rssUnderLoad = Math.max(Number.isNaN(rssUnderLoad) ? 0 : rssUnderLoad, sampler.stop());
      log(
        `  ${which.padEnd(7)} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}, CPU µs/request: gateway ${gatewayCpu.toFixed(1)}, upstream ${upstreamCpu.toFixed(1)}`,
      );
      return { ...result, gatewayCpuUs: gatewayCpu, upstreamCpuUs: upstreamCpu };
    });
    log('(1) added latency at 500 req/s');
    const rate = await interleave(options.rounds, via, direct, async (target, which) => {
      const result = await paced(target, BODY, 500, options.seconds);
      log(`  ${which.padEnd(7)} p50 ${result.p50Ms.toFixed(3)} ms, p99 ${result.p99Ms.toFixed(3)} ms, errors ${result.errors}`);
      return result;
    });
    results['throughput'] = summarizeLoop(loop, rssUnderLoad);
    results['added_latency_500rps'] = summarizePaced(rate);
  }

  if (wants('streams')) {
    const streamResults: Record<string, unknown> = {};
    for (const concurrency of [50, 500]) {
      log(`(2) ${concurrency} concurrent streams, 20 chunks 5 ms apart`);
      const pair = await streamRounds(options.rounds, options.seconds, via, direct, concurrency);
      streamResults[String(concurrency)] = summarizeStreams(pair);
    }
    results['streams'] = streamResults;
  }

  if (wants('clients')) {
    // The same gateway and config twice, one sending everything through undici (the diagnostic
    // API_PROXY_TRANSPORT=undici): native, undici and direct take turns, the order rotating each round.
    const undiciGateway = await launch(true, undefined, {}, join(dist, 'main.js'), { env: { API_PROXY_TRANSPORT: 'undici' } });
    const viaUndici: Target = { url: undiciGateway.url, headers };
    const gateways: Record<'native' | 'undici', GatewayProcess> = { native: gateway, undici: undiciGateway };
    await closedLoop(tool, viaUndici, BODY, 64, 1, lua);
    await rawStreams(viaUndici, STREAM_BODY, 200, 1, 20, 5);
    const targets = { native: via, undici: viaUndici, direct };
    log('(7) upstream client: native HTTP/1.1 vs undici, non-streaming, 64 connections');
    const loop = await rotate(options.rounds, targets, async (target, which) => {
      const pid = which === 'direct' ? null : gateways[which].pid;
      const before = pid === null ? 0 : cpuMsOf(pid);
      const result = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
      const cpu = pid === null ? Number.NaN : ((cpuMsOf(pid) - before) * 1000) / result.requests;
      log(
        `  ${which.padEnd(7)} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}${pid === null ? '' : `, CPU µs/request ${cpu.toFixed(1)}`}`,
      );
      return { ...result, cpuUs: cpu };
    });
    log('(7) upstream client: native HTTP/1.1 vs undici, 500 concurrent streams, 20 chunks 5 ms apart');
    const streams = await rotate(options.rounds, targets, async (target, which) => {
      const result = await rawStreams(target, STREAM_BODY, 500, options.seconds, 20, 5);
      log(
        `  ${which.padEnd(7)} completed ${result.completed} in ${result.seconds.toFixed(1)} s, TTFB p50 ${result.ttfbP50Ms.toFixed(2)} ms p99 ${result.ttfbP99Ms.toFixed(2)} ms, errors ${result.errors}`,
      );
      return result;
    });
    await stop(undiciGateway.child);
    results['clients'] = summarizeClients(loop, streams);
  }

  if (wants('answermodel')) {
    // Two fresh gateways, the same config but answer_model, measured in turns: the cost of writing the requested model back.
    log('(6) answer_model: requested (rewritten) against upstream (relayed as sent), 64 connections and 500 streams');
    const rewriting = await startGateway({
      mainScript: join(dist, 'main.js'),
      config: gatewayConfig(upstream.url, true, { answer_model: 'requested' }),
      configPath: join(work, 'gateway-answer-requested.json'),
      logPath: join(work, 'gateway-answer-requested.log'),
    });
    const relaying = await startGateway({
      mainScript: join(dist, 'main.js'),
      config: gatewayConfig(upstream.url, true, { answer_model: 'upstream' }),
      configPath: join(work, 'gateway-answer-upstream.json'),
      logPath: join(work, 'gateway-answer-upstream.log'),
    });
    const on: Target = { url: rewriting.url, headers };
    const off: Target = { url: relaying.url, headers };
    for (const target of [on, off]) {
      await closedLoop(tool, target, BODY, 64, 1, lua);
      await rawStreams(target, STREAM_BODY, 200, 1, 20, 5);
    }
    const loop = await interleave(options.rounds, on, off, async (target, which) => {
      const pid = which === 'gateway' ? rewriting.pid : relaying.pid;
      const cpu = cpuMsOf(pid);
      const result = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
      const gatewayCpu = ((cpuMsOf(pid) - cpu) * 1000) / result.requests;
      log(
        `  ${which === 'gateway' ? 'rewrite' : 'relay  '} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}, CPU µs/request ${gatewayCpu.toFixed(1)}`,
      );
      return { ...result, gatewayCpuUs: gatewayCpu, upstreamCpuUs: Number.NaN };
    });
    const streams = await interleave(options.rounds, on, off, async (target, which) => {
      const pid = which === 'gateway' ? rewriting.pid : relaying.pid;
      const cpu = cpuMsOf(pid);
      const result = await rawStreams(target, STREAM_BODY, 500, options.seconds, 20, 5);
      const cpuPerStream = ((cpuMsOf(pid) - cpu) * 1000) / Math.max(1, result.completed);
      log(
        `  ${which === 'gateway' ? 'rewrite' : 'relay  '} completed ${result.completed} in ${result.seconds.toFixed(1)} s, TTFB p50 ${result.ttfbP50Ms.toFixed(2)} ms p99 ${result.ttfbP99Ms.toFixed(2)} ms, errors ${result.errors}, CPU µs/stream ${cpuPerStream.toFixed(0)}`,
      );
      return { ...result, cpuUsPerStream: cpuPerStream };
    });
    await stop(rewriting.child);
    await stop(relaying.child);
    const stage = answerModelCost(options.quick ? 3 : 7);
    log(`  the stage alone, in process: ${stage.jsonAnswerUs.toFixed(2)} µs CPU per JSON answer, ${stage.streamUs.toFixed(2)} µs per 20-event stream`);
    const throughputSummary = summarizeLoop(loop, Number.NaN);
    results['answer_model'] = {
      rewrite_rps: throughputSummary['gateway_rps'],
      relay_rps: throughputSummary['direct_rps'],
      rps_ratio: throughputSummary['ratio'],
      rewrite_p50_ms: throughputSummary['gateway_p50_ms'],
      relay_p50_ms: throughputSummary['direct_p50_ms'],
      rewrite_cpu_us_per_request: round(
        med(loop.gateway, (r) => r.gatewayCpuUs),
        1,
      ),
      relay_cpu_us_per_request: round(
        med(loop.direct, (r) => r.gatewayCpuUs),
        1,
      ),
      ...Object.fromEntries(
        Object.entries(summarizeStreams(streams)).map(([key, value]) => [`streams_500_${key.replace('gateway', 'rewrite').replace('direct', 'relay')}`, value]),
      ),
      streams_500_rewrite_cpu_us_per_stream: Math.round(med(streams.gateway, (r) => r.cpuUsPerStream)),
      streams_500_relay_cpu_us_per_stream: Math.round(med(streams.direct, (r) => r.cpuUsPerStream)),
      stage_cpu_us_per_json_answer: round(stage.jsonAnswerUs, 2),
      stage_cpu_us_per_stream: round(stage.streamUs, 2),
    };
  }

  if (wants('body')) {
    log('(4) 1 MiB request body, sequential');
    const count = options.quick ? 10 : 20;
    await sequential(via, BIG_BODY, 3);
    await sequential(direct, BIG_BODY, 3);
    const pair = await interleave(options.rounds, via, direct, (target) => sequential(target, BIG_BODY, count));
    const gw = median(pair.gateway.flat());
    const dr = median(pair.direct.flat());
    results['body_1mib'] = {
      gateway_p50_ms: round(gw, 3),
      direct_p50_ms: round(dr, 3),
      added_ms: round(gw - dr, 3),
      requests_each: pair.gateway.flat().length,
    };
    log(`  gateway p50 ${gw.toFixed(2)} ms, direct p50 ${dr.toFixed(2)} ms`);
  }

  if (wants('upload')) {
    const count = options.quick ? 4 : 10;
    const formType = `multipart/form-data; boundary=${UPLOAD_BOUNDARY}`;
    const upload: Record<string, unknown> = {};
    // `streamed_through`: the same bytes as application/octet-stream, which the gateway streams without reading
    // (as it did forms before they were routed): the cost of routing is the difference.
    const variants = [
      ['model_first', true, formType],
      ['model_last', false, formType],
      ['streamed_through', true, 'application/octet-stream'],
    ] as const;
    for (const [name, modelFirst, type] of variants) {
      log(`(4b) 10 MiB transcription upload, ${name.replace('_', ' ')}, sequential`);
      const form = uploadForm(modelFirst);
      await sequentialUploads(via, '/v1/audio/transcriptions', form, type, 2);
      await sequentialUploads(direct, '/v1/audio/transcriptions', form, type, 2);
      const rssBefore = rssOf(gateway.pid);
      let rssPeak = rssBefore;
      const pair = await interleave(options.rounds, via, direct, async (target, which) => {
        const sampler = which === 'gateway' ? sampleRss(gateway.pid, 5) : null;
        const latencies = await sequentialUploads(target, '/v1/audio/transcriptions', form, type, count);
        if (sampler !== null) rssPeak = Math.max(rssPeak, sampler.stop());
        return latencies;
      });
      const gw = median(pair.gateway.flat());
      const dr = median(pair.direct.flat());
      upload[name] = {
        gateway_p50_ms: round(gw, 2),
        direct_p50_ms: round(dr, 2),
        added_ms: round(gw - dr, 2),
        gateway_rss_before_mib: round(mib(rssBefore), 1),
        gateway_rss_peak_mib: round(mib(rssPeak), 1),
        uploads_each: pair.gateway.flat().length,
      };
      log(`  gateway p50 ${gw.toFixed(2)} ms, direct p50 ${dr.toFixed(2)} ms, gateway RSS ${mib(rssBefore).toFixed(1)} -> peak ${mib(rssPeak).toFixed(1)} MiB`);
    }
    results['upload_10mib'] = upload;
  }

  if (wants('nolog')) {
    log('(1b) non-streaming, 64 connections, access_log: false');
    await stop(gateway.child);
    gateway = await launch(false);
    via = { url: gateway.url, headers };
    await closedLoop(tool, via, BODY, 64, 1, lua);
    const loop = await interleave(options.rounds, via, direct, async (target, which) => {
      const result = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
      log(`  ${which.padEnd(7)} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms`);
      return result;
    });
    results['throughput_no_access_log'] = summarizeLoop(loop, Number.NaN);
  }

  if (wants('tracing')) {
    // Tracing off, on at 100 % and at 1 % (new traces: the requests carry no traceparent), each its own
    // gateway, all running; rounds interleave them. A --baseline build runs beside them with tracing off.
    const sink = await startOtlpSink();
    const tracing = (ratio: number): Record<string, unknown> => ({
      tracing: { enabled: true, endpoint: sink.url, sampler: 'parentbased_traceidratio', sampler_arg: ratio },
    });
    const variants: [string, GatewayProcess][] = [];
    if (options.baseline !== null) variants.push(['baseline_off', await launch(true, undefined, {}, options.baseline)]);
    variants.push(['off', await launch(true)], ['on_100', await launch(true, undefined, tracing(1))], ['on_1', await launch(true, undefined, tracing(0.01))]);
    const summary = await measureVariants(variants, { ...variantRun, label: '(5) tracing' });
    results['tracing'] = { ...summary, collector_posts: sink.posts(), collector_bytes: sink.bytes() };
    for (const [, gw] of variants) await stop(gw.child);
    await sink.close();
  }

  if (wants('policy')) {
    // A consumer's policy on every request (an allow-list, requests and tokens per minute high enough never to
    // refuse, so every request is judged and charged) against the same gateway without one, all running, rounds
    // interleaved; usage accounting is on in both. The policy's counters in the process, then in a Redis.
    // A --baseline build (before usage accounting) runs beside them.
    const policy = (redisUrl: string | null): Record<string, unknown> => ({
      client_keys: [],
      consumers: [
        {
          name: 'bench',
          keys: [{ id: 'bench', key: CLIENT_KEY }],
          policy: {
            models: ['gpt-*', 'bench-*'],
            limits: { requests_per_minute: { limit: 1_000_000_000, per: 'key' }, tokens_per_minute: { limit: 1_000_000_000_000, per: 'consumer' } },
          },
        },
      ],
      ...(redisUrl === null ? {} : { rate_limits: { redis: { url: redisUrl }, fail_open: false } }),
    });
    const redis = hasRedis() ? await startBenchRedis() : null;
    if (redis === null) log('redis-server is not installed (Debian: apt-get install -y redis-server): the policy section measures local counters only');
    const variants: [string, GatewayProcess][] = [];
    if (options.baseline !== null) variants.push(['baseline', await launch(true, undefined, {}, options.baseline)]);
    variants.push(['none', await launch(true)], ['local', await launch(true, undefined, policy(null))]);
    if (redis !== null) variants.push(['redis', await launch(true, undefined, policy(redis.url))]);
    const summary = await measureVariants(variants, { ...variantRun, label: '(10) policy' });
    const none = summary['none']!;
    results['policy'] = {
      ...summary,
      local_over_none: round(summary['local']!.requests_per_second / none.requests_per_second, 3),
      ...(redis === null ? {} : { redis_over_none: round(summary['redis']!.requests_per_second / none.requests_per_second, 3) }),
    };
    for (const [, gw] of variants) await stop(gw.child);
    await redis?.stop();
  }

  if (wants('memory')) {
    const count = 5000;
    log(`(3) memory: fresh gateway, then ${count} open slow streams`);
    await stop(gateway.child);
    gateway = await launch(true);
    via = { url: gateway.url, headers };
    await delay(1000);
    const idle = rssOf(gateway.pid);
    await closedLoop(tool, via, BODY, 64, 1, lua);
    await rawStreams(via, STREAM_BODY, 200, 1, 20, 5);
    await delay(2000);
    const warm = rssOf(gateway.pid);
    const slow = await openSlowStreams(via, STREAM_BODY, count, 60_000);
    await delay(2000);
    const open = rssOf(gateway.pid);
    slow.close();
    await delay(1000);
    const perStream = (open - warm) / slow.open;
    results['memory'] = {
      rss_idle_mib: round(mib(idle), 1),
      rss_idle_first_mib: round(mib(rssIdleFirst), 1),
      rss_under_load_mib: round(mib(rssUnderLoad), 1),
      rss_warm_mib: round(mib(warm), 1),
      open_streams: slow.open,
      rss_open_streams_mib: round(mib(open), 1),
      bytes_per_open_stream: Math.round(perStream),
    };
    log(
      `  idle ${mib(idle).toFixed(1)} MiB, warm ${mib(warm).toFixed(1)} MiB, ${slow.open} open streams ${mib(open).toFixed(1)} MiB: ${(perStream / 1024).toFixed(1)} KiB per stream`,
    );
  }

  if (wants('cluster')) {
    const n = options.workers;
    await stop(gateway.child); // idle, but off the machine while the cluster runs
    const cluster = await launch(true, n);
    const clusterVia: Target = { url: cluster.url, headers };
    await delay(1000);
    const idleTree = processTree(cluster.pid);
    const idleRss = idleTree.map(rssOf);
    const idle = idleRss.reduce((sum, rss) => sum + rss, 0);
    const idlePss = pssOfTree(cluster.pid);
    log(
      `(cluster) gateway with WORKERS=${n}: primary pid ${cluster.pid}, workers ${idleTree.slice(1).join(', ')}; idle RSS ${mib(idle).toFixed(1)} MiB (primary ${mib(idleRss[0]!).toFixed(1)}, workers ${idleRss
        .slice(1)
        .map((rss) => mib(rss).toFixed(1))
        .join(', ')}), PSS ${mib(idlePss).toFixed(1)} MiB`,
    );
    await closedLoop(tool, clusterVia, BODY, 64, 1, lua);

    log(`(1c) non-streaming, 64 connections, ${n} workers`);
    let clusterRssMax = Number.NaN;
    const loop = await interleave(options.rounds, clusterVia, direct, async (target, which) => {
      const sampler = which === 'gateway' ? sampleRss(cluster.pid, 250, rssOfTree) : null;
      const before = cpuMsByProcess(cluster.pid);
      const upstreamBefore = cpuMsOf(upstream.child.pid!);
      const result = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
      const after = cpuMsByProcess(cluster.pid);
      const upstreamCpu = ((cpuMsOf(upstream.child.pid!) - upstreamBefore) * 1000) / result.requests;
      if (sampler !== null) clusterRssMax = Math.max(Number.isNaN(clusterRssMax) ? 0 : clusterRssMax, sampler.stop());
      // Per process of the tree, primary first; a worker that was restarted meanwhile counts from 0.
      const deltas = [...after].map(([pid, ms]) => ms - (before.get(pid) ?? 0));
      if ([...before.keys()].some((pid) => !after.has(pid))) log('  warning: the cluster lost a process during the run (a worker restarted?)');
      const gatewayCpu = (deltas.reduce((sum, ms) => sum + ms, 0) * 1000) / result.requests;
      const primaryCpu = (deltas[0]! * 1000) / result.requests;
      const workerShares = shares(deltas.slice(1));
      const breakdown = which === 'gateway' ? ` (primary ${primaryCpu.toFixed(1)}, worker shares ${workerShares.map((x) => x.toFixed(2)).join('/')})` : '';
      const cpuText = `CPU µs/request: gateway ${gatewayCpu.toFixed(1)}${breakdown}, upstream ${upstreamCpu.toFixed(1)}`;
      log(
        `  ${which.padEnd(7)} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}, ${cpuText}`,
      );
      return { ...result, gatewayCpuUs: gatewayCpu, upstreamCpuUs: upstreamCpu, primaryCpuUs: primaryCpu, workerShares };
    });
    results['throughput_cluster'] = {
      workers: n,
      ...summarizeLoop(loop, clusterRssMax),
      primary_cpu_us_per_request: round(
        med(loop.gateway, (r) => r.primaryCpuUs),
        1,
      ),
      // median over the gateway rounds of each worker's share of the workers' CPU (evenness of the kernel's / primary's spread)
      worker_cpu_shares: Array.from({ length: n }, (_, i) =>
        round(
          med(loop.gateway, (r) => r.workerShares[i] ?? Number.NaN),
          3,
        ),
      ),
    };

    log(`(2c) 500 concurrent streams, 20 chunks 5 ms apart, ${n} workers`);
    const pair = await streamRounds(options.rounds, options.seconds, clusterVia, direct, 500);
    results['streams_cluster'] = { '500': { workers: n, ...summarizeStreams(pair) } };

    const stopStart = performance.now();
    const left = await stopTree(cluster.child);
    const stopMs = performance.now() - stopStart;
    if (left.length > 0) log(`  warning: ${left.length} worker(s) still running after the primary stopped (pids ${left.join(', ')}); killed`);
    else log(`  cluster stopped in ${stopMs.toFixed(0)} ms, no worker left`);
    results['memory_cluster'] = {
      workers: n,
      rss_idle_mib: round(mib(idle), 1),
      rss_idle_primary_mib: round(mib(idleRss[0]!), 1),
      rss_idle_workers_mib: idleRss.slice(1).map((rss) => round(mib(rss), 1)),
      pss_idle_mib: round(mib(idlePss), 1),
      rss_under_load_mib: round(mib(clusterRssMax), 1),
    };
    results['cluster_stop'] = { workers: n, stop_ms: Math.round(stopMs), workers_left_after_stop: left.length };
  }

  if (wants('failover')) {
    await stop(gateway.child);
    if (options.baseline !== null) {
      // No cost when nothing fails: this build and the baseline build, both running, rounds interleaved.
      const variants: [string, GatewayProcess][] = [
        ['baseline', await launch(true, undefined, {}, options.baseline)],
        ['this', await launch(true)],
      ];
      const loops: Record<string, WrkResult[]> = { baseline: [], this: [] };
      const streams: Record<string, StreamsResult[]> = { baseline: [], this: [] };
      // CPU per request and per stream: on a busy shared machine a steadier figure than rates and latencies.
      const cpu: Record<string, { loop: number[]; stream: number[] }> = { baseline: { loop: [], stream: [] }, this: { loop: [], stream: [] } };
      for (const [, gw] of variants) {
        await closedLoop(tool, { url: gw.url, headers }, BODY, 64, 1, lua);
        await rawStreams({ url: gw.url, headers }, STREAM_BODY, 100, 1, 20, 5);
      }
      for (let r = 0; r < options.rounds; r++) {
        log(`(6) no failures, this build against the baseline, round ${r + 1}: non-streaming 64 connections, then 500 concurrent streams`);
        for (const [name, gw] of r % 2 === 0 ? variants : [...variants].reverse()) {
          const target: Target = { url: gw.url, headers };
          const cpuStart = cpuMsOf(gw.pid);
          const loop = await closedLoop(tool, target, BODY, 64, options.seconds, lua);
          const cpuLoop = cpuMsOf(gw.pid);
          const stream = await rawStreams(target, STREAM_BODY, 500, options.seconds, 20, 5);
          const cpuStream = cpuMsOf(gw.pid);
          loops[name]!.push(loop);
          streams[name]!.push(stream);
          cpu[name]!.loop.push(((cpuLoop - cpuStart) * 1000) / loop.requests);
          cpu[name]!.stream.push((cpuStream - cpuLoop) / Math.max(1, stream.completed));
          log(
            `  ${name.padEnd(8)} ${loop.requestsPerSecond.toFixed(0)} req/s, p50 ${loop.p50Ms.toFixed(2)} ms, ${cpu[name]!.loop.at(-1)!.toFixed(1)} µs CPU/request; streams ${stream.completed}, TTFB p50 ${stream.ttfbP50Ms.toFixed(2)} ms p99 ${stream.ttfbP99Ms.toFixed(2)} ms, ${cpu[name]!.stream.at(-1)!.toFixed(2)} ms CPU/stream, errors ${loop.errors + stream.errors}`,
          );
        }
      }
      const ab: Record<string, number> = {};
      for (const name of ['baseline', 'this']) {
        ab[`${name}_rps`] = round(
          med(loops[name]!, (x) => x.requestsPerSecond),
          0,
        );
        ab[`${name}_p50_ms`] = round(
          med(loops[name]!, (x) => x.p50Ms),
          3,
        );
        ab[`${name}_streams_500_ttfb_p50_ms`] = round(
          med(streams[name]!, (x) => x.ttfbP50Ms),
          3,
        );
        ab[`${name}_streams_500_ttfb_p99_ms`] = round(
          med(streams[name]!, (x) => x.ttfbP99Ms),
          3,
        );
        ab[`${name}_errors`] = [...loops[name]!, ...streams[name]!].reduce((sum, x) => sum + x.errors, 0);
        ab[`${name}_cpu_us_per_request`] = round(median(cpu[name]!.loop), 1);
        ab[`${name}_cpu_ms_per_stream`] = round(median(cpu[name]!.stream), 3);
      }
      ab['rps_ratio'] = round(ab['this_rps']! / ab['baseline_rps']!, 3);
      ab['streams_500_ttfb_p50_delta_ms'] = round(ab['this_streams_500_ttfb_p50_ms']! - ab['baseline_streams_500_ttfb_p50_ms']!, 3);
      results['failover_ab'] = ab;
      for (const [, gw] of variants) await stop(gw.child);
    }
    // One gateway, two models at the same rate, interleaved: the plain redirect, and the route whose flaky target fails 20 %.
    gateway = await startGateway({
      mainScript: join(dist, 'main.js'),
      config: failoverConfig(gatewayConfig(upstream.url, true), upstream.url, MODEL_REDIRECT.to),
      configPath: join(work, `gateway-${gatewayIndex}.json`),
      logPath: join(work, `gateway-${gatewayIndex++}.log`),
    });
    via = { url: gateway.url, headers };
    await closedLoop(tool, via, FAILOVER_BODY, 64, 1, lua);
    const before = await attemptCounts(gateway.url);
    log('(6) failover: 500 req/s, half of a route on a target failing 20 % (503), against the plain redirect');
    const rounds = { plain: [] as FailoverPaced[], failover: [] as FailoverPaced[] };
    for (let r = 0; r < options.rounds; r++) {
      const order: ('plain' | 'failover')[] = r % 2 === 0 ? ['plain', 'failover'] : ['failover', 'plain'];
      for (const which of order) {
        const result = await pacedByAttempts(via, which === 'plain' ? BODY : FAILOVER_BODY, 500, options.seconds);
        log(
          `  ${which.padEnd(8)} p50 ${result.p50Ms.toFixed(3)} ms, p99 ${result.p99Ms.toFixed(3)} ms, sent ${result.sent}, errors ${result.errors}` +
            (which === 'failover'
              ? `; first try p50 ${result.firstTry.p50Ms.toFixed(3)} ms, fell back (${result.fellBack.count}) p50 ${result.fellBack.p50Ms.toFixed(3)} ms`
              : ''),
        );
        rounds[which].push(result);
      }
    }
    const after = await attemptCounts(gateway.url);
    const flakyAttempts = after.flaky - before.flaky;
    const flakyFailed = after.flakyFailed - before.flakyFailed;
    const sent = rounds.failover.reduce((sum, x) => sum + x.sent, 0);
    const errors = rounds.failover.reduce((sum, x) => sum + x.errors, 0);
    const plainP50 = med(rounds.plain, (x) => x.p50Ms);
    const failoverP50 = med(rounds.failover, (x) => x.p50Ms);
    const firstTryP50 = med(rounds.failover, (x) => x.firstTry.p50Ms);
    const fellBackP50 = med(rounds.failover, (x) => x.fellBack.p50Ms);
    results['failover'] = {
      rate: 500,
      requests: sent,
      client_errors: errors,
      client_error_rate: round(errors / Math.max(1, sent), 5),
      flaky_attempts: flakyAttempts,
      flaky_failure_rate: round(flakyFailed / Math.max(1, flakyAttempts), 3),
      fallbacks: after.fallbacks - before.fallbacks,
      fell_back_requests: rounds.failover.reduce((sum, x) => sum + x.fellBack.count, 0),
      plain_p50_ms: round(plainP50, 3),
      failover_p50_ms: round(failoverP50, 3),
      added_p50_ms: round(failoverP50 - plainP50, 3),
      first_try_p50_ms: round(firstTryP50, 3),
      fell_back_p50_ms: round(fellBackP50, 3),
      fallback_added_p50_ms: round(fellBackP50 - firstTryP50, 3),
      plain_p99_ms: round(
        med(rounds.plain, (x) => x.p99Ms),
        3,
      ),
      failover_p99_ms: round(
        med(rounds.failover, (x) => x.p99Ms),
        3,
      ),
    };
    log(
      `  failover: ${errors} client errors of ${sent}; ${flakyFailed} of ${flakyAttempts} attempts at the flaky target failed; p50 ${(failoverP50 - plainP50).toFixed(3)} ms against the plain redirect; a request that fell back: +${(fellBackP50 - firstTryP50).toFixed(3)} ms`,
    );
  }

  if (wants('peers')) {
    // Started one at a time, each stopped before the next: two peers never share the cores.
    const launchers: PeerLauncher[] = [naivePeer(join(here, 'naive-proxy.js'), upstream.url)];
    if (hasNginx()) launchers.push(nginxPeer(join(work, 'nginx-1'), upstream.url, 1), nginxPeer(join(work, 'nginx-auto'), upstream.url, 'auto'));
    else log('nginx is not installed (Debian: apt-get install -y nginx): the peers section measures the naive proxy only');
    const context = { upstreamUrl: upstream.url, clientKey: CLIENT_KEY, modelRedirect: `${MODEL_REDIRECT.from}=${MODEL_REDIRECT.to}` };
    for (const file of options.peerFiles) launchers.push(filePeer(file, context));
    const peerResults: Record<string, unknown> = {};
    const peerStreams: Record<string, unknown> = {};
    for (const launcher of launchers) {
      let peer: Peer;
      try {
        peer = await launcher.start();
      } catch (error) {
        // A peer that cannot start costs its own rows, not the rest of the run.
        log(`(1p) ${launcher.name}: not measured: ${(error as Error).message}`);
        peerResults[launcher.name] = { error: (error as Error).message };
        continue;
      }
      log(`(1p) ${peer.name} (${peer.note}), 64 connections`);
      const target: Target = { url: peer.process.url, headers };
      await closedLoop(tool, target, BODY, 64, 1, lua);
      const loop = await interleave(options.rounds, target, direct, async (t, which) => {
        const result = await closedLoop(tool, t, BODY, 64, options.seconds, lua);
        log(
          `  ${(which === 'gateway' ? 'peer' : which).padEnd(7)} ${result.requestsPerSecond.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms, errors ${result.errors}`,
        );
        return result;
      });
      const summary = summarizeLoop(loop, Number.NaN);
      peerResults[peer.name] = {
        note: peer.note,
        peer_rps: summary['gateway_rps'],
        direct_rps: summary['direct_rps'],
        ratio: summary['ratio'],
        peer_p50_ms: summary['gateway_p50_ms'],
        peer_p99_ms: summary['gateway_p99_ms'],
        errors: summary['errors'],
      };
      if (peer.streams) {
        log(`(2p) ${peer.name}, 500 concurrent streams, 20 chunks 5 ms apart`);
        const pair = await streamRounds(options.rounds, options.seconds, target, direct, 500, 'peer');
        peerStreams[peer.name] = { note: peer.note, ...summarizeStreams(pair) };
      }
      await stop(peer.process.child);
    }
    results['peers'] = peerResults;
    results['peers_streams'] = { '500': peerStreams };
  }

  if (wants('redaction')) {
    log('(8) redaction of the configured secrets: a gateway with a secret key against one without, interleaved');
    await stop(gateway.child); // idle: off the machine while the pair runs
    const on = await launch(true, undefined, {}, join(dist, 'main.js'), { apiKey: REDACTED_KEY });
    const off = await launch(true, undefined, {}, join(dist, 'main.js'), { apiKey: UNREDACTED_KEY });
    for (const side of [on, off]) {
      await closedLoop(tool, { url: side.url, headers }, BODY, 64, 1, lua);
      await rawStreams({ url: side.url, headers }, STREAM_BODY, 50, 1, 20, 5);
    }
    const sides = { on: { target: { url: on.url, headers }, pid: on.pid }, off: { target: { url: off.url, headers }, pid: off.pid } };
    const ab = await redactionAB(
      { rounds: Math.max(options.rounds, 4), seconds: options.seconds, tool, lua, body: BODY, streamBody: STREAM_BODY },
      sides.on,
      sides.off,
      log,
    );
    results['redaction'] = summarizeRedaction(ab);
    await stop(on.child);
    await stop(off.child);
  }

  if (wants('duplicates')) {
    log('(9) the duplicate-model check: parseJsonRequest against the check alone, per body, in this process');
    results['duplicate_model'] = summarizeDuplicateModel(duplicateModelCost(options.quick));
  }

  await stop(gateway.child);
  await stop(upstream.child);

  if (wants('longstreams')) {
    // Its own upstream (paced per stream, raw sockets) and its own gateway at the shipped defaults.
    const profile = await runLongProfile({
      shape: options.long,
      workDir: work,
      upstreamScript: join(here, 'upstream.js'),
      gatewayScript: join(dist, 'main.js'),
      nodePipeScript: join(here, 'node-pipe.js'),
      gatewayNodeArgs: options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [],
      clientKey: CLIENT_KEY,
      modelRedirect: MODEL_REDIRECT,
      body: STREAM_BODY,
      log,
    });
    results['long_streams'] = summarizeLongProfile(profile);
  }

  if (wants('config')) {
    log('(5) config scale: 10,000 routes, 100,000 keys');
    const scale: ConfigScaleResult = configScale(10_000, 100_000, options.quick ? 2 : 5);
    results['config_scale'] = {
      routes: scale.routes,
      keys: scale.keys,
      rebuild_ms: round(scale.rebuildMs, 1),
      file_reload_ms: round(scale.fileReloadMs, 1),
      lookup_ns: round(scale.lookupNs, 0),
      lookup_small_ns: round(scale.lookupSmallNs, 0),
      key_digest_ns: round(scale.digestNs, 0),
    };
  }

  const report = {
    date: new Date().toISOString(),
    commit: gitCommit(),
    mode: options.quick ? 'quick' : 'full',
    rounds: options.rounds,
    seconds_per_run: options.seconds,
    load_generator: tool,
    node: process.version,
    cpus: os.availableParallelism(),
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    load_average_start: loadStart.map((n) => round(n, 2)),
    load_average_end: os.loadavg().map((n) => round(n, 2)),
    results,
  };
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(table(report.results) + `\nwritten: ${options.out}\n`);
  if (options.profile) log(`CPU profiles in ${profileDir}`);
}

type LoopResult = WrkResult & { gatewayCpuUs?: number; upstreamCpuUs?: number };

function totalErrors(pair: Pair<{ errors: number }>): number {
  return [...pair.gateway, ...pair.direct].reduce((sum, r) => sum + r.errors, 0);
}

function summarizeLoop(pair: Pair<LoopResult>, rssMax: number): Record<string, number> {
  const gw = med(pair.gateway, (r) => r.requestsPerSecond);
  const dr = med(pair.direct, (r) => r.requestsPerSecond);
  return {
    gateway_rps: Math.round(gw),
    direct_rps: Math.round(dr),
    ratio: round(gw / dr, 3),
    gateway_p50_ms: round(
      med(pair.gateway, (r) => r.p50Ms),
      3,
    ),
    gateway_p99_ms: round(
      med(pair.gateway, (r) => r.p99Ms),
      3,
    ),
    direct_p50_ms: round(
      med(pair.direct, (r) => r.p50Ms),
      3,
    ),
    direct_p99_ms: round(
      med(pair.direct, (r) => r.p99Ms),
      3,
    ),
    errors: totalErrors(pair),
    ...(Number.isNaN(rssMax) ? {} : { gateway_rss_max_mib: round(mib(rssMax), 1) }),
    ...(pair.gateway[0]?.gatewayCpuUs === undefined
      ? {}
      : {
          gateway_cpu_us_per_request: round(
            med(pair.gateway, (r) => r.gatewayCpuUs!),
            1,
          ),
          upstream_cpu_us_per_request: round(
            med(pair.direct, (r) => r.upstreamCpuUs!),
            1,
          ),
        }),
  };
}

function summarizePaced(pair: Pair<PacedResult>): Record<string, number> {
  const gw50 = med(pair.gateway, (r) => r.p50Ms);
  const dr50 = med(pair.direct, (r) => r.p50Ms);
  const gw99 = med(pair.gateway, (r) => r.p99Ms);
  const dr99 = med(pair.direct, (r) => r.p99Ms);
  return {
    rate: 500,
    gateway_p50_ms: round(gw50, 3),
    direct_p50_ms: round(dr50, 3),
    added_p50_ms: round(gw50 - dr50, 3),
    gateway_p99_ms: round(gw99, 3),
    direct_p99_ms: round(dr99, 3),
    added_p99_ms: round(gw99 - dr99, 3),
    errors: totalErrors(pair),
  };
}

function summarizeStreams(pair: Pair<StreamsResult>): Record<string, number> {
  const rate = (r: StreamsResult): number => r.completed / r.seconds;
  const gw = med(pair.gateway, rate);
  const dr = med(pair.direct, rate);
  return {
    gateway_completed_per_s: Math.round(gw),
    direct_completed_per_s: Math.round(dr),
    ratio: round(gw / dr, 3),
    gateway_ttfb_p50_ms: round(
      med(pair.gateway, (r) => r.ttfbP50Ms),
      2,
    ),
    direct_ttfb_p50_ms: round(
      med(pair.direct, (r) => r.ttfbP50Ms),
      2,
    ),
    gateway_ttfb_p99_ms: round(
      med(pair.gateway, (r) => r.ttfbP99Ms),
      2,
    ),
    direct_ttfb_p99_ms: round(
      med(pair.direct, (r) => r.ttfbP99Ms),
      2,
    ),
    gateway_errors: pair.gateway.reduce((sum, r) => sum + r.errors, 0),
    direct_errors: pair.direct.reduce((sum, r) => sum + r.errors, 0),
  };
}

const mib = (bytes: number): number => bytes / 1024 / 1024;

function gitCommit(): string {
  try {
    const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    return commit;
  } catch {
    return 'unknown';
  }
}

type Row = [string, string, string, string];

/** The human table: figure, gateway, direct / reference, target. */
export function table(results: Record<string, unknown>): string {
  const rows: Row[] = [['figure', 'gateway', 'direct', 'target']];
  const r = results as Record<string, Record<string, number> | undefined>;
  const t = r['throughput'];
  if (t !== undefined) {
    rows.push(['(1) req/s, 64 conns', `${t['gateway_rps']}`, `${t['direct_rps']}`, '']);
    rows.push(['    ratio gateway/direct', `${t['ratio']}`, '', `>= 0.35 (${mark(t['ratio']! >= 0.35)})`]);
    rows.push(['    p50 / p99 ms', `${t['gateway_p50_ms']} / ${t['gateway_p99_ms']}`, `${t['direct_p50_ms']} / ${t['direct_p99_ms']}`, '']);
    if (t['gateway_cpu_us_per_request'] !== undefined)
      rows.push(['    CPU µs/request (gw / upstream)', `${t['gateway_cpu_us_per_request']}`, `${t['upstream_cpu_us_per_request']}`, '']);
  }
  const cl = r['clients'];
  if (cl !== undefined) {
    rows.push(['(7) native client: req/s; ratio', `${cl['native_rps']}; ${cl['native_ratio']}`, `${cl['direct_rps']}`, '']);
    rows.push([
      '    undici: req/s; ratio',
      `${cl['undici_rps']}; ${cl['undici_ratio']}`,
      `${cl['direct_rps']}`,
      `undici >= 0.45 (${mark(cl['undici_ratio']! >= 0.45)})`,
    ]);
    rows.push(['    CPU µs/request native / undici', `${cl['native_cpu_us_per_request']} / ${cl['undici_cpu_us_per_request']}`, '', '']);
    rows.push(['    500 streams done ratio native / undici', `${cl['native_streams_done_ratio']} / ${cl['undici_streams_done_ratio']}`, '', '']);
    rows.push([
      '    added TTFB p50 ms native / undici',
      `${cl['native_added_ttfb_p50_ms']} / ${cl['undici_added_ttfb_p50_ms']}`,
      `${cl['direct_ttfb_p50_ms']}`,
      '',
    ]);
  }
  const a = r['added_latency_500rps'];
  if (a !== undefined) {
    rows.push(['(1) p50 ms at 500 req/s', `${a['gateway_p50_ms']}`, `${a['direct_p50_ms']}`, '']);
    rows.push(['    added p50 / p99 ms', `${a['added_p50_ms']} / ${a['added_p99_ms']}`, '', `p50 < 1 (${mark(a['added_p50_ms']! < 1)})`]);
  }
  const peers = results['peers'] as Record<string, Record<string, number | string>> | undefined;
  for (const [name, peer] of Object.entries(peers ?? {})) {
    if (peer['error'] !== undefined) rows.push([`(1p) peer: ${name}`, 'not measured', '', `${peer['error']}`]);
    else rows.push([`(1p) peer: ${name}, req/s`, `${peer['peer_rps']}`, `${peer['direct_rps']}`, `ratio ${peer['ratio']}, errors ${peer['errors']}`]);
  }
  const nolog = r['throughput_no_access_log'];
  if (nolog !== undefined) rows.push(['(1b) req/s, access_log off', `${nolog['gateway_rps']}`, `${nolog['direct_rps']}`, `ratio ${nolog['ratio']}`]);
  const tc = r['throughput_cluster'];
  if (tc !== undefined) {
    const workerShares = (results['throughput_cluster'] as { worker_cpu_shares: number[] }).worker_cpu_shares;
    rows.push([`(1c) req/s, 64 conns, WORKERS=${tc['workers']}`, `${tc['gateway_rps']}`, `${tc['direct_rps']}`, '']);
    rows.push(['    ratio gateway/direct', `${tc['ratio']}`, '', `>= 0.35 (${mark(tc['ratio']! >= 0.35)})`]);
    rows.push(['    p50 / p99 ms', `${tc['gateway_p50_ms']} / ${tc['gateway_p99_ms']}`, `${tc['direct_p50_ms']} / ${tc['direct_p99_ms']}`, '']);
    rows.push(['    CPU µs/request (all gw processes / upstream)', `${tc['gateway_cpu_us_per_request']}`, `${tc['upstream_cpu_us_per_request']}`, '']);
    rows.push(['    primary µs/request; worker CPU shares', `${tc['primary_cpu_us_per_request']}; ${workerShares.join(' / ')}`, '', '']);
  }
  const s = results['streams'] as Record<string, Record<string, number>> | undefined;
  if (s !== undefined) {
    for (const [concurrency, x] of Object.entries(s)) {
      rows.push([
        `(2) ${concurrency} streams: done/s`,
        `${x['gateway_completed_per_s']}`,
        `${x['direct_completed_per_s']}`,
        concurrency === '500' ? `ratio >= 0.75 (${x['ratio']}, ${mark(x['ratio']! >= 0.75)})` : `ratio ${x['ratio']}`,
      ]);
      const within = x['gateway_ttfb_p50_ms']! - x['direct_ttfb_p50_ms']!;
      rows.push([
        '    TTFB p50 / p99 ms',
        `${x['gateway_ttfb_p50_ms']} / ${x['gateway_ttfb_p99_ms']}`,
        `${x['direct_ttfb_p50_ms']} / ${x['direct_ttfb_p99_ms']}`,
        concurrency === '500' ? `p50 +${round(within, 2)} <= 5 (${mark(within <= 5)})` : '',
      ]);
      rows.push(['    errors', `${x['gateway_errors']}`, `${x['direct_errors']}`, '']);
    }
  }
  const sc = (results['streams_cluster'] as Record<string, Record<string, number>> | undefined)?.['500'];
  if (sc !== undefined) {
    const within = sc['gateway_ttfb_p50_ms']! - sc['direct_ttfb_p50_ms']!;
    rows.push([
      `(2c) 500 streams, WORKERS=${sc['workers']}: done/s`,
      `${sc['gateway_completed_per_s']}`,
      `${sc['direct_completed_per_s']}`,
      `ratio >= 0.75 (${sc['ratio']}, ${mark(sc['ratio']! >= 0.75)})`,
    ]);
    rows.push([
      '    TTFB p50 / p99 ms',
      `${sc['gateway_ttfb_p50_ms']} / ${sc['gateway_ttfb_p99_ms']}`,
      `${sc['direct_ttfb_p50_ms']} / ${sc['direct_ttfb_p99_ms']}`,
      `p50 +${round(within, 2)} <= 5 (${mark(within <= 5)})`,
    ]);
    rows.push(['    errors', `${sc['gateway_errors']}`, `${sc['direct_errors']}`, '']);
  }
  const ps = (results['peers_streams'] as Record<string, Record<string, Record<string, number>>> | undefined)?.['500'];
  for (const [name, x] of Object.entries(ps ?? {})) {
    const within = x['gateway_ttfb_p50_ms']! - x['direct_ttfb_p50_ms']!;
    rows.push([
      `(2p) peer: ${name}, 500 streams: done/s`,
      `${x['gateway_completed_per_s']}`,
      `${x['direct_completed_per_s']}`,
      `ratio ${x['ratio']}, errors ${x['gateway_errors']}`,
    ]);
    rows.push([
      '    TTFB p50 / p99 ms',
      `${x['gateway_ttfb_p50_ms']} / ${x['gateway_ttfb_p99_ms']}`,
      `${x['direct_ttfb_p50_ms']} / ${x['direct_ttfb_p99_ms']}`,
      `p50 +${round(within, 2)}`,
    ]);
  }
  const policy = results['policy'] as Record<string, Record<string, number> | number> | undefined;
  if (policy !== undefined) {
    const none = policy['none'] as Record<string, number>;
    const local = policy['local'] as Record<string, number>;
    const redis = policy['redis'] as Record<string, number> | undefined;
    const baseline = policy['baseline'] as Record<string, number> | undefined;
    const localRatio = policy['local_over_none'] as number;
    rows.push([
      '(10) req/s, a policy on every request: local',
      `${local['requests_per_second']}`,
      `${none['requests_per_second']} (no policy)`,
      `ratio ${localRatio} >= 0.9 (${mark(localRatio >= 0.9)})`,
    ]);
    if (redis !== undefined)
      rows.push([
        '    with Redis counters',
        `${redis['requests_per_second']}`,
        `${none['requests_per_second']} (no policy)`,
        `ratio ${policy['redis_over_none'] as number}`,
      ]);
    if (baseline !== undefined) rows.push(['    baseline build (no usage accounting)', `${baseline['requests_per_second']}`, '', '']);
    const streamsOf = (x: Record<string, number> | undefined): string => (x === undefined ? '-' : `${x['streams_completed']}`);
    rows.push([
      '    500 streams done: local / redis',
      `${streamsOf(local)} / ${streamsOf(redis)}`,
      `${streamsOf(none)} (no policy)${baseline === undefined ? '' : `, ${streamsOf(baseline)} (baseline)`}`,
      '',
    ]);
    rows.push([
      '    500 streams TTFB p50 ms: local / redis',
      `${local['streams_ttfb_p50_ms']} / ${redis?.['streams_ttfb_p50_ms'] ?? '-'}`,
      `${none['streams_ttfb_p50_ms']}${baseline === undefined ? '' : `, ${baseline['streams_ttfb_p50_ms']}`}`,
      '',
    ]);
  }
  const ab = r['failover_ab'];
  if (ab !== undefined) {
    rows.push(['(6) no failures: req/s, 64 conns', `${ab['this_rps']}`, `baseline ${ab['baseline_rps']}`, `ratio ${ab['rps_ratio']}`]);
    rows.push([
      '    CPU µs/request; ms/stream',
      `${ab['this_cpu_us_per_request']}; ${ab['this_cpu_ms_per_stream']}`,
      `${ab['baseline_cpu_us_per_request']}; ${ab['baseline_cpu_ms_per_stream']}`,
      '',
    ]);
    rows.push([
      '    500 streams TTFB p50 / p99 ms',
      `${ab['this_streams_500_ttfb_p50_ms']} / ${ab['this_streams_500_ttfb_p99_ms']}`,
      `${ab['baseline_streams_500_ttfb_p50_ms']} / ${ab['baseline_streams_500_ttfb_p99_ms']}`,
      `p50 ${ab['streams_500_ttfb_p50_delta_ms']! >= 0 ? '+' : ''}${ab['streams_500_ttfb_p50_delta_ms']}`,
    ]);
  }
  const f = r['failover'];
  if (f !== undefined) {
    rows.push(['(6) failover p50 ms, 500 req/s', `${f['failover_p50_ms']}`, `plain ${f['plain_p50_ms']}`, `added +${f['added_p50_ms']}`]);
    rows.push(['    client errors / requests', `${f['client_errors']} / ${f['requests']}`, '', `0 (${mark(f['client_errors'] === 0)})`]);
    rows.push([
      '    a request that fell back: p50 ms',
      `${f['fell_back_p50_ms']}`,
      `first try ${f['first_try_p50_ms']}`,
      `added +${f['fallback_added_p50_ms']}`,
    ]);
    rows.push(['    flaky target: failed share of its attempts', `${f['flaky_failure_rate']}`, `${f['fallbacks']} fallbacks`, '']);
  }
  const long = results['long_streams'] as LongProfileSummary | undefined;
  if (long !== undefined) rows.push(...longStreamRows(long));
  const m = r['memory'];
  if (m !== undefined) {
    rows.push(['(3) RSS idle MiB', `${m['rss_idle_mib']}`, '', `< 100 (${mark(m['rss_idle_mib']! < 100)})`]);
    rows.push(['    RSS under (1) MiB', `${m['rss_under_load_mib']}`, '', '']);
    rows.push([`    RSS ${m['open_streams']} open streams MiB`, `${m['rss_open_streams_mib']}`, '', '']);
    rows.push(['    KiB per open stream', `${round(m['bytes_per_open_stream']! / 1024, 1)}`, '', `< 32 (${mark(m['bytes_per_open_stream']! < 32 * 1024)})`]);
  }
  const mc = r['memory_cluster'];
  if (mc !== undefined) {
    const workersRss = (results['memory_cluster'] as { rss_idle_workers_mib: number[] }).rss_idle_workers_mib;
    rows.push([
      `(3c) RSS idle MiB, WORKERS=${mc['workers']} (all processes)`,
      `${mc['rss_idle_mib']}`,
      `primary ${mc['rss_idle_primary_mib']} + workers ${workersRss.join(' + ')}`,
      '',
    ]);
    rows.push(['    PSS idle MiB (shared pages once)', `${mc['pss_idle_mib']}`, '', '']);
    rows.push(['    RSS under (1c) MiB', `${mc['rss_under_load_mib']}`, '', '']);
  }
  const cs = r['cluster_stop'];
  if (cs !== undefined) rows.push(['    workers left after stop', `${cs['workers_left_after_stop']}`, '', `0 (${mark(cs['workers_left_after_stop'] === 0)})`]);
  const b = r['body_1mib'];
  if (b !== undefined) {
    rows.push(['(4) 1 MiB body p50 ms', `${b['gateway_p50_ms']}`, `${b['direct_p50_ms']}`, '']);
    rows.push(['    added ms', `${b['added_ms']}`, '', `< 10 (${mark(b['added_ms']! < 10)})`]);
  }
  const u = results['upload_10mib'] as Record<string, Record<string, number>> | undefined;
  if (u !== undefined) {
    for (const [name, row] of Object.entries(u)) {
      rows.push([`(4b) 10 MiB upload, ${name.replace('_', ' ')}, p50 ms`, `${row['gateway_p50_ms']}`, `${row['direct_p50_ms']}`, '']);
      rows.push([
        '    added ms; gateway RSS before -> peak MiB',
        `${row['added_ms']}`,
        `${row['gateway_rss_before_mib']} -> ${row['gateway_rss_peak_mib']}`,
        '',
      ]);
    }
  }
  const am = r['answer_model'];
  if (am !== undefined) {
    const streamsRatio = am['streams_500_ratio']!;
    rows.push([
      '(6) answer_model rewrite / relay: req/s',
      `${am['rewrite_rps']}`,
      `${am['relay_rps']}`,
      `ratio >= 0.95 (${am['rps_ratio']}, ${mark(am['rps_ratio']! >= 0.95)})`,
    ]);
    rows.push(['    CPU µs/request', `${am['rewrite_cpu_us_per_request']}`, `${am['relay_cpu_us_per_request']}`, '']);
    rows.push([
      '    500 streams: done/s',
      `${am['streams_500_rewrite_completed_per_s']}`,
      `${am['streams_500_relay_completed_per_s']}`,
      `ratio >= 0.95 (${streamsRatio}, ${mark(streamsRatio >= 0.95)})`,
    ]);
    rows.push([
      '    500 streams: TTFB p50 / p99 ms',
      `${am['streams_500_rewrite_ttfb_p50_ms']} / ${am['streams_500_rewrite_ttfb_p99_ms']}`,
      `${am['streams_500_relay_ttfb_p50_ms']} / ${am['streams_500_relay_ttfb_p99_ms']}`,
      '',
    ]);
    rows.push(['    500 streams: CPU µs/stream', `${am['streams_500_rewrite_cpu_us_per_stream']}`, `${am['streams_500_relay_cpu_us_per_stream']}`, '']);
    const jsonShare = am['stage_cpu_us_per_json_answer']! / am['relay_cpu_us_per_request']!;
    const streamShare = am['stage_cpu_us_per_stream']! / am['streams_500_relay_cpu_us_per_stream']!;
    rows.push([
      '    the stage alone: CPU µs/answer, /stream',
      `${am['stage_cpu_us_per_json_answer']}, ${am['stage_cpu_us_per_stream']}`,
      `${round(jsonShare * 100, 1)} %, ${round(streamShare * 100, 1)} % of relay`,
      `< 5 % (${mark(jsonShare < 0.05 && streamShare < 0.05)})`,
    ]);
  }
  const red = r['redaction'];
  if (red !== undefined) {
    rows.push([
      '(8) redaction on / off: req/s',
      `${red['on_rps']}`,
      `${red['off_rps']}`,
      `ratio ${red['rps_ratio']} (>= 0.98: ${mark(red['rps_ratio']! >= 0.98)})`,
    ]);
    rows.push(['    CPU µs/request on / off', `${red['on_cpu_us_per_request']}`, `${red['off_cpu_us_per_request']}`, '']);
    rows.push([
      '    50 streams: done/s on / off',
      `${red['on_streams_per_s']}`,
      `${red['off_streams_per_s']}`,
      `ratio ${red['streams_ratio']} (>= 0.98: ${mark(red['streams_ratio']! >= 0.98)})`,
    ]);
    rows.push(['    CPU µs/stream on / off', `${red['on_cpu_us_per_stream']}`, `${red['off_cpu_us_per_stream']}`, '']);
    rows.push(['    redactor alone, MB/s (64 KiB pieces)', `${red['redactor_mb_per_s']}`, '', '']);
  }
  const dup = results['duplicate_model'] as Record<string, string | number | boolean>[] | undefined;
  for (const row of dup ?? []) {
    const share = `check ${Math.round(Number(row['check_share_of_parse']) * 1000) / 10} % of parse`;
    rows.push([
      `(9) ${row['body']}: parse / check ns`,
      `${row['parse_ns']} / ${row['check_ns']}`,
      share,
      row['scanned'] === true ? `scanned: +${row['scan_ns']} ns` : '',
    ]);
  }
  const c = r['config_scale'];
  if (c !== undefined) {
    rows.push(['(5) snapshot rebuild ms', `${c['rebuild_ms']}`, '', `< 1000 (${mark(c['rebuild_ms']! < 1000)})`]);
    rows.push(['    file reload ms (parse+hash+build)', `${c['file_reload_ms']}`, '', '']);
    rows.push(['    lookup ns (10k routes/100k keys)', `${c['lookup_ns']}`, `${c['lookup_small_ns']} (10/10)`, 'O(1)']);
  }
  const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((row) => row[i]!.length)));
  return (
    rows
      .map((row) =>
        row
          .map((cell, i) => cell.padEnd(widths[i]!))
          .join('  ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

const mark = (ok: boolean): string => (ok ? 'ok' : 'MISSED');

/** Stops a run that hangs: 15 minutes, plus the long-stream profile's own length when it runs. */
function armWatchdog(options: Options): void {
  const long =
    options.only === null || options.only.has('longstreams')
      ? 3 * (options.long.rampMs + options.long.perConnection * options.long.tokens * options.long.intervalMs) + 120_000
      : 0;
  const watchdog = setTimeout(
    () => {
      log('watchdog: the bench ran too long; stopping');
      killAll();
      process.exit(2);
    },
    15 * 60_000 + long,
  );
  watchdog.unref();
}
process.on('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    killAll();
    process.exit(130);
  });
}

main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (error: unknown) => {
    log(`failed: ${(error as Error).stack ?? String(error)}`);
    killAll();
    process.exit(1);
  },
);
