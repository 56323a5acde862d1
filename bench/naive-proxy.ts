/**
 * A same-run reference point, not part of the gateway: the proxy a newcomer
 * writes in twenty lines with Koa and undici (read the body, redirect the
 * model, forward, return). No auth, metrics, logs, streaming or limits.
 */
import Koa from 'koa';
import type { AddressInfo } from 'node:net';
import { request } from 'undici';

const upstream = process.argv[2]!;
const app = new Koa();
app.use(async (ctx) => {
  const chunks: Buffer[] = [];
  for await (const chunk of ctx.req) chunks.push(chunk as Buffer);
  const body = JSON.parse(Buffer.concat(chunks).toString()) as { model?: string };
  if (body.model === 'gpt-4') body.model = 'bench-model';
  const answer = await request(upstream + ctx.path, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: 'Bearer sk-bench-upstream' },
    body: JSON.stringify(body),
  });
  ctx.status = answer.statusCode;
  ctx.type = 'application/json';
  ctx.body = Buffer.from(await answer.body.arrayBuffer());
});
const server = app.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
