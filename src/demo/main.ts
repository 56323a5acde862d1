import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { startGateway } from '../gateway.js';
import { startExampleUpstream } from './example-upstream.js';

/** The demo client key; it only opens this local demo. */
export const DEMO_KEY = 'demo-key';

/**
 * `npm run demo`: the gateway with the bundled example upstream and config,
 * a real request and a streamed one through it, then it keeps serving.
 */
async function main(): Promise<void> {
  const upstream = await startExampleUpstream();
  const dir = mkdtempSync(join(tmpdir(), 'api-proxy-demo-'));
  const configPath = join(dir, 'config.json');
  writeFileSync(
    configPath,
    JSON.stringify(
      {
        upstreams: { default: { url: `${upstream.url}/v1` } },
        client_keys: [{ id: 'demo', key: DEMO_KEY }],
        model_redirects: { 'gpt-4': 'example-model-v2' },
        shutdown: { drain_delay_ms: 0, timeout_ms: 5000 },
        log_level: 'warn',
      },
      null,
      2,
    ),
  );
  const port = Number(process.env['PORT'] ?? 5000);
  const gateway = await startGateway({ configPath, env: { LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'warn' }, port, host: '127.0.0.1' });
  const base = gateway.url;
  const out = (line = ''): boolean => process.stdout.write(`${line}\n`);

  out(`api-proxy demo: gateway on ${base}, example upstream on ${upstream.url}, config ${configPath}`);
  out(`model redirect: gpt-4 -> example-model-v2; client key: ${DEMO_KEY}`);
  out();
  out(`$ curl ${base}/v1/chat/completions -H 'authorization: Bearer ${DEMO_KEY}' -d '{"model":"gpt-4","messages":[{"role":"user","content":"hi"}]}'`);
  const plain = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEMO_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4', messages: [{ role: 'user', content: 'hi' }] }),
  });
  out(`HTTP ${plain.statusCode}  ${await plain.body.text()}`);
  out();
  out(
    `$ curl -N ${base}/v1/chat/completions -H 'authorization: Bearer ${DEMO_KEY}' -d '{"model":"gpt-4","stream":true,"messages":[{"role":"user","content":"stream please"}]}'`,
  );
  const streamed = await request(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${DEMO_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4', stream: true, messages: [{ role: 'user', content: 'stream please' }] }),
  });
  out(`HTTP ${streamed.statusCode} ${String(streamed.headers['content-type'])}`);
  for await (const chunk of streamed.body) process.stdout.write(String(chunk));
  out();
  const metrics = await request(`${base}/metrics`);
  out(`$ curl ${base}/metrics`);
  out(await metrics.body.text());
  out();
  if (process.argv.includes('--once')) {
    await gateway.shutdown();
    upstream.server.close();
    return;
  }
  out(`The gateway keeps serving on ${base}; try the curl lines above. Ctrl-C stops it.`);
  const stop = (): void => {
    void gateway.shutdown().then(() => {
      upstream.server.close();
      process.exit(0);
    });
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(`demo failed: ${(error as Error).message}`);
  process.exit(1);
});
