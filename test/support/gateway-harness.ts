import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway.js';
import { startFakeUpstream, type FakeUpstream } from './fake-upstream.js';

/** Captures log lines in memory so tests can assert on them. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: () => void): void {
    this.lines.push(
      ...chunk
        .toString('utf8')
        .split('\n')
        .filter((line) => line !== ''),
    );
    callback();
  }
  get entries(): Record<string, unknown>[] {
    return this.lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  }
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  logs: LogCapture;
  configPath: string;
  dir: string;
  writeConfig(config: unknown): void;
  stop(): Promise<void>;
}

/** Starts an in-process gateway on an ephemeral port with the given config object. */
export async function startTestGateway(
  config: unknown,
  options: Partial<Pick<GatewayOptions, 'env' | 'pollMs' | 'kubeSource' | 'namespace' | 'serverLimits' | 'host'>> = {},
): Promise<TestGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'api-proxy-test-'));
  const configPath = join(dir, 'config.json');
  const writeConfig = (value: unknown): void => writeFileSync(configPath, typeof value === 'string' ? value : JSON.stringify(value));
  writeConfig(config);
  const logs = new LogCapture();
  const gateway = await startGateway({ configPath, env: options.env ?? {}, port: 0, host: '127.0.0.1', logDestination: logs, ...options });
  return {
    gateway,
    url: gateway.url,
    logs,
    configPath,
    dir,
    writeConfig,
    async stop() {
      await gateway.shutdown();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export const CLIENT_KEY = 'sk-client-test-0123456789';
export const UPSTREAM_KEY = 'sk-upstream-secret-9876543210';

/** A config for tests: one upstream, one client key, quick shutdown. */
export function baseConfig(upstreamUrl: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    upstreams: { default: { url: `${upstreamUrl}/v1`, api_key: UPSTREAM_KEY, timeouts: { connect_ms: 1000, headers_ms: 2000, idle_ms: 2000 } } },
    client_keys: [{ id: 'team-a', key: CLIENT_KEY }],
    model_redirects: { 'gpt-4': 'gpt-4o-2024-08-06' },
    shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
    ...extra,
  };
}

/** The same config with every upstream tried once per request (no retries), for tests about something else. */
export function withOneTry(config: Record<string, unknown>): Record<string, unknown> {
  const upstreams = config['upstreams'] as Record<string, Record<string, unknown>>;
  return {
    ...config,
    upstreams: Object.fromEntries(Object.entries(upstreams).map(([name, upstream]) => [name, { ...upstream, retry: { attempts: 1 } }])),
  };
}

export interface GatewayWithUpstream {
  upstream: FakeUpstream;
  gw: TestGateway;
  stop(): Promise<void>;
}

/** A fake upstream and a gateway in front of it; `config` builds the gateway's config from the upstream's URL. */
export async function startGatewayWithUpstream(config: (upstreamUrl: string) => unknown = (url) => baseConfig(url)): Promise<GatewayWithUpstream> {
  const upstream = await startFakeUpstream();
  const gw = await startTestGateway(config(upstream.url));
  return {
    upstream,
    gw,
    async stop() {
      await gw.stop();
      await upstream.close();
    },
  };
}
