/**
 * Soak test (`npm run soak [-- --minutes N --concurrency C --json out.json]`):
 * the built gateway (`node dist/main.js`) and a fake upstream, each in its own
 * process on loopback, under sustained mixed load for N minutes (default 10):
 * JSON and streamed completions, with client aborts (before headers and
 * mid-stream), upstream 500/429, upstream resets (before headers and
 * mid-stream), wrong keys and invalid JSON sprinkled in. Every answer is
 * checked against what its scenario must produce; anything else is an
 * unexplained error. Memory (the gateway's /metrics JSON: rss_bytes,
 * heap_used_bytes) and open descriptors are sampled at start, warm (half way,
 * or --warm-minutes) and end, and RSS every 10 s throughout. Passes (exit 0)
 * when there is no unexplained error, RSS from warm to end rises by at most
 * 5% along its least-squares line, the active request/stream counts return
 * to 0, the log has no error line and the gateway exits cleanly on SIGTERM.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, createReadStream, mkdtempSync, openSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';
import { freePort } from '../processes.js';
import { parseSoakArgs, RSS_TRACE_MS } from './options.js';
import { fittedRise, type Reading } from './trend.js';

/** Most the RSS may rise from the warm sample to the end, along its fitted line. */
const RSS_RISE_LIMIT = 0.05;
const CLIENT_KEY = 'sk-soak-client-0123456789abcdef';
const UPSTREAM_KEY = 'sk-soak-upstream-fedcba9876543210';

// ---- scenarios -------------------------------------------------------------------------------

type Verdict = 'ok' | { unexplained: string };

interface Scenario {
  readonly name: string;
  /** What a correct gateway answers; counted as an expected error when it is an error. */
  readonly expected: string;
  readonly weight: number;
  readonly isError: boolean;
  run(url: string, agent: Agent): Promise<Verdict>;
}

const auth = { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' };
const chatBody = (stream: boolean): string => JSON.stringify({ model: 'gpt-4', stream, messages: [{ role: 'user', content: 'soak' }] });

async function post(url: string, agent: Agent, headers: Record<string, string>, body: string, signal?: AbortSignal) {
  return request(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers,
    body,
    dispatcher: agent,
    signal: signal ?? AbortSignal.timeout(15_000),
  });
}

function describe(status: number, text: string): string {
  return `status ${status}: ${text.slice(0, 200)}`;
}

async function gatewayError(url: string, agent: Agent, headers: Record<string, string>, body: string, status: number, code: string): Promise<Verdict> {
  const res = await post(url, agent, headers, body);
  const text = await res.body.text();
  if (res.statusCode !== status) return { unexplained: `expected ${status} ${code}, got ${describe(res.statusCode, text)}` };
  try {
    const parsed = JSON.parse(text) as { error?: { code?: unknown; type?: unknown; message?: unknown } };
    if (parsed.error?.code !== code || typeof parsed.error.type !== 'string' || typeof parsed.error.message !== 'string') {
      return { unexplained: `expected error code ${code}, got ${text.slice(0, 200)}` };
    }
  } catch {
    return { unexplained: `error body is not JSON: ${text.slice(0, 200)}` };
  }
  if (typeof res.headers['x-request-id'] !== 'string') return { unexplained: 'gateway error without x-request-id' };
  return 'ok';
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'json',
    expected: '200 completion, redirected upstream, the requested model in the answer',
    weight: 36,
    isError: false,
    async run(url, agent) {
      const res = await post(url, agent, auth, chatBody(false));
      const text = await res.body.text();
      if (res.statusCode !== 200) return { unexplained: describe(res.statusCode, text) };
      const parsed = JSON.parse(text) as { model?: string };
      const sent = res.headers['x-apiproxy-upstream-model'];
      return parsed.model === 'gpt-4' && sent === 'gpt-4o-2024-08-06' ? 'ok' : { unexplained: `wrong model: ${String(sent)} ${text.slice(0, 200)}` };
    },
  },
  {
    name: 'stream',
    expected: '200 event stream ending in [DONE]',
    weight: 24,
    isError: false,
    async run(url, agent) {
      const res = await post(url, agent, { ...auth, 'x-soak': 'stream' }, chatBody(true));
      const text = await res.body.text();
      if (res.statusCode !== 200) return { unexplained: describe(res.statusCode, text) };
      return text.includes('t9 ') && text.trimEnd().endsWith('data: [DONE]') ? 'ok' : { unexplained: `incomplete stream: ${text.slice(-200)}` };
    },
  },
  {
    name: 'client_abort_mid_stream',
    expected: 'client aborts after the first event (gateway aborts the upstream)',
    weight: 7,
    isError: true,
    async run(url, agent) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(new Error('soak timeout')), 15_000);
      try {
        const res = await post(url, agent, { ...auth, 'x-soak': 'slow-stream' }, chatBody(true), controller.signal);
        if (res.statusCode !== 200) return { unexplained: describe(res.statusCode, await res.body.text()) };
        for await (const chunk of res.body) {
          if (String(chunk).includes('data: ')) break;
        }
        controller.abort();
        return 'ok';
      } catch (error) {
        return controller.signal.aborted ? 'ok' : { unexplained: `client error: ${(error as Error).message}` };
      } finally {
        clearTimeout(timer);
      }
    },
  },
  {
    name: 'client_abort_before_headers',
    expected: 'client aborts while the upstream has not answered',
    weight: 5,
    isError: true,
    async run(url, agent) {
      const controller = new AbortController();
      const timer = setTimeout(() => controller.abort(), 50 + Math.random() * 100);
      try {
        const res = await post(url, agent, { ...auth, 'x-soak': 'delay-headers' }, chatBody(false), controller.signal);
        await res.body.text();
        return { unexplained: `answered ${res.statusCode} before the client aborted` };
      } catch (error) {
        return controller.signal.aborted ? 'ok' : { unexplained: `client error: ${(error as Error).message}` };
      } finally {
        clearTimeout(timer);
      }
    },
  },
  {
    name: 'upstream_500',
    expected: '500 relayed verbatim',
    weight: 5,
    isError: true,
    async run(url, agent) {
      const res = await post(url, agent, { ...auth, 'x-soak': 'status-500' }, chatBody(false));
      const text = await res.body.text();
      return res.statusCode === 500 && text.includes('soak_500') ? 'ok' : { unexplained: describe(res.statusCode, text) };
    },
  },
  {
    name: 'upstream_429',
    expected: '429 relayed with retry-after',
    weight: 5,
    isError: true,
    async run(url, agent) {
      const res = await post(url, agent, { ...auth, 'x-soak': 'status-429' }, chatBody(true));
      const text = await res.body.text();
      return res.statusCode === 429 && res.headers['retry-after'] === '1' && text.includes('soak_429') ? 'ok' : { unexplained: describe(res.statusCode, text) };
    },
  },
  {
    name: 'upstream_reset_before_headers',
    expected: '502 upstream_reset',
    weight: 4,
    isError: true,
    run: (url, agent) => gatewayError(url, agent, { ...auth, 'x-soak': 'reset-before' }, chatBody(false), 502, 'upstream_reset'),
  },
  {
    name: 'upstream_reset_mid_stream',
    expected: '200 stream ending with an upstream_reset error event',
    weight: 4,
    isError: true,
    async run(url, agent) {
      const res = await post(url, agent, { ...auth, 'x-soak': 'reset-mid' }, chatBody(true));
      const text = await res.body.text();
      if (res.statusCode !== 200) return { unexplained: describe(res.statusCode, text) };
      return text.includes('t0 ') && text.includes('"code":"upstream_reset"') ? 'ok' : { unexplained: `stream without error event: ${text.slice(-200)}` };
    },
  },
  {
    name: 'wrong_key',
    expected: '401 invalid_api_key',
    weight: 5,
    isError: true,
    run: (url, agent) => gatewayError(url, agent, { ...auth, authorization: 'Bearer sk-soak-wrong' }, chatBody(false), 401, 'invalid_api_key'),
  },
  {
    name: 'invalid_json',
    expected: '400 invalid_json',
    weight: 5,
    isError: true,
    run: (url, agent) => gatewayError(url, agent, auth, '{"model":', 400, 'invalid_json'),
  },
];

function pick(): Scenario {
  const total = SCENARIOS.reduce((sum, s) => sum + s.weight, 0);
  let r = Math.random() * total;
  for (const scenario of SCENARIOS) {
    r -= scenario.weight;
    if (r < 0) return scenario;
  }
  return SCENARIOS[0]!;
}

// ---- processes and samples -------------------------------------------------------------------

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

interface Sample {
  label: string;
  at_s: number;
  rss_bytes: number;
  heap_used_bytes: number;
  active_requests: number;
  active_streams: number;
  open_fds: number;
  open_sockets: number;
}

async function metricsJson(url: string): Promise<Record<string, number>> {
  const res = await request(`${url}/metrics`, { signal: AbortSignal.timeout(5_000) });
  return (await res.body.json()) as Record<string, number>;
}

function descriptors(pid: number): { fds: number; sockets: number } {
  try {
    const entries = readdirSync(`/proc/${pid}/fd`);
    let sockets = 0;
    for (const entry of entries) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${entry}`).startsWith('socket:')) sockets++;
      } catch {
        // closed meanwhile
      }
    }
    return { fds: entries.length, sockets };
  } catch {
    return { fds: Number.NaN, sockets: Number.NaN };
  }
}

async function sample(label: string, url: string, pid: number, started: number): Promise<Sample> {
  // three readings a second apart, averaged: one reading can land on either side of a GC
  const readings: Record<string, number>[] = [];
  for (let i = 0; i < 3; i++) {
    readings.push(await metricsJson(url));
    if (i < 2) await sleep(1_000);
  }
  const mean = (field: string): number => Math.round(readings.reduce((sum, m) => sum + (m[field] ?? 0), 0) / readings.length);
  const last = readings.at(-1)!;
  const { fds, sockets } = descriptors(pid);
  return {
    label,
    at_s: Math.round((Date.now() - started) / 1000),
    rss_bytes: mean('rss_bytes'),
    heap_used_bytes: mean('heap_used_bytes'),
    // /metrics counts itself as active
    active_requests: (last['active_requests'] ?? 0) - 1,
    active_streams: last['active_streams'] ?? 0,
    open_fds: fds,
    open_sockets: sockets,
  };
}

async function startUpstream(): Promise<{ child: ChildProcess; url: string }> {
  const script = fileURLToPath(new URL('./upstream.js', import.meta.url));
  const child = fork(script, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  children.add(child);
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message) => resolve((message as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`soak upstream exited (${code})`)));
  });
  return { child, url: `http://127.0.0.1:${port}` };
}

async function startGatewayProcess(dir: string, upstreamUrl: string): Promise<{ child: ChildProcess; url: string; logPath: string }> {
  const configPath = join(dir, 'config.json');
  const logPath = join(dir, 'gateway.log');
  writeFileSync(
    configPath,
    JSON.stringify({
      upstreams: { default: { url: `${upstreamUrl}/v1`, api_key: UPSTREAM_KEY, timeouts: { connect_ms: 1000, headers_ms: 5000, idle_ms: 5000 } } },
      client_keys: [{ id: 'soak', key: CLIENT_KEY }],
      model_redirects: { 'gpt-4': 'gpt-4o-2024-08-06' },
      body_limit: '1MiB',
      shutdown: { drain_delay_ms: 0, timeout_ms: 10_000 },
    }),
  );
  const port = await freePort();
  const log = openSync(logPath, 'w');
  const env: NodeJS.ProcessEnv = { ...process.env, CONFIG_PATH: configPath, PORT: String(port) };
  delete env['LOG_LEVEL'];
  const main = fileURLToPath(new URL('../../../dist/main.js', import.meta.url));
  const child = spawn(process.execPath, [main], { env, stdio: ['ignore', log, log] });
  closeSync(log);
  children.add(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}; see ${logPath}`);
    try {
      const res = await request(`${url}/health/ready`);
      await res.body.text();
      if (res.statusCode === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the gateway did not become ready; see ${logPath}`);
    await sleep(50);
  }
  return { child, url, logPath };
}

/** Log lines at error level or above (pino level >= 50), and lines that are not JSON. */
async function badLogLines(logPath: string): Promise<{ count: number; samples: string[] }> {
  let count = 0;
  const samples: string[] = [];
  const lines = createInterface({ input: createReadStream(logPath, 'utf8'), crlfDelay: Infinity });
  for await (const line of lines) {
    if (line === '') continue;
    let bad: boolean;
    try {
      const entry = JSON.parse(line) as { level?: number };
      bad = (entry.level ?? 0) >= 50;
    } catch {
      bad = true;
    }
    if (bad) {
      count++;
      if (samples.length < 5) samples.push(line.slice(0, 500));
    }
  }
  return { count, samples };
}

const mib = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

async function main(): Promise<void> {
  const options = parseSoakArgs(process.argv.slice(2));
  const dir = mkdtempSync(join(tmpdir(), 'api-proxy-soak-'));
  const upstream = await startUpstream();
  const gateway = await startGatewayProcess(dir, upstream.url);
  const pid = gateway.child.pid!;
  let unexpectedExit: string | null = null;
  gateway.child.once('exit', (code, signal) => {
    if (!stopping) {
      unexpectedExit = `the gateway exited during the soak (code ${code}, signal ${signal}); see the log`;
      console.error(`soak: ${unexpectedExit}`);
    }
  });
  let stopping = false;
  const agent = new Agent({ connections: options.concurrency * 2, keepAliveTimeout: 4_000, headersTimeout: 20_000, bodyTimeout: 20_000 });
  const started = Date.now();
  const endAt = started + options.minutes * 60_000;
  const warmAt = started + options.warmMinutes * 60_000;

  const counts = new Map<string, { sent: number; ok: number; unexplained: number }>(SCENARIOS.map((s) => [s.name, { sent: 0, ok: 0, unexplained: 0 }]));
  const unexplainedSamples: string[] = [];
  let unexplained = 0;

  const samples: Sample[] = [await sample('start', gateway.url, pid, started)];
  console.log(`soak: ${options.minutes} min, ${options.concurrency} concurrent clients, gateway pid ${pid} at ${gateway.url}, upstream ${upstream.url}`);

  async function worker(): Promise<void> {
    while (Date.now() < endAt && unexpectedExit === null) {
      const scenario = pick();
      const count = counts.get(scenario.name)!;
      count.sent++;
      let verdict: Verdict;
      try {
        verdict = await scenario.run(gateway.url, agent);
      } catch (error) {
        verdict = { unexplained: `${(error as Error).name}: ${(error as Error).message}` };
      }
      if (verdict === 'ok') count.ok++;
      else {
        count.unexplained++;
        unexplained++;
        if (unexplainedSamples.length < 20) unexplainedSamples.push(`${scenario.name}: ${verdict.unexplained}`);
      }
    }
  }

  const progress = setInterval(() => {
    const sent = [...counts.values()].reduce((sum, c) => sum + c.sent, 0);
    console.log(`soak: ${Math.round((Date.now() - started) / 1000)} s, ${sent} requests, ${unexplained} unexplained`);
  }, 30_000);
  const rssTrace: Reading[] = [];
  const tracing = setInterval(() => {
    metricsJson(gateway.url).then(
      (metrics) => rssTrace.push({ atS: (Date.now() - started) / 1000, value: metrics['rss_bytes'] ?? Number.NaN }),
      () => {}, // a reading lost under load leaves a gap; the fit does without it
    );
  }, RSS_TRACE_MS);
  const warm = (async () => {
    await sleep(Math.max(0, warmAt - Date.now()));
    samples.push(await sample('warm', gateway.url, pid, started));
  })();
  const ending = (async () => {
    // the end sample is taken under load, like the warm one (3 s before the loops stop)
    await sleep(Math.max(0, endAt - 3_500 - Date.now()));
    await warm;
    samples.push(await sample('end', gateway.url, pid, started));
  })();
  await Promise.all([...Array.from({ length: options.concurrency }, worker), warm, ending]);
  clearInterval(progress);
  clearInterval(tracing);
  const elapsedS = (Date.now() - started) / 1000;

  // after the load: in-flight counts must go back to 0
  const idleDeadline = Date.now() + 10_000;
  while (Date.now() < idleDeadline) {
    const metrics = await metricsJson(gateway.url);
    if ((metrics['active_requests'] ?? 0) <= 1 && (metrics['active_streams'] ?? 0) === 0) break;
    await sleep(200);
  }
  await agent.close();
  const idle = await sample('idle', gateway.url, pid, started);
  samples.push(idle);
  const final = await metricsJson(gateway.url);

  upstream.child.send({ stats: true });
  const upstreamStats = await new Promise<{ requests: number; connections: number }>((resolve) => upstream.child.once('message', (m) => resolve(m as never)));

  stopping = true;
  const exited = new Promise<number | null>((resolve) => gateway.child.once('exit', (code) => resolve(code)));
  gateway.child.kill('SIGTERM');
  const exitCode = await Promise.race([exited, sleep(15_000).then(() => -1)]);
  const logs = await badLogLines(gateway.logPath);
  upstream.child.disconnect();
  await new Promise((resolve) => (upstream.child.exitCode === null ? upstream.child.once('exit', resolve) : resolve(null)));

  const warmSample = samples.find((s) => s.label === 'warm')!;
  const endSample = samples.find((s) => s.label === 'end')!;
  const rssGrowth = endSample.rss_bytes / warmSample.rss_bytes - 1;
  const judged = rssTrace.filter((reading) => reading.atS >= warmSample.at_s && Number.isFinite(reading.value));
  const rssRise = fittedRise(judged);
  const totalSent = [...counts.values()].reduce((sum, c) => sum + c.sent, 0);
  const expectedErrors = SCENARIOS.filter((s) => s.isError).reduce((sum, s) => sum + counts.get(s.name)!.ok, 0);
  const checks = {
    no_unexplained_errors: unexplained === 0,
    rss_flat: rssRise <= RSS_RISE_LIMIT,
    in_flight_back_to_zero: idle.active_requests === 0 && idle.active_streams === 0,
    no_error_log_lines: logs.count === 0,
    clean_exit_on_sigterm: exitCode === 0,
  };
  const passed = Object.values(checks).every(Boolean);
  const report = {
    passed,
    checks,
    minutes: options.minutes,
    elapsed_s: Math.round(elapsedS),
    concurrency: options.concurrency,
    node: process.version,
    requests: totalSent,
    requests_per_s: Math.round(totalSent / elapsedS),
    expected_errors: expectedErrors,
    unexplained_errors: unexplained,
    unexplained_samples: unexplainedSamples,
    by_scenario: Object.fromEntries(SCENARIOS.map((s) => [s.name, { expected: s.expected, ...counts.get(s.name)! }])),
    gateway_counters: { total_requests: final['total_requests'], error_count: final['error_count'] },
    upstream: upstreamStats,
    memory: samples.map((s) => ({ ...s, rss_mib: mib(s.rss_bytes), heap_used_mib: mib(s.heap_used_bytes) })),
    rss_fitted_rise_pct: Math.round(rssRise * 1000) / 10,
    rss_fitted_over: { from_s: judged[0]?.atS ?? null, to_s: judged.at(-1)?.atS ?? null, readings: judged.length },
    rss_end_vs_warm_pct: Math.round(rssGrowth * 1000) / 10,
    rss_trace_mib: rssTrace.map((reading) => [Math.round(reading.atS), mib(reading.value)]),
    error_log_lines: logs,
    gateway_exit_code: exitCode,
    soak_process_handles: process.getActiveResourcesInfo(),
  };
  const text = JSON.stringify(report, null, 2);
  console.log(text);
  if (options.json !== null) writeFileSync(options.json, `${text}\n`);
  console.log(
    `soak: ${passed ? 'PASSED' : 'FAILED'}: ${totalSent} requests, ${unexplained} unexplained; RSS warm ${mib(warmSample.rss_bytes)} MiB, end ${mib(endSample.rss_bytes)} MiB (${report.rss_end_vs_warm_pct}%; fitted rise ${report.rss_fitted_rise_pct}%, limit ${RSS_RISE_LIMIT * 100}%)`,
  );
  rmSync(dir, { recursive: true, force: true });
  process.exitCode = passed ? 0 : 1;
}

main().catch((error: unknown) => {
  console.error(`soak: ${(error as Error).stack ?? String(error)}`);
  process.exit(2);
});
